"""A fixture warehouse for the report tests: plausible `indicators`, `distributions` and `files` rows.

Values are synthetic (deterministic from a seed), shaped like the national survey: the national base
~11,000, prefecture bases proportional to population (Tottori ~50), so small breakdowns are suppressed
(< 30) or shown as 参考値 (30-99). Suppressed rows keep a value on purpose: the report must not show it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import duckdb
import pandas as pd

from pipelines import schema
from pipelines.reference import prefectures

# Fallback catalogue (used only when pipelines.indicators.load_catalogue is not available).
FALLBACK_CATALOGUE = [
    dict(id="lonely_often_always", name_ja="孤独感が「しばしばある・常にある」", name_en="Often/always lonely",
         pillar=1, polarity="low_is_good", uk_comparable=True, unit="percent", base=4.7),
    dict(id="lonely_any", name_ja="孤独感がある（しばしば・時々・たまに）", name_en="Lonely at all",
         pillar=1, polarity="low_is_good", uk_comparable=True, unit="percent", base=39.0),
    dict(id="ucla_10_12", name_ja="UCLA孤独感尺度 10～12点", name_en="UCLA score 10-12",
         pillar=1, polarity="low_is_good", uk_comparable=False, unit="percent", base=7.0),
    dict(id="ucla_7_12", name_ja="UCLA孤独感尺度 7～12点", name_en="UCLA score 7-12",
         pillar=1, polarity="low_is_good", uk_comparable=False, unit="percent", base=48.0),
    dict(id="no_contact_inperson", name_ja="直接会って話すことが「全くない」", name_en="No face-to-face contact",
         pillar=3, polarity="low_is_good", uk_comparable=False, unit="percent", base=9.5),
    dict(id="no_participation", name_ja="社会活動に「特に参加はしていない」", name_en="No social participation",
         pillar=3, polarity="low_is_good", uk_comparable=False, unit="percent", base=52.0),
    dict(id="no_reliable_person", name_ja="困った時に頼れる人が「いない」", name_en="No one to rely on",
         pillar=2, polarity="low_is_good", uk_comparable=False, unit="percent", base=7.5),
    dict(id="no_support_among_worried", name_ja="支援を受けていない（不安や悩みがある人のうち）",
         name_en="Not receiving support (among those with worries)",
         pillar=2, polarity="low_is_good", uk_comparable=False, unit="percent", base=88.0),
    dict(id="help_intention", name_ja="声掛けや手助けを「しようと思う」", name_en="Willing to help others",
         pillar=1, polarity="high_is_good", uk_comparable=False, unit="percent", base=51.5),
    dict(id="consultations_per_10k", name_ja="電話・SNS相談件数（人口1万人当たり）",
         name_en="Consultations per 10,000", pillar=2, polarity="no_judgement", uk_comparable=False,
         unit="per_10k", base=25.0, programme=True),
    dict(id="supporters_per_10k", name_ja="つながりサポーター養成数（人口1万人当たり）",
         name_en="Supporters trained per 10,000", pillar=4, polarity="high_is_good", uk_comparable=False,
         unit="per_10k", base=4.0, programme=True),
    dict(id="has_platform", name_ja="官民連携プラットフォームの設置", name_en="Public-private platform",
         pillar=4, polarity="no_judgement", uk_comparable=False, unit="flag", base=0.6, programme=True),
    dict(id="has_regional_council", name_ja="孤独・孤立対策地域協議会の設置", name_en="Regional council",
         pillar=4, polarity="no_judgement", uk_comparable=False, unit="flag", base=0.4, programme=True),
]
FIXTURE_IDS = [c["id"] for c in FALLBACK_CATALOGUE]

LONELINESS_SHARES = {"5": 4.7, "4": 15.0, "3": 19.3, "2": 40.0, "1": 20.0, "9": 1.0}
UCLA_SHARES = {"10-12": 7.0, "7-9": 41.0, "4-6": 37.0, "3": 14.0, "na": 1.0}


def _wilson(p: float, n: float) -> tuple[float, float]:
    if n <= 0:
        return (math.nan, math.nan)
    z = 1.959964
    q = p / 100
    denom = 1 + z * z / n
    centre = (q + z * z / (2 * n)) / denom
    half = z * math.sqrt(q * (1 - q) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half) * 100, min(1.0, centre + half) * 100)


def _compare(value, lo, hi, nat, polarity) -> str:
    if value is None or nat is None or lo is None or math.isnan(lo):
        return "not_compared"
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


def _change(p1, n1, p0, n0) -> str:
    if p0 is None or not n0 or not n1:
        return "not_compared"
    a, b = p1 / 100, p0 / 100
    pooled = (a * n1 + b * n0) / (n1 + n0)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / n1 + 1 / n0), 1e-12))
    z = (a - b) / se
    if abs(z) < 1.959964:
        return "no_change"
    return "increase" if z > 0 else "decrease"


def catalogue() -> list[dict]:
    """The indicator catalogue: the real one when it exists, else the fallback above."""
    try:
        from pipelines.indicators import load_catalogue  # type: ignore

        cat = load_catalogue()
        entries = list(cat.values()) if isinstance(cat, dict) else list(cat)
        return [dict(e) if isinstance(e, dict) else dict(vars(e)) for e in entries]
    except Exception:
        return [dict(c) for c in FALLBACK_CATALOGUE]


def build_fixture_warehouse(path: Path, years: tuple[int, ...] = (2022, 2023, 2024), seed: int = 7,
                            synthetic: bool = True) -> Path:
    """Create a DuckDB warehouse at `path` with `indicators`, `distributions` and `files`."""
    rng = random.Random(seed)
    prefs = prefectures()
    total_pop = float(prefs.population_2020.sum())
    areas = [("00", "全国", 11000)] + [
        (f"{int(r.pref_code):02d}", str(r.name_ja), max(40, int(round(11000 * r.population_2020 / total_pop))))
        for r in prefs.itertuples()
    ]
    pref_effect = {code: rng.gauss(1.0, 0.12) for code, _, _ in areas}
    pref_effect["00"] = 1.0
    pref_effect["13"] = 1.25  # Tokyo clearly above the national value for loneliness
    sexes = ["1", "2"]
    ind_rows: list[tuple] = []
    dist_rows: list[tuple] = []
    prev: dict[tuple, tuple[float, int]] = {}
    for yi, year in enumerate(years):
        drift = 1.0 + 0.03 * yi
        national: dict[tuple, float] = {}
        for code, name, n in areas:
            eff = pref_effect[code]
            # survey indicators
            for c in FALLBACK_CATALOGUE:
                if c.get("programme"):
                    continue
                breakdowns = [("total", n)]
                breakdowns += [(f"sex={s}", int(n * (0.46 if s == "1" else 0.53))) for s in sexes]
                breakdowns += [(f"age={b}", max(1, int(n * w))) for b, w in
                               zip(schema.AGE_BANDS, [0.03, 0.08, 0.11, 0.15, 0.17, 0.17, 0.19, 0.10])]
                breakdowns += [(f"uk_age={b}", max(1, int(n * w))) for b, w in
                               zip(schema.UK_AGE_BANDS, [0.06, 0.09, 0.20, 0.26, 0.21, 0.18])]
                for bd, nb in breakdowns:
                    scale = eff if c["polarity"] == "low_is_good" else 2 - eff
                    bd_eff = 1.0
                    if bd.startswith("age=") or bd.startswith("uk_age="):
                        bd_eff = 1.3 - 0.08 * (breakdowns.index((bd, nb)) % 8)
                    v = max(0.3, min(97.0, c["base"] * scale * bd_eff * drift * (1 + rng.gauss(0, 0.04))))
                    v = round(v, 3)
                    neff = nb * 0.9
                    lo, hi = _wilson(v, neff)
                    key = (c["id"], bd)
                    if code == "00":
                        national[key] = v
                    nat = national.get(key)
                    suppressed = nb < 30
                    comp = "not_compared" if suppressed or code == "00" else _compare(v, lo, hi, nat, c["polarity"])
                    p = prev.get((code,) + key)
                    change = "not_compared" if suppressed or p is None else _change(v, neff, p[0], p[1])
                    note_src = ("県独自調査（全国調査と同一の調査票）" if code == "11" and year == years[-1]
                                else "全国調査" if code == "00" else "全国調査の県別集計（サブサンプル）")
                    note = note_src
                    if suppressed:
                        note += "; 集計対象が30人未満のため非表示"
                    elif nb < 100:
                        note += "; 参考値（集計対象30～99人）"
                    ind_rows.append((year, code, name, c["id"], bd, v, lo, hi, nb, neff,
                                     None if code == "00" else nat, comp, change, suppressed, note))
                    prev[(code,) + key] = (v, neff)
            # programme indicators
            for c in FALLBACK_CATALOGUE:
                if not c.get("programme"):
                    continue
                if c["unit"] == "flag":
                    v = 1.0 if rng.random() < c["base"] + 0.1 * yi else 0.0
                else:
                    v = round(c["base"] * rng.uniform(0.4, 1.8) * drift, 2)
                ind_rows.append((year, code, name, c["id"], "total", v, None, None, None, None,
                                 None, "not_compared", "not_compared", False, "プログラムデータ（合成）"))
            # distributions: direct question and UCLA bands, total + uk_age
            for question, shares, labels in (
                ("q_loneliness", LONELINESS_SHARES, schema.QUESTIONS["q_loneliness"]),
                ("ucla_band", UCLA_SHARES, schema.UCLA_BANDS),
            ):
                for bd, nb in [("total", n)] + [(f"uk_age={b}", max(1, int(n * 0.17))) for b in schema.UK_AGE_BANDS]:
                    raw = {k: max(0.2, s * (eff if k in ("5", "4", "10-12") else 1) * (1 + rng.gauss(0, 0.05)))
                           for k, s in shares.items()}
                    tot = sum(raw.values())
                    for k, s in raw.items():
                        v = round(100 * s / tot, 3)
                        lo, hi = _wilson(v, nb)
                        label = labels[int(k)] if question == "q_loneliness" else labels[k]
                        dist_rows.append((year, code, question, bd, k, label, v, lo, hi, nb, nb < 30))
        # national value for programme indicators: the mean over prefectures
    con = duckdb.connect(str(path))
    try:
        con.execute(schema.INDICATORS_TABLE_DDL)
        con.execute(schema.DISTRIBUTIONS_TABLE_DDL)
        con.execute(schema.FILES_TABLE_DDL)
        ind_df = pd.DataFrame(ind_rows, columns=schema.INDICATOR_COLUMNS)
        dist_df = pd.DataFrame(dist_rows, columns=["year", "area_code", "question", "breakdown", "category",
                                                   "category_label", "value", "lower_ci95", "upper_ci95",
                                                   "n_unweighted", "suppressed"])
        con.register("ind_df", ind_df)
        con.register("dist_df", dist_df)
        con.execute("INSERT INTO indicators SELECT * FROM ind_df")
        con.execute("INSERT INTO distributions SELECT * FROM dist_df")
        # National row of a flag = % of prefectures with it; of a rate = mean of prefectures.
        con.execute("""UPDATE indicators AS i SET national_value = m.v FROM (
              SELECT year, indicator_id,
                     CASE WHEN indicator_id LIKE 'has_%' THEN 100 * avg(value) ELSE avg(value) END AS v
              FROM indicators
              WHERE area_code <> '00' AND indicator_id IN ('consultations_per_10k','supporters_per_10k',
                    'has_platform','has_regional_council') GROUP BY year, indicator_id) m
            WHERE i.year = m.year AND i.indicator_id = m.indicator_id AND i.area_code <> '00'""")
        con.execute("""UPDATE indicators AS i SET value = m.v FROM (
              SELECT year, indicator_id,
                     CASE WHEN indicator_id LIKE 'has_%' THEN 100 * avg(value) ELSE avg(value) END AS v
              FROM indicators
              WHERE area_code <> '00' AND indicator_id IN ('consultations_per_10k','supporters_per_10k',
                    'has_platform','has_regional_council') GROUP BY year, indicator_id) m
            WHERE i.year = m.year AND i.indicator_id = m.indicator_id AND i.area_code = '00'""")
        for yi, year in enumerate(years):
            con.execute("INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,now())",
                        [f"sha{year}", f"national-{year}.csv", f"data/sample/national-{year}.csv", "survey",
                         f"national-{year}", year, "utf-8", 11000, synthetic])
    finally:
        con.close()
    return path


if __name__ == "__main__":  # python tests/fixtures_reports.py /tmp/wh.duckdb
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fixture_reports.duckdb")
    out.unlink(missing_ok=True)
    print(build_fixture_warehouse(out))
