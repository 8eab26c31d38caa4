#!/usr/bin/env bash
# README command 1: set everything up, then run the main job (`w2sd demo`: a W2SD
# sample on the embedded tiny model pair, written to w2sd-demo/demo.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${W2SD_VENV:-.venv}/bin/w2sd" demo "$@"
