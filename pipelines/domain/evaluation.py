"""The evaluation that concludes: progress since a baseline, multiplicity, and the main points (要点).

Pure functions over the tidy indicators table (one row per year x area x indicator x breakdown),
the catalogue and, for a baseline round with no microdata, the published national series. The
words come from ``method_statement`` (one method statement); the tests come from ``stats``.

* ``progress_table``: per indicator of the national figures, the baseline round (catalogue field
  ``baseline``; the warehouse's round when it holds it, else the published national figure named by
  ``baseline_published``, else the first round in the warehouse) against the latest round: the
  difference with its Newcombe interval, the p-value (Fisher's exact test for small expected counts,
  else the Newcombe interval inverted), the Holm adjustment within each 基本方針, and the words
  改善/悪化/変化なし (増加/減少 without a direction of good). Programme indicators are counts of every
  prefecture, not samples: their change is described, not tested. ``target`` (optional) is shown.
* ``key_points``: three to five sentences for the top of a report, each carrying the rows (keys and
  numbers) it was made from, so a test can tie every sentence to the table.

Layer 0: no files, no warehouse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.domain import config, stats
from pipelines.domain.catalogue import PILLARS, Indicator
from pipelines.domain.conventions import change_words
from pipelines.domain.schema import COMPARISON_LABELS as COMPARISON_WORDS

__all__ = ["holm", "difference_p_value", "progress_table", "KeyPoint", "key_points", "pct", "chance_flags"]

NATIONAL = "00"


def pct(v: float, digits: int = 1) -> str:
    """A share in percent as published (0.1)."""
    return f"{v:.{digits}f}"


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN kept, left out of the family). Equals statsmodels
    ``multipletests(p, method='holm')[1]``."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * q[order])
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def _newcombe_excludes(p1, n1, p2, n2, confidence: float) -> bool:
    lo, hi = stats.newcombe_interval(p1, n1, p2, n2, confidence)
    return bool(lo > 0 or hi < 0)


def difference_p_value(p1: float, n1: float, p2: float, n2: float) -> tuple[float, str]:
    """(p-value, method) for p1 − p2 of two independent proportions on effective sizes, the same
    decision as ``stats.difference_test``: Fisher's exact p when an expected count is below
    ``stats.EXPECTED_MIN``; else the Newcombe interval inverted: the largest α at which the
    (1 − α) interval still excludes 0 (p < α exactly when the interval excludes 0)."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (p1, n1, p2, n2)) or n1 <= 0 or n2 <= 0:
        return float("nan"), "none"
    if float(stats.expected_counts_min(p1, n1, p2, n2)) < stats.EXPECTED_MIN:
        p = float(stats.fisher_exact_p(p1 * n1, n1, p2 * n2, n2))
        if not math.isnan(p):
            return p, "fisher"
    if p1 == p2:
        return 1.0, "newcombe"
    lo, hi = 1e-12, 1.0 - 1e-12  # confidence levels
    if _newcombe_excludes(p1, n1, p2, n2, hi):
        return 1.0 - hi, "newcombe"
    if not _newcombe_excludes(p1, n1, p2, n2, lo):
        return 1.0, "newcombe"
    for _ in range(60):
        mid = (lo + hi) / 2
        if _newcombe_excludes(p1, n1, p2, n2, mid):
            lo = mid
        else:
            hi = mid
    return 1.0 - (lo + hi) / 2, "newcombe"


def chance_flags(n_tests: int) -> float:
    """Flags expected by chance alone among ``n_tests`` tests at the configured level."""
    return (1.0 - config.CONFIDENCE_LEVEL) * n_tests


def _published_baseline(published: pd.DataFrame | None, spec: str, year: int) -> tuple[float, float] | None:
    """(percent, n) of a published national figure: ``spec`` = 'question=cat[,cat…]' (shares added),
    total breakdown, round ``year``; n is the round's valid responses."""
    if published is None or published.empty or not spec:
        return None
    q, _, cats = spec.partition("=")
    cats = [c.strip() for c in cats.split(",") if c.strip()]
    rows = published[
        (published.year == year)
        & (published.question == q.strip())
        & (published.breakdown == "total")
        & published.category.isin(cats)
    ]
    if len(rows) != len(cats):
        return None
    n = pd.to_numeric(rows["n"], errors="coerce").dropna()
    if n.empty:
        return None
    return float(rows["value_pct"].astype(float).sum()), float(n.iloc[0])


