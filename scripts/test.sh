#!/usr/bin/env bash
# README command 2: set everything up, then run the test suite (extra args go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${W2SD_VENV:-.venv}
# A CUDA build must contain device code for every architecture: make that test strict.
case "$(cat "$venv/.w2sd-installed" 2>/dev/null)" in cuda=1*) export W2SD_EXPECT_CUDA=1 ;; esac
# Setup installed the OpenVINO backend: its tests must run (tests/test_openvino.py).
if [ -f "$venv/.w2sd-openvino" ]; then export W2SD_EXPECT_OPENVINO=1; fi
exec "${W2SD_VENV:-.venv}/bin/python" -m pytest "$@"
