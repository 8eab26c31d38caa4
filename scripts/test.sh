#!/usr/bin/env bash
# README command 2: set everything up, then run the test suite (extra args go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${W2SD_VENV:-.venv}/bin/python" -m pytest "$@"
