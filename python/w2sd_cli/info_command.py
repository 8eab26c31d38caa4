"""``w2sd info``: an engine dir's manifest summary, or which backends this machine runs."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="show an engine dir's manifest summary, or which backends this machine runs",
        description="Summarise an engine dir's manifest. With --backends (or no ENGINE_DIR), "
        "list every backend with whether this machine can run it and, if not, why.",
    )
    p.add_argument("engine_dir", nargs="?", default=None, help="engine dir (optional)")
    p.add_argument(
        "--backends", action="store_true", help="list backends and why each is (not) available"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import json

    from w2sd.backends import backend_status
    from w2sd.manifest import load_manifest

    if args.backends or args.engine_dir is None:
        for status in backend_status():
            state = "available" if status.available else f"not available: {status.reason}"
            print(f"{status.name:9s} {state}")
        if args.engine_dir is None:
            return
    spec = load_manifest(args.engine_dir).spec
    info: dict[str, Any] = {
        "family": spec.family,
        "unets": [u.roles for u in spec.unets],
        "text_encoders": [] if spec.text is None else [e.source for e in spec.text.encoders],
        "roles": {r: v.model_dump() for r, v in spec.roles.items()},
        "defaults": spec.defaults.model_dump(),
        "image": None if spec.image is None else spec.image.model_dump(),
        "denoiser": None if spec.denoiser is None else spec.denoiser.model_dump(),
        "prediction_type": spec.scheduler.prediction_type,
        "built_backends": sorted(spec.backends),
    }
    print(json.dumps(info, indent=1))
