#!/usr/bin/env bash
# Lint and stub checks (run by .ci/run after the README's commands): ruff, ruff format,
# clang-format, the import contracts between rooms (import-linter; pyproject.toml,
# docs/architecture.md) and mypy.stubtest of the compiled module's .pyi against the built
# extension.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(cd "${W2SD_VENV:-.venv}" && pwd)
bin=$venv/bin
"$bin/ruff" check .
"$bin/ruff" format --check .
mapfile -t cxx < <(git ls-files 'csrc/*.cpp' 'csrc/*.h' 'csrc/*.cu')
"$bin/clang-format" --dry-run -Werror "${cxx[@]}"
"$bin/lint-imports" --no-cache --no-logo
# stubtest imports the installed w2sd; run it from outside the source tree.
(cd /tmp && "$bin/python" -m mypy.stubtest w2sd._core w2sd.testing \
  --allowlist "$OLDPWD/scripts/stubtest-allowlist.txt")
echo "lint: ruff, ruff format, clang-format, import contracts and stubtest passed"
