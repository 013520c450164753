"""Ingest benchmark: a generated 1,000,000-respondent survey file, CSV and Parquet.

    python bench/bench_ingest.py [--rows 1000000] [--formats csv,parquet] [--keep DIR]

The file is generated in this process; each ingest runs in a fresh child process so that its peak
memory (ru_maxrss) is the ingest's own. Prints rows/s and peak RSS per format, with validation off
and, when pipelines.validate.stage exists, on.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def generate(n: int, seed: int = 7) -> pa.Table:
    """A coded national survey with plausible code mixes (not the sample-data model, just volume)."""
    from pipelines.domain import schema

    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {
        "survey_id": pa.repeat(pa.scalar("national-2024"), n),
        "survey_year": np.full(n, 2024, dtype=np.int32),
        "respondent_id": pa.array([f"R{i:07d}" for i in range(1, n + 1)]),
        "pref_code": rng.integers(1, 48, n, dtype=np.int32),
        "sex": rng.choice([1, 2, 3, 9], n, p=[0.47, 0.51, 0.01, 0.01]).astype(np.int32),
        "age": pa.array(rng.integers(16, 100, n, dtype=np.int32), mask=rng.random(n) < 0.01),
        "household_single": rng.choice([0, 1, 9], n, p=[0.8, 0.19, 0.01]).astype(np.int32),
        "weight": np.round(rng.uniform(0.3, 3.0, n), 4),
    }
    for q, labels in schema.QUESTIONS.items():
        codes = sorted(labels)
        cols[q] = rng.choice(codes, n).astype(np.int32)
    return pa.table(cols)


def child(path: str, validate: bool) -> None:
    from pipelines.ingest.stage import ingest_files

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = ingest_files([Path(path)], Path(tmp) / "warehouse.duckdb", validate=validate)
        dt = time.perf_counter() - t0
    rows = sum(s.row_count for s in result.staged)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": dt, "peak_mb": peak_mb, "validated": result.validation is not None}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--formats", default="csv,parquet")
    ap.add_argument("--keep", type=Path, help="write the generated files here and keep them")
    ap.add_argument("--child", nargs=2, metavar=("PATH", "VALIDATE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "1")
        return

    try:
        import pipelines.validate.stage  # noqa: F401

        modes = [False, True]
    except ModuleNotFoundError:
        modes = [False]
    tmp = tempfile.TemporaryDirectory()
    out = args.keep or Path(tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = generate(args.rows)
    files = {}
    for fmt in args.formats.split(","):
        path = out / "csv" / "national-2024.csv" if fmt == "csv" else out / "parquet" / "national-2024.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path)
        files[fmt] = path
    print(f"generated {args.rows:,} respondents in {time.perf_counter() - t0:.1f} s")
    del table
    for fmt, path in files.items():
        size_mb = path.stat().st_size / 1e6
        for validate in modes:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(path), "1" if validate else "0"],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print(f"{fmt}: FAILED\n{proc.stderr}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{fmt:8s} {size_mb:7.1f} MB  validate={str(validate):5s}  {r['rows']:,} rows in "
                f"{r['seconds']:.1f} s = {r['rows'] / r['seconds']:,.0f} rows/s, peak RSS {r['peak_mb']:,.0f} MB"
            )
    tmp.cleanup()


if __name__ == "__main__":
    main()