PROGRESS_COLUMNS = [
    "pillar",
    "pillar_label",
    "indicator_id",
    "name",
    "polarity",
    "unit",
    "source",
    "baseline_year",
    "baseline_value",
    "baseline_n_effective",
    "baseline_from",
    "latest_year",
    "latest_value",
    "latest_n_effective",
    "difference",
    "diff_lower",
    "diff_upper",
    "p_value",
    "method",
    "significant",
    "p_holm",
    "significant_holm",
    "words",
    "words_holm",
    "target",
]


def progress_table(
    indicators: pd.DataFrame,
    catalogue: dict[str, Indicator],
    year: int,
    published: pd.DataFrame | None = None,
    national_deff: float | None = None,
) -> pd.DataFrame:
    """National progress from the baseline to ``year``, one row per catalogue indicator with a
    national value in ``year`` (see module doc). ``published``: the published national series
    (``published.published_national()``); ``national_deff``: the design effect applied to a
    published baseline's n (default: the configured national one)."""
    nat = indicators[(indicators.area_code == NATIONAL) & (indicators.breakdown == "total")]
    years = sorted(int(y) for y in nat.year.unique() if int(y) <= year)
    deff = config.design_effect("national") if national_deff is None else national_deff
    alpha = 1.0 - config.CONFIDENCE_LEVEL
    rows = []
    for ind_id, ind in catalogue.items():
        latest = nat[(nat.indicator_id == ind_id) & (nat.year == year)]
        if latest.empty or pd.isna(latest.iloc[0]["value"]):
            continue
        latest = latest.iloc[0]
        want = int(ind.baseline or (years[0] if years else year))
        base_row = nat[(nat.indicator_id == ind_id) & (nat.year == want)]
        b_from, b_val, b_n = "warehouse", float("nan"), float("nan")
        if len(base_row) and not pd.isna(base_row.iloc[0]["value"]):
            b_val, b_n = float(base_row.iloc[0]["value"]), float(base_row.iloc[0]["n_effective"])
        else:
            pub = _published_baseline(published, ind.baseline_published, want)
            if pub is not None:
                b_val, b_n, b_from = pub[0], pub[1] / deff, "published"
            else:  # the first round the warehouse holds for this indicator
                have = nat[(nat.indicator_id == ind_id) & nat.value.notna()].sort_values("year")
                want = int(have.iloc[0]["year"])
                b_val, b_n = float(have.iloc[0]["value"]), float(have.iloc[0]["n_effective"])
        row = {
            "pillar": ind.pillar,
            "pillar_label": PILLARS[ind.pillar],
            "indicator_id": ind_id,
            "name": ind.short_name,
            "polarity": ind.polarity,
            "unit": ind.unit,
            "source": ind.source,
            "baseline_year": want,
            "baseline_value": b_val,
            "baseline_n_effective": b_n,
            "baseline_from": b_from,
            "latest_year": year,
            "latest_value": float(latest["value"]),
            "latest_n_effective": float(latest["n_effective"]) if not pd.isna(latest["n_effective"]) else float("nan"),
            "target": ind.target,
        }
        row["difference"] = row["latest_value"] - b_val
        if ind.source == "survey" and want != year:
            res = stats.difference_test(row["latest_value"] / 100, row["latest_n_effective"], b_val / 100, b_n)
            p, method = difference_p_value(row["latest_value"] / 100, row["latest_n_effective"], b_val / 100, b_n)
            row.update(
                diff_lower=res["lower"] * 100,
                diff_upper=res["upper"] * 100,
                p_value=p,
                method=method,
                significant=bool(res["significant"]),
            )
        else:
            row.update(
                diff_lower=float("nan"),
                diff_upper=float("nan"),
                p_value=float("nan"),
                method="none" if ind.source == "survey" else "census",
                significant=False,
            )
        rows.append(row)
    out = pd.DataFrame(
        rows, columns=[c for c in PROGRESS_COLUMNS if c not in ("p_holm", "significant_holm", "words", "words_holm")]
    )
    if out.empty:
        return pd.DataFrame(columns=PROGRESS_COLUMNS)
    out["p_holm"] = np.nan
    for _, idx in out.groupby("pillar").groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_value"].to_numpy(dtype=float))
    out["significant_holm"] = out["p_holm"] < alpha

    def words(r, sig_col: str) -> str:
        if r["source"] != "survey":
            if r["baseline_year"] == r["latest_year"] or r["difference"] == 0:
                return "変化なし" if r["baseline_year"] != r["latest_year"] else "比較なし"
            return change_words("increase" if r["difference"] > 0 else "decrease", r["polarity"])
        if r["method"] == "none":
            return "比較なし"
        if not r[sig_col]:
            return "変化なし"
        return change_words("increase" if r["difference"] > 0 else "decrease", r["polarity"])

    out["words"] = [words(r, "significant") for _, r in out.iterrows()]
    out["words_holm"] = [words(r, "significant_holm") for _, r in out.iterrows()]
    return out.sort_values(["pillar"], kind="stable").reset_index(drop=True)[PROGRESS_COLUMNS]


