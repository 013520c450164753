"""Issue #15 guards: how fast and in how much memory hostile inputs are refused (figures printed,
not asserted). Each case runs `tsunagari ingest` in a fresh process; peak RSS from wait4.

    python bench/bench_bad_inputs.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bad_inputs.make import make  # noqa: E402

CASES = {
    "xlsx_zip_bomb": (),
    "xlsx_high_ratio": (),
    "mapping_billion_laughs": ("--mapping", "in/mapping.yml"),
    "weight_1e308": (),
    "xlsx_formula_uncached": (),
}


def run(case: str, args: tuple[str, ...], tmp: Path) -> tuple[int, float, float]:
    d = tmp / case
    make(case, d / "in")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ingest", "in", "--warehouse", "w.duckdb", "--quiet", *args],
        cwd=d,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss / 1024


def guard_overhead() -> None:
    from pipelines.io import xlsx

    sample = ROOT / "data" / "sample" / "pref11-2023.xlsx"
    t0 = time.perf_counter()
    for _ in range(10):
        xlsx.check_archive(sample, sample.name)
        xlsx.uncached_formulas(sample, "data", sample.name)
    print(
        f"guard on {sample.name} ({sample.stat().st_size:,} bytes): {(time.perf_counter() - t0) / 10 * 1000:.1f} ms per file"
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for case, args in CASES.items():
            code, secs, rss = run(case, args, Path(tmp))
            print(f"{case:26s} exit {code}  {secs:5.2f} s  peak RSS {rss:6.0f} MiB")
    guard_overhead()
