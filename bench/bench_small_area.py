"""Time the small-area estimates of every round of the bundled sample (pipelines/domain/small_area.py).

    python bench/bench_small_area.py [--warehouse PATH] [--repeat 5]

The survey cells of every round (``indicators.round_data``: aggregation, design effects,
suppression and audit; not timed) come from ``--warehouse`` when given (a warehouse built by
``tsunagari build`` or ``ingest``), else from the generator's data loaded into a temporary DuckDB
file (the same data as data/sample). Then, per round, timed over ``--repeat`` passes: the
Fay–Herriot fits of every indicator x breakdown (``model_estimates``: per indicator one model of
the totals and one per breakdown partition, arcsine transform, REML, MSE, benchmarking), the pooled
estimates with their disclosure audit (``pooled_estimates``, only a round with two earlier ones),
and the whole ``small_area_round`` (both plus the leading estimate). Prints best and median.

Figures (2 shared cores, load ~1, 6 Dec 2026, the bundled sample's warehouse from `tsunagari build`):
per round 9 indicators, 38 fits (per indicator the totals and one fit per breakdown partition, or
the fit over every breakdown for partitions with few published cells): model_estimates 0.27 s
(7 ms per fit, most of it pandas; the REML fits themselves ~0.06 s); the pooled estimates of 2024
with their disclosure audit 0.45 s (none for 2022/2023: fewer than three earlier rounds);
small_area_round 0.28 s (2022, 2023) and 0.72 s (2024); every round 1.3 s. In the indicators
stage, computing every round takes 3.0-3.8 s with the small-area estimates, 1.3-1.4 s without.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402

from pipelines.domain import schema, small_area  # noqa: E402
from pipelines.domain.catalogue import load_catalogue  # noqa: E402
from pipelines.indicators import stage as indicators  # noqa: E402
from pipelines.ingest import sample  # noqa: E402


def _generated_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(schema.SURVEY_TABLE_DDL.format(name="survey_responses"))
    cuts = {}

    def load(df, kind):
        df = df.copy()
        for col in schema.SURVEY_DESIGN_COLUMNS:
            if col not in df.columns:
                df[col] = None
        df["survey_kind"], df["file_id"], df["source_row"] = kind, df["survey_id"], np.arange(1, len(df) + 1)
        con.register("_df", df)
        cols = [c for c in df.columns if c != "age"]
        con.execute(
            f"INSERT INTO survey_responses ({', '.join(cols)}, age, age_band, uk_age_band) SELECT "
            f"{', '.join(cols)}, age, {schema.AGE_BAND_SQL}, {schema.UK_AGE_BAND_SQL} FROM _df"
        )
        con.unregister("_df")

    for y in sorted(sample.NATIONAL_ROWS):
        df, cuts[y] = sample._national(y, None, sample.DEFAULT_SEED)
        load(df, "national")
    for pref, y, _, n in sample.PREF_SURVEYS:
        load(sample.prefecture_survey(pref, y, n, national_cuts=cuts[y]), "prefecture")
    con.close()


def _time(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    inds = [i for i in load_catalogue() if i.source == "survey"]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.warehouse
        if path is None:
            path = Path(tmp) / "warehouse.duckdb"
            _generated_warehouse(path)
        con = duckdb.connect(str(path), read_only=True)
        years = indicators.national_years(con)
        t = time.perf_counter()
        cells = {y: indicators.round_data(con, y, inds).cells for y in years}
        con.close()
    print(f"rounds {years}: survey cells computed in {time.perf_counter() - t:.1f} s (not timed below)")
    small_area.model_estimates(cells[years[0]])  # warm imports (scipy.optimize for the score-root path)
    fmt = lambda ts: f"best {min(ts):.3f} s, median {statistics.median(ts):.3f} s"  # noqa: E731
    total = 0.0
    for y in years:
        _, fits = small_area.model_estimates(cells[y])
        n_fits = fits.groupby(["indicator_id", "fit_scope"]).ngroups
        tm = _time(lambda y=y: small_area.model_estimates(cells[y]), args.repeat)
        tp = _time(lambda y=y: small_area.pooled_estimates(cells, y), args.repeat)
        ta = _time(lambda y=y: small_area.small_area_round(cells, y), args.repeat)
        total += min(ta)
        print(
            f"{y}: {n_fits} fits ({len(inds)} indicators): model_estimates {fmt(tm)} "
            f"({1000 * min(tm) / n_fits:.1f} ms per fit); pooled + audit {fmt(tp)}; "
            f"small_area_round {fmt(ta)}"
        )
    print(f"every round: {total:.2f} s (best passes)")


if __name__ == "__main__":
    main()