# --- 要点 (main points) ---------------------------------------------------------------------------


@dataclass
class KeyPoint:
    """One sentence of the 要点 and what it was made from: ``rows`` are (year, area_code,
    indicator_id, breakdown) keys of the indicators table; ``facts`` the numbers and labels the
    sentence states (a test checks each against the table)."""

    text: str
    kind: str
    rows: list[tuple] = field(default_factory=list)
    facts: dict = field(default_factory=dict)


def _row(ind: pd.DataFrame, year: int, area: str, indicator_id: str, breakdown: str = "total"):
    r = ind[
        (ind.year == year) & (ind.area_code == area) & (ind.indicator_id == indicator_id) & (ind.breakdown == breakdown)
    ]
    return None if r.empty else r.iloc[0]


def _shown(r) -> bool:
    return r is not None and not bool(r["suppressed"]) and not pd.isna(r["value"])


def _lead(r) -> tuple[str, float, float, float] | None:
    """(method words, value, lower, upper) of a row's leading estimate when it is pooled or
    model-based (issue #24; the indicators table's estimate_method / lead_* columns), else None."""
    from pipelines.domain.conventions import estimate_method_label

    if r is None or r.get("estimate_method") not in ("pooled", "model"):
        return None
    v, lo, hi = (r.get(c) for c in ("lead_value", "lead_lower_ci95", "lead_upper_ci95"))
    if any(x is None or pd.isna(x) for x in (v, lo, hi)):
        return None
    return estimate_method_label(r["estimate_method"], r.get("lead_years")), float(v), float(lo), float(hi)


def _named(label: str, names: list[str]) -> str:
    """'label：a、b。' for the indicators a sentence names; '' when there are none."""
    return f"{label}：" + "、".join(names) + "。" if names else ""


