"""Run ``w2sd`` (the arguments) in a process where every network connection attempt is
refused and written to $W2SD_NETWORK_LOG; ``--probe`` instead asks the Hub for a file, to
show that an attempt is caught. Hub offline switches are cleared by the caller, so a loader
that does not pass local_files_only=True would try the network here."""

from __future__ import annotations

import os
import socket
import sys


def _refuse(*args: object, **kwargs: object) -> None:
    with open(os.environ["W2SD_NETWORK_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{args[1:] if args else kwargs}\n")
    raise OSError("network access attempted in an offline test")


socket.socket.connect = _refuse  # type: ignore[method-assign]
socket.socket.connect_ex = _refuse  # type: ignore[method-assign]
socket.getaddrinfo = _refuse  # type: ignore[assignment]
socket.create_connection = _refuse  # type: ignore[assignment]

if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download("w2sd-offline-probe/none", "config.json")
        except Exception as e:  # the Hub client wraps the refused connection
            print(type(e).__name__)
        sys.exit(0)
    from w2sd_cli import main

    sys.exit(main(sys.argv[1:]))
