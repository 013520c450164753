"""Benchmark: validate a 1,000,000-respondent staged survey (DuckDB -> pandas -> GX suite).

    python bench/bench_validate.py [--rows 1000000]

Prints the time of the first validation (includes importing GX and building the cached context and
suites), a second warm validation, and the peak memory: the process's peak RSS, and the peak of
Python allocations (tracemalloc) during a third run.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipelines.domain import schema
from pipelines.io.staging import StagedFile


def survey_frame(n: int, seed: int = 1, file_id: str = "bench") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "survey_id": "national-2024",
            "survey_year": np.full(n, 2024, dtype="int32"),
            "survey_kind": "national",
            "respondent_id": pd.Series(np.arange(n)).map("R{:07d}".format),
            "pref_code": rng.integers(1, 48, n, dtype="int32"),
            "sex": rng.choice(np.array([1, 2, 3, 9], dtype="int32"), n),
            "age": pd.array(rng.integers(16, 100, n), dtype="Int32"),
            "age_band": None,
            "uk_age_band": None,
            "household_single": rng.choice(np.array([0, 1, 9], dtype="int32"), n),
            "weight": rng.uniform(0.2, 3.0, n),
        }
    )
    for q, codes in schema.QUESTIONS.items():
        df[q] = rng.choice(np.array(sorted(codes), dtype="int32"), n)
    df["q_support_received"] = np.where(df["q_has_worries"] == 1, df["q_support_received"], 9).astype("int32")
    df["file_id"] = file_id
    df["source_row"] = np.arange(1, n + 1, dtype="int32")
    return df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args(argv)

    t = time.perf_counter()
    df = survey_frame(args.rows)
    con = duckdb.connect()
    con.execute(schema.SURVEY_TABLE_DDL.format(name="staging_survey"))
    con.execute("INSERT INTO staging_survey BY NAME SELECT * FROM df")
    del df
    print(f"generated and staged {args.rows:,} rows in {time.perf_counter() - t:.2f} s")
    sf = StagedFile(
        path=Path("bench.csv"),
        file_name="bench.csv",
        file_id="bench",
        kind="survey",
        row_count=args.rows,
        survey_id="national-2024",
        survey_year=2024,
    )

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from pipelines.validate.stage import validate_staged

    t = time.perf_counter()
    report = validate_staged(con, [sf])
    cold = time.perf_counter() - t

    t = time.perf_counter()
    con.execute("SELECT * FROM staging_survey WHERE file_id = ?", ["bench"]).df()
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    report2 = validate_staged(con, [sf])
    warm = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    tracemalloc.start()  # a third run, for memory only (tracing slows it down)
    validate_staged(con, [sf])
    _, peak_py = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert not report.has_critical and not report.has_warning, report.summary()
    assert not report2.has_critical
    print(f"expectations: {len(report.results)} on {args.rows:,} rows")
    print(f"validation (cold: GX import + context + suites): {cold:.2f} s")
    print(
        f"validation (warm, cached context):              {warm:.2f} s  (of which DuckDB -> pandas read ~{read_s:.2f} s)"
    )
    print(f"peak Python allocations during validation:       {peak_py / 2**20:.0f} MiB")
    print(
        f"peak RSS of the process:                         {rss_mb:.0f} MiB (before validating: {rss_before:.0f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