def key_points(
    indicators: pd.DataFrame,
    catalogue: dict[str, Indicator],
    year: int,
    area_code: str,
    area_name: str,
    progress: pd.DataFrame | None = None,
) -> list[KeyPoint]:
    """The main points of one report (see module doc): 3-5 sentences from the same rows as its
    tables. ``progress``: the national progress table (national report)."""
    survey = [
        i for i, c in catalogue.items() if c.source == "survey" and _row(indicators, year, area_code, i) is not None
    ]
    headline = [i for i in survey if catalogue[i].headline] or survey[:1]
    points: list[KeyPoint] = []
    rows = [(i, _row(indicators, year, area_code, i)) for i in survey]  # the area's rows, looked up once
    if not headline:
        return points
    first = headline[0]
    r = _row(indicators, year, area_code, first)
    name = catalogue[first].short_name
    key = (year, area_code, first, "total")
    if area_code == NATIONAL:
        if _shown(r):
            points.append(
                KeyPoint(
                    f"{year}年の全国の{name}は {pct(r['value'])}%（{config.confidence_percent()}%信頼区間 {pct(r['lower_ci95'])}～{pct(r['upper_ci95'])}%）でした。",
                    "headline",
                    [key],
                    {"value": r["value"], "lower": r["lower_ci95"], "upper": r["upper_ci95"]},
                )
            )
        if progress is not None and len(progress):
            tested = progress[progress.method.isin(["newcombe", "fisher"])]
            counts = {w: int((tested.words_holm == w).sum()) for w in ("改善", "悪化", "変化なし")}
            by = sorted(set(tested.baseline_year))
            better = tested[tested.words_holm == "改善"].name.tolist()
            worse = tested[tested.words_holm == "悪化"].name.tolist()
            text = (
                f"基準年（{'・'.join(str(b) for b in by)}年）から{year}年までに、調査による{len(tested)}指標のうち"
                f"改善 {counts['改善']}、悪化 {counts['悪化']}、変化なし {counts['変化なし']}"
                "（基本方針ごとに Holm 法で多重性を調整）。"
            )
            text += _named("改善", better)
            text += _named("悪化", worse)
            points.append(
                KeyPoint(
                    text,
                    "progress",
                    [(year, NATIONAL, i, "total") for i in tested.indicator_id],
                    {"counts": counts, "better": better, "worse": worse},
                )
            )
        prefs = indicators[
            (indicators.year == year)
            & (indicators.area_code != NATIONAL)
            & (indicators.indicator_id == first)
            & (indicators.breakdown == "total")
        ]
        tested_p = prefs[prefs.comparison != "not_compared"]
        if len(tested_p):
            judged = ("better", "worse") if catalogue[first].polarity != "no_judgement" else ("lower", "higher")
            k = {j: int((tested_p.comparison == j).sum()) for j in judged}
            points.append(
                KeyPoint(
                    f"{name}が全国と有意に異なる都道府県は、{COMPARISON_WORDS[judged[0]]} {k[judged[0]]}、"
                    f"{COMPARISON_WORDS[judged[1]]} {k[judged[1]]}（{len(tested_p)}都道府県を比較。差がなくても偶然に"
                    f"約 {chance_flags(len(tested_p)):.1f} 件は差ありと判定され得ます）。",
                    "prefectures",
                    [(year, a, first, "total") for a in tested_p.area_code],
                    {"counts": k, "n_tests": len(tested_p)},
                )
            )
    else:
        lead = _lead(r)
        if lead is not None:
            # a pooled or model-based estimate leads (issue #24): it opens the sentence; the direct
            # estimate and its comparison follow (labels are about the direct estimate only)
            label, value, lo, hi = lead
            text = (
                f"{area_name}の{name}は {pct(value)}%（{label}、{config.confidence_percent()}%区間 {pct(lo)}～{pct(hi)}%）と推計されます"
                f"（全国 {pct(r['national_value'])}%）。"
            )
            if _shown(r):
                cmp_word = COMPARISON_WORDS.get(str(r["comparison"]), "比較なし")
                text += (
                    f"調査の回答から直接求めた値は {pct(r['value'])}%（{config.confidence_percent()}%信頼区間 {pct(r['lower_ci95'])}～"
                    f"{pct(r['upper_ci95'])}%）で、全国と比べて「{cmp_word}」です。"
                )
            else:
                text += "直接求めた値は集計対象が少ないため表示していません。"
            facts = {
                "lead_value": value,
                "estimate_method": r["estimate_method"],
                "comparison": r["comparison"],
                "national_value": r["national_value"],
            }
            if _shown(r):
                facts["value"] = r["value"]
            points.append(KeyPoint(text, "headline", [key, (year, NATIONAL, first, "total")], facts))
        elif _shown(r):
            cmp_word = COMPARISON_WORDS.get(str(r["comparison"]), "比較なし")
            text = (
                f"{area_name}の{name}は {pct(r['value'])}%（{config.confidence_percent()}%信頼区間 {pct(r['lower_ci95'])}～"
                f"{pct(r['upper_ci95'])}%）で、全国（{pct(r['national_value'])}%）と比べて「{cmp_word}」です。"
            )
            points.append(
                KeyPoint(
                    text,
                    "headline",
                    [key, (year, NATIONAL, first, "total")],
                    {"value": r["value"], "comparison": r["comparison"], "national_value": r["national_value"]},
                )
            )
        else:
            points.append(
                KeyPoint(
                    f"{area_name}の{name}は、集計対象が少ないため表示していません。",
                    "headline",
                    [key],
                    {"suppressed": True},
                )
            )
        tested = [(i, x) for i, x in rows if x is not None and x["comparison"] != "not_compared"]
        better = [catalogue[i].short_name for i, x in tested if x["comparison"] == "better"]
        worse = [catalogue[i].short_name for i, x in tested if x["comparison"] == "worse"]
        text = (
            f"全国との比較（{len(tested)}指標）で有意に良い指標は {len(better)}、悪い指標は {len(worse)} でした"
            f"（差がなくても偶然に約 {chance_flags(len(tested)):.1f} 件は差ありと判定され得ます）。"
        )
        text += _named("悪い指標", worse)
        text += _named("良い指標", better)
        points.append(
            KeyPoint(
                text,
                "comparison",
                [(year, area_code, i, "total") for i, _ in tested],
                {"better": better, "worse": worse, "n_tests": len(tested)},
            )
        )
    # Change since the previous round (the area's own rows).
    prev_years = sorted(int(y) for y in indicators.year.unique() if int(y) < year)
    if prev_years:
        changed = [
            (i, x)
            for i, x in rows
            if x is not None and x["change_vs_previous"] in ("increase", "decrease", "no_change")
        ]
        broke = [i for i, x in rows if x is not None and bool(x.get("source_changed", False))]
        words = {i: change_words(str(x["change_vs_previous"]), catalogue[i].polarity) for i, x in changed}
        up = [catalogue[i].short_name for i, w in words.items() if w == "改善"]
        down = [catalogue[i].short_name for i, w in words.items() if w == "悪化"]
        other = [catalogue[i].short_name for i, w in words.items() if w in ("増加", "減少")]
        same = [i for i, w in words.items() if w == "変化なし"]
        text = (
            f"前回（{prev_years[-1]}年）から有意に改善した指標は {len(up)}、悪化した指標は {len(down)}、"
            f"有意な変化がない指標は {len(same)} でした。"
        )
        text += _named("改善", up)
        text += _named("悪化", down)
        text += _named("増減（評価の方向なし）", other)
        if broke:
            text += f"出典が前回と異なる {len(broke)} 指標は比較していません。"
        points.append(
            KeyPoint(
                text,
                "change",
                [(year, area_code, i, "total") for i, _ in changed],
                {"improved": up, "worsened": down, "no_change": len(same), "source_break": len(broke)},
            )
        )
    # Small samples: say so at the top.
    if area_code != NATIONAL and r is not None:
        n = r["n_unweighted"]
        if pd.isna(n) or n < config.REFERENCE_BASE:
            area_rows = indicators[(indicators.year == year) & (indicators.area_code == area_code)]
            led = "estimate_method" in area_rows.columns and area_rows.estimate_method.isin(["pooled", "model"]).any()
            tail = (
                "精度の足りない値（内訳の多くも）は、モデル推計またはプール推計で示します（表の「推計方法」）。"
                if led
                else "内訳の多くは非表示になります。"
            )
            points.append(
                KeyPoint(
                    f"{area_name}の集計対象は{'' if pd.isna(n) else f' {int(n)} 人で'} {config.REFERENCE_BASE} 人未満のため、"
                    f"調査の回答から直接求めた値はすべて参考値（※）です。{tail}",
                    "small_sample",
                    [key],
                    {"n": None if pd.isna(n) else int(n)},
                )
            )
    return points[:5]
