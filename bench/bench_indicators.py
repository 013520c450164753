"""Time the indicators stage: one round vs every round, the incremental paths, the downloads.

    python bench/bench_indicators.py [--rows 12000] [--rounds 3] [--keep DIR]

Builds a warehouse with --rounds national rounds of --rows respondents each (2022, 2023, ...), a
prefecture's own survey in the last two rounds and programme data for every fiscal year (the data
generator the tests use, SQL inside DuckDB), then times, wall clock and CPU of this process:

* compute_indicators for the latest round alone (it aggregates the previous round too);
* update_indicators on an empty table: every round in one pass;
* update_indicators again with nothing changed (round keys only);
* a new round added: update_indicators computes that round only;
* the downloads: indicators.csv|xlsx (every round) and one round's indicators-{year}.csv|xlsx.

The machine may be shared: CPU seconds are the steadier figure.
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

from pipelines.indicators.stage import compute_indicators, update_indicators  # noqa: E402
from pipelines.outputs.downloads import write_indicator_downloads  # noqa: E402


def timed(label: str, fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    print(f"{label:<52} {wall:6.2f} s wall {cpu:6.2f} s CPU")
    return out, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=12_000, help="respondents per national round")
    ap.add_argument("--rounds", type=int, default=3, help="national rounds (from 2022)")
    ap.add_argument("--keep", type=Path, help="keep the warehouse in this folder")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="tsunagari-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.duckdb"
    path.unlink(missing_ok=True)

    years = [2022 + k for k in range(args.rounds)]
    con = duckdb.connect(str(path))
    create_tables(con)
    for k, y in enumerate(years):
        generate_round(con, y, args.rows, seed=0.11 + k / 100, shift=0.005 * k)
    generate_programme(con, years[0])
    for y in years[1:]:
        con.execute(
            f"INSERT INTO programme SELECT {y}, * EXCLUDE (fiscal_year) FROM programme WHERE fiscal_year = {years[0]}"
        )
    for y in years[-2:]:
        generate_round(con, y, 1_500, seed=0.33 + y / 1e4, kind="prefecture", pref=11)
    print(
        f"{args.rounds} national rounds of {args.rows:,} respondents ({years[0]}-{years[-1]}), "
        f"own survey of 1,500 in {years[-2:]}, programme data every year"
    )

    (ind, _), one = timed(f"compute_indicators({years[-1]}) (one round)", lambda: compute_indicators(con, years[-1]))
    res, every = timed(f"update_indicators, every round ({len(years)})", lambda: update_indicators(con))
    assert res["computed"] == years, res
    res, _ = timed("update_indicators, nothing changed", lambda: update_indicators(con))
    assert res["computed"] == [], res
    new = years[-1] + 1
    generate_round(con, new, args.rows, seed=0.77)
    res, _ = timed(f"update_indicators, round {new} added", lambda: update_indicators(con))
    assert res["computed"] == [new], res
    out = folder / "downloads"
    _, all_dl = timed("downloads: indicators.csv|xlsx (every round)", lambda: write_indicator_downloads(con, None, out))
    _, one_dl = timed(
        f"downloads: indicators-{years[-1]}.csv|xlsx (one round)",
        lambda: write_indicator_downloads(con, years[-1], out),
    )
    con.close()
    print(
        f"every round / one round, compute (CPU): {every / one:.2f}x for {len(years)} rounds; "
        f"{len(ind):,} indicator rows per round"
    )
    print(f"every-round download / one-round download (CPU): {all_dl / one_dl:.2f}x")
    if args.keep is None:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
