"""Time the indicators stage on 1,000,000 respondents.

    python bench/bench_indicators.py [--rows 1000000] [--keep DIR]

Builds a warehouse with two national rounds of --rows respondents each (so the change vs the
previous round is computed too) plus one prefecture survey and programme data, then times
compute_indicators (every indicator x 48 areas x breakdowns, distributions, previous round) and
write_indicators. The data generator is the one the tests use (SQL inside DuckDB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_indicators import create_tables, generate_programme, generate_round  # noqa: E402

from pipelines.indicators import compute_indicators, write_indicators  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="respondents per national round")
    ap.add_argument("--keep", type=Path, help="keep the warehouse in this folder")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="tsunagari-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.duckdb"
    path.unlink(missing_ok=True)

    t0 = time.perf_counter()
    con = duckdb.connect(str(path))
    create_tables(con)
    generate_round(con, 2023, args.rows, seed=0.11)
    generate_round(con, 2024, args.rows, seed=0.22, shift=0.01)
    generate_round(con, 2024, 5_000, seed=0.33, kind="prefecture", pref=11)
    generate_programme(con, 2024)
    con.close()
    t_gen = time.perf_counter() - t0

    con = duckdb.connect(str(path))
    t1 = time.perf_counter()
    ind, dist = compute_indicators(con, 2024)
    t_compute = time.perf_counter() - t1
    t2 = time.perf_counter()
    write_indicators(con, 2024, ind, dist)
    t_write = time.perf_counter() - t2
    con.close()
    print(f"respondents: {args.rows:,} in 2024 (+{args.rows:,} in 2023 for the change, "
          f"+5,000 own survey)")
    print(f"generate warehouse: {t_gen:.1f} s")
    print(f"compute_indicators: {t_compute:.2f} s -> {len(ind):,} indicator rows, "
          f"{len(dist):,} distribution rows")
    print(f"write_indicators:   {t_write:.2f} s")
    if args.keep is None:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
