"""The rooms of docs/architecture.md, checked on what a process really loads: loading an
engine and sampling imports the runtime and nothing of the other rooms (the static
contracts are import-linter's, scripts/lint.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOMS = {
    "w2sd_cli",
    "w2sd_serve",
    "w2sd_bench",
    "w2sd_studies",
    "w2sd_reference",
    "export",
    "engines",
}
FRAMEWORKS = {"torch", "diffusers", "transformers", "onnx", "fastapi", "ray"}

SCRIPT = """
import json, sys
from w2sd import W2SDRuntime
rt = W2SDRuntime(sys.argv[1])
image = rt.sample("a red circle", num_inference_steps=3, reflection_steps=1, seed=0)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_sampling_imports_only_the_runtime(engine_dir: Path, tmp_path: Path) -> None:
    # Run from an empty folder, so that nothing of the source tree is importable by accident.
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(engine_dir)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert "w2sd" in loaded
    assert not loaded & ROOMS, f"sampling imported other rooms: {sorted(loaded & ROOMS)}"
    assert not loaded & FRAMEWORKS, f"sampling imported: {sorted(loaded & FRAMEWORKS)}"
