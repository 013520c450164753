"""The habits .ci/run checks, also run by the README's test command: ruff's lint and format gates
(ruff pinned in requirements.lock) and notebook hygiene (no committed notebook holds outputs)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["pipelines", "tests", "bench"]


def _ruff() -> str:
    exe = shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' brings it)")
    return exe


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(args: list[str]) -> None:
    proc = subprocess.run([_ruff(), *args, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_committed_notebooks_hold_no_outputs() -> None:
    listed = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    notebooks = [ROOT / p for p in listed.stdout.split()] if listed.returncode == 0 else sorted(ROOT.rglob("*.ipynb"))
    assert notebooks
    dirty = []
    for nb in notebooks:
        for i, cell in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
                dirty.append(f"{nb.relative_to(ROOT)} cell {i}")
    assert dirty == [], "clear the outputs before committing (jupyter nbconvert --clear-output --inplace)"
