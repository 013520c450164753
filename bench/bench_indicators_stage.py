"""Time the indicators stage (``run_indicators``: the notebook as the stage) of two checkouts side by side.

    python bench/bench_indicators_stage.py --other /path/to/other/checkout [--repeat 2] [--warehouse W]

The other checkout is e.g. ``git archive main pipelines | tar -x -C DIR`` with ``data`` linked into
DIR (the reference data). Each run is a fresh process on a fresh copy of a warehouse holding the
bundled sample data ingested (built once with ``tsunagari ingest data/sample`` unless --warehouse),
so every round is computed, as in a cold build. Both ways of running the notebook are timed:
papermill in a fresh kernel (``tsunagari indicators``) and a warm worker kernel (``tsunagari
build``; the pool's start is not counted). The runs alternate (this, other, this, other, ...) so
that the machine's load falls on both alike. Prints per run and the median the wall seconds of
``run_indicators`` and the CPU seconds of the whole run (process, kernel, workers; start-up
included, the same for both: the difference is the stage's; steadier on a shared machine), and
whether the two checkouts wrote identical `indicators` and `distributions` tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, shutil, sys, time
from pathlib import Path
import duckdb
from pipelines.indicators import run_indicators
src, dst, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
shutil.copy(src, dst)
pool = None
if mode == "warm":
    from pipelines.executor import WarmPool
    from pipelines.reports import KERNEL_PRELOAD
    import nbformat
    from pipelines.executor import Task
    pool = WarmPool(1, preload=KERNEL_PRELOAD)
    # The build starts the pool early: wait until the kernel is warm (a one-cell notebook).
    nb = dst.parent / (dst.stem + "-warm.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), str(nb))
    assert pool.run_one(Task("warm", nb, nb.with_suffix(".out.ipynb"), {})).ok
t = time.perf_counter()
run_indicators(2024, dst, dst.parent / ("out-" + dst.stem), pool=pool)
secs = time.perf_counter() - t
if pool is not None:
    pool.close()
con = duckdb.connect(str(dst), read_only=True)
h = hashlib.sha256()
for table in ("indicators", "distributions"):
    for row in con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall():
        h.update(repr(row).encode())
print(f"{secs:.3f} {h.hexdigest()}")
"""


def one(checkout: Path, warehouse: Path, work: Path, mode: str, k: int) -> tuple[float, float, str]:
    """(wall seconds of run_indicators, CPU seconds of the whole run: the process, its kernel and
    workers, start-up included, the same for both checkouts; the table digest)."""
    import resource

    dst = work / f"{checkout.name}-{mode}-{k}.duckdb"
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(warehouse), str(dst), mode],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"run failed in {checkout}:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    secs, digest = proc.stdout.split()[-2:]
    return float(secs), cpu, digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, required=True, help="the other checkout (its folder has pipelines/)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--warehouse", type=Path, help="an ingested warehouse (default: the sample data)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tsunagari-bench-stage-"))
    warehouse = args.warehouse
    if warehouse is None:
        warehouse = work / "sample.duckdb"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "ingest",
                str(ROOT / "data" / "sample"),
                "--warehouse",
                str(warehouse),
                "-q",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    checkouts = {"this": ROOT, "other": args.other.resolve()}
    for mode in ("papermill", "warm"):
        times: dict[str, list[float]] = {name: [] for name in checkouts}
        cpus: dict[str, list[float]] = {name: [] for name in checkouts}
        digests: dict[str, set[str]] = {name: set() for name in checkouts}
        for k in range(args.repeat):
            for name, path in checkouts.items():
                secs, cpu, digest = one(path, warehouse, work, mode, k)
                times[name].append(secs)
                cpus[name].append(cpu)
                digests[name].add(digest)
                print(f"{mode:<9} {name:<5} run {k + 1}: {secs:6.2f} s wall, {cpu:6.2f} s CPU (whole run)")
        for name in checkouts:
            print(
                f"{mode:<9} {name:<5} median {statistics.median(times[name]):6.2f} s wall, "
                f"{statistics.median(cpus[name]):6.2f} s CPU (whole run)"
            )
        same = len(digests["this"] | digests["other"]) == 1
        print(f"{mode:<9} tables identical between the checkouts: {same}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
