"""Test helper: the judging columns of the indicators table (source, previous_year, ...) for a
hand-made table of the 15 contract columns, derived the way pipelines.indicators fills them."""

from __future__ import annotations

import pandas as pd

from pipelines import schema


def with_judging_columns(df: pd.DataFrame, own_survey: set[tuple[str, int]] = frozenset()) -> pd.DataFrame:
    """``df`` (schema.CONTRACT_INDICATOR_COLUMNS) plus schema.JUDGING_COLUMNS, in table order.
    ``own_survey``: (area_code, year) pairs estimated from a prefecture's own survey."""
    df = df.copy()
    programme = df["lower_ci95"].isna() & df["n_unweighted"].isna()
    own = pd.Series([(a, int(y)) in own_survey for a, y in zip(df["area_code"], df["year"])], index=df.index)
    df["source"] = "national_subsample"
    df.loc[own, "source"] = "own_survey"
    df.loc[df["area_code"] == "00", "source"] = "national"
    df.loc[programme, "source"] = "programme"
    years = sorted(df["year"].unique())
    prev = {y: p for p, y in zip(years, years[1:])}
    df["previous_year"] = pd.array([prev.get(y) for y in df["year"]], dtype="Int64")
    prev_source = {(a, i, b, y): s for a, i, b, y, s in
                   zip(df["area_code"], df["indicator_id"], df["breakdown"], df["year"], df["source"])}
    df["source_changed"] = [prev_source.get((a, i, b, prev.get(y)), s) != s for a, i, b, y, s in
                            zip(df["area_code"], df["indicator_id"], df["breakdown"], df["year"], df["source"])]
    df["comparison_method"] = df["source"].map({"own_survey": "newcombe", "national_subsample": "newcombe_rest"}).fillna("none")
    df.loc[df["comparison"] == "not_compared", "comparison_method"] = "none"
    df["change_method"] = "newcombe"
    df.loc[df["change_vs_previous"] == "not_compared", "change_method"] = "none"
    df["design_effect"] = 1.0
    df.loc[programme, "design_effect"] = float("nan")
    return df[schema.INDICATOR_COLUMNS]
