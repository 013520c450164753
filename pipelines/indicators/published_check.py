"""The official published national series as a check on the computed national figures.

``data/reference/national_results.csv`` holds the figures the Cabinet Secretariat / Cabinet Office
published for each round of 人々のつながりに関する基礎調査 (with source and status per row). For every
round and figure that the warehouse also computes -- an answer share of the national survey (the
`distributions` table, area '00') or an indicator restricted to a sub-population (e.g. not receiving
support among those with worries) -- ``compare_national`` puts the published figure beside the
computed one. Published figures are rounded to 0.1 point, so a difference above ``TOLERANCE`` (0.1
point) is more than rounding: the quality page lists every such row. With the bundled synthetic
data the differences document how far the synthetic rounds are from the real ones; with real
microdata they catch a coding or weighting error.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from pipelines.domain.config import REFERENCE_DIR
from pipelines.io.warehouse import has_table

PUBLISHED_FILE = REFERENCE_DIR / "national_results.csv"
TOLERANCE = 0.1  # percentage points: published figures are rounded to one decimal

# Published rows that are an indicator of the catalogue rather than a share of all respondents:
# (question, category, published breakdown) -> (indicator_id, breakdown in the indicators table).
INDICATOR_ROWS = {
    ("q_support_received", "2", "has_worries=1"): ("no_support_among_worried", "total"),
}

COLUMNS = [
    "year",
    "question",
    "category",
    "category_label",
    "breakdown",
    "published",
    "computed",
    "difference",
    "n_published",
    "n_computed",
    "status",
    "source",
    "compared_with",
    "above_tolerance",
]


def published_national() -> pd.DataFrame:
    """The shipped published national series (percent rows only; counts and response rates have
    no share to compare)."""
    df = pd.read_csv(PUBLISHED_FILE, dtype={"category": str, "breakdown": str}, encoding="utf-8")
    df = df[df["value_pct"].notna() & ~df["question"].isin(["response_rate", "respondents"])]
    return df.reset_index(drop=True)


def compare_national(con: duckdb.DuckDBPyConnection, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per round and published figure that the warehouse also computes: ``published`` and
    ``computed`` (percent), ``difference`` = computed − published (points), ``n_published`` (the
    published valid responses of the round) and ``n_computed`` (the computed base), the published
    row's ``status`` (confirmed / uncertain) and ``source``, ``compared_with`` (the warehouse table
    and key used) and ``above_tolerance`` (|difference| > TOLERANCE). A computed figure that is
    suppressed is left out; rounds or figures absent from either side are left out."""
    pub = published_national() if published is None else published
    out = pd.DataFrame(columns=COLUMNS)
    if pub.empty:
        return out
    parts = []
    if has_table(con, "distributions"):
        dist = con.execute(
            "SELECT year, question, category, breakdown, value AS computed, n_unweighted AS n_computed "
            "FROM distributions WHERE area_code = '00' AND NOT suppressed"
        ).df()
        m = pub.merge(dist, on=["year", "question", "category", "breakdown"], how="inner")
        m["compared_with"] = "distributions: " + m["question"] + "=" + m["category"]
        parts.append(m)
    if has_table(con, "indicators") and INDICATOR_ROWS:
        ind = con.execute(
            "SELECT year, indicator_id, breakdown AS ind_breakdown, value AS computed, "
            "n_unweighted AS n_computed FROM indicators WHERE area_code = '00' AND NOT suppressed"
        ).df()
        keys = pd.DataFrame(
            [(q, c, b, i, ib) for (q, c, b), (i, ib) in INDICATOR_ROWS.items()],
            columns=["question", "category", "breakdown", "indicator_id", "ind_breakdown"],
        )
        m = pub.merge(keys, on=["question", "category", "breakdown"]).merge(
            ind, on=["year", "indicator_id", "ind_breakdown"], how="inner"
        )
        m["compared_with"] = "indicators: " + m["indicator_id"]
        parts.append(m)
    parts = [p for p in parts if len(p)]
    if not parts:
        return out
    m = pd.concat(parts, ignore_index=True)
    m["published"] = m["value_pct"].astype(float)
    m["computed"] = m["computed"].astype(float)
    m["difference"] = m["computed"] - m["published"]
    m["n_published"] = pd.to_numeric(m["n"], errors="coerce").astype("Int64")
    m["n_computed"] = pd.to_numeric(m["n_computed"], errors="coerce").astype("Int64")
    # A tiny allowance for the binary representation of one-decimal figures (4.9 - 4.8 != 0.1).
    m["above_tolerance"] = np.abs(m["difference"]) > TOLERANCE + 1e-9
    m["status"] = m["status"].fillna("")
    return m[COLUMNS].sort_values(["year", "question", "breakdown", "category"], kind="stable").reset_index(drop=True)
