"""A small warehouse and placeholder report files for the site tests.

The warehouse holds plausible `indicators` rows (total and sex breakdowns) for the national level ('00')
and all 47 prefectures, with comparison labels better/similar/worse/higher/lower/not_compared and
suppressed rows, plus the `files` table with its synthetic flag. Values are deterministic. The report
files (HTML/PDF per area, the all-area downloads, quality/index.html) are placeholders standing in for
the reports, indicators and validation stages.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipelines.domain import schema
from pipelines.domain.reference import pref_slug, prefectures

# Plausible national levels of the fixture rows (other indicators: 10 + 5 x their catalogue position).
BASE_VALUES = {
    "lonely_often_always": 4.7,
    "lonely_any": 39.0,
    "ucla_10_12": 7.0,
    "no_contact_inperson": 9.5,
    "help_intention": 51.5,
    "consultations_per_10k": 25.0,
}

# A note that looks like a spreadsheet formula: the per-prefecture XLSX must neutralise it.
FORMULA_NOTE = '=HYPERLINK("http://example.invalid","x")'


def catalogue():
    """The real catalogue (pipelines.domain.catalogue.load_catalogue, or TSUNAGARI_CATALOGUE when set)."""
    from pipelines.domain.catalogue import load_catalogue

    return load_catalogue()


def _wilson(p: float, n: float) -> tuple[float, float]:
    z = 1.959964
    q = p / 100
    denom = 1 + z * z / n
    centre = (q + z * z / (2 * n)) / denom
    half = z * math.sqrt(q * (1 - q) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half) * 100, min(1.0, centre + half) * 100


def _compare(lo: float, hi: float, nat: float, polarity: str) -> str:
    if lo > nat:
        side = "higher"
    elif hi < nat:
        side = "lower"
    else:
        return "similar"
    if polarity == "low_is_good":
        return "worse" if side == "higher" else "better"
    if polarity == "high_is_good":
        return "better" if side == "higher" else "worse"
    return side


def build_site_warehouse(path: Path, year: int = 2024, synthetic: bool = True) -> Path:
    """Create a DuckDB warehouse with `indicators` and `files` for one round."""
    cat = catalogue()
    prefs = prefectures()
    total_pop = float(prefs.population_2020.sum())
    areas = [("00", "全国", 11000)] + [
        (f"{int(r.pref_code):02d}", str(r.name_ja), max(25, int(round(11000 * r.population_2020 / total_pop))))
        for r in prefs.itertuples()
    ]
    rows: list[tuple] = []
    for ci, c in enumerate(cat):
        polarity = c.polarity
        base = float(BASE_VALUES.get(c.id, 10.0 + 5 * ci))
        programme = c.source == "programme" or c.unit != "percent"
        nat = base
        for code, name, n in areas:
            k = int(code)
            # Deterministic spread: a few prefectures clearly above/below the national value.
            factor = 1.0 if code == "00" else 1.0 + 0.45 * math.sin(k * 1.7 + ci)
            if code == "13":
                factor = 1.5
            for bd, nb in (("total", n), ("sex=1", int(n * 0.46)), ("sex=2", int(n * 0.53))):
                v = round(min(97.0, base * factor), 3)
                if c.unit == "flag":  # set or not; the national row is the share of prefectures (%)
                    v = 59.6 if code == "00" else float(k % 5 != 0)
                if programme:
                    comp = (
                        "not_compared"
                        if code == "00" or c.unit == "flag"
                        else ("higher" if v > nat * 1.2 else "lower" if v < nat * 0.8 else "similar")
                    )
                    rows.append(
                        (
                            year,
                            code,
                            name,
                            c.id,
                            bd,
                            v,
                            None,
                            None,
                            None,
                            None,
                            None if code == "00" else nat,
                            comp,
                            "not_compared",
                            False,
                            "プログラムデータ（合成）",
                        )
                    )
                    continue
                lo, hi = _wilson(v, nb * 0.9)
                suppressed = nb < 30 or (code == "31" and ci == 0)  # Tottori: a suppressed headline value
                if code == "00":
                    comp = "not_compared"
                elif suppressed:
                    comp = "not_compared"
                else:
                    comp = _compare(lo, hi, nat, polarity)
                note = "全国調査" if code == "00" else "全国調査の県別集計"
                if suppressed:
                    note += "; 集計対象が30人未満のため非表示"
                elif nb < 100:
                    note += "; 参考値（集計対象30～99人）"
                if code == "13" and ci == 0 and bd == "total":
                    note = FORMULA_NOTE
                rows.append(
                    (
                        year,
                        code,
                        name,
                        c.id,
                        bd,
                        v,
                        lo,
                        hi,
                        nb,
                        nb * 0.9,
                        None if code == "00" else nat,
                        comp,
                        "no_change",
                        suppressed,
                        note,
                    )
                )
    con = duckdb.connect(str(path))
    try:
        con.execute(schema.INDICATORS_TABLE_DDL)
        con.execute(schema.FILES_TABLE_DDL)
        df = pd.DataFrame(rows, columns=schema.INDICATOR_COLUMNS[:15]).reindex(columns=schema.INDICATOR_COLUMNS)
        # how each row was judged (the columns after the contract's 15), as the indicators stage sets them
        programme_rows = df["indicator_id"].isin([c.id for c in cat if c.source == "programme"])
        df["source"] = np.select(
            [programme_rows, df["area_code"] == "00"], ["programme", "national"], "national_subsample"
        )
        df["source_changed"] = False
        df["comparison_method"] = "newcombe"
        df["change_method"] = "newcombe"
        df["design_effect"] = 1.0
        con.register("df", df)
        con.execute("INSERT INTO indicators SELECT * FROM df")
        con.execute(
            "INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,now())",
            [
                f"sha{year}",
                f"national-{year}.csv",
                f"data/sample/national-{year}.csv",
                "survey",
                f"national-{year}",
                year,
                "utf-8",
                11000,
                synthetic,
            ],
        )
    finally:
        con.close()
    return path


def write_placeholder_outputs(out: Path, year: int = 2024, skip: tuple[int, ...] = ()) -> None:
    """Stand-ins for the files other stages write: reports, all-area downloads, quality page."""
    (out / "prefectures").mkdir(parents=True, exist_ok=True)
    (out / "downloads").mkdir(parents=True, exist_ok=True)
    (out / "quality").mkdir(parents=True, exist_ok=True)
    for code in [0] + list(range(1, 48)):
        if code in skip:
            continue
        slug = pref_slug(code)
        base = out / ("national" if code == 0 else f"prefectures/{slug}")
        base.with_suffix(".html").write_text(
            f'<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>{slug}</title></head>'
            f"<body><h1>{slug}</h1></body></html>",
            encoding="utf-8",
        )
        base.with_suffix(".pdf").write_bytes(b"%PDF-1.4\n%placeholder\n")
    (out / "downloads" / f"indicators-{year}.csv").write_text("year,area_code\n", encoding="utf-8")
    (out / "downloads" / f"indicators-{year}.xlsx").write_bytes(b"PK placeholder")
    (out / "quality" / "index.html").write_text(
        '<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>データ品質</title></head>'
        "<body><h1>データ品質</h1></body></html>",
        encoding="utf-8",
    )
