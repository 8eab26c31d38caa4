"""The ``w2sd`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Subcommands import their room (export, engines, serve, bench, studies) only when they run,
so that ``w2sd --help`` and ``w2sd sample`` load nothing they do not use."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from w2sd.errors import W2SDError

from . import (
    bench_command,
    build_command,
    demo_command,
    eval_command,
    export_command,
    info_command,
    sample_command,
    serve_command,
)
from .common import log

__all__ = ["build_parser", "main"]

# In the order `w2sd --help` lists them.
COMMANDS = (
    export_command,
    build_command,
    sample_command,
    serve_command,
    demo_command,
    eval_command,
    bench_command,
    info_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="w2sd",
        description="Weak-to-Strong Diffusion with Reflection (W2SD): export diffusers models to "
        "an engine dir, build it for a backend, and sample from it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except W2SDError as e:
        log(f"w2sd {args.command}: error: {e}")
        return 2
    except KeyboardInterrupt:
        log(f"w2sd {args.command}: interrupted")
        return 130
    return 0
