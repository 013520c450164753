"""The value formatters: the texts under which the reports, the site and the disclosure check show
a figure (one place, so that the check compares a page with the text its report would show).

* Report cells (``fmt_value``, ``fmt_ci``, ``fmt_base``, ``fmt_national``, ``fmt_comparison``,
  ``fmt_change``, the leading estimate's ``fmt_lead_*`` and ``fmt_method*``) take an indicators row
  (a dict or Series) and show 'x' when it is suppressed, '―' when missing, '※' for a reference
  value; the unit is in the table's header, so a number carries no unit. The comparison and the
  change are Markdown (``MdText``; other text goes through ``md_escape``).
* Site cells (``fmt_site_value``) take a bare value and carry its unit ('12.3%', '1,200件'), as the
  map and the index table show them without a unit column; intervals are ``fmt_interval`` in both.
* ``fmt_size``: a file size on the downloads page.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from pipelines.domain import config, conventions
from pipelines.domain.conventions import (
    CV_DECIMALS,
    RATE_DECIMALS,
    published_deff,
    published_n,
    published_p,
    published_share,
)

SUPPRESSED = conventions.SUPPRESSED_MARK
MISSING = conventions.MISSING_MARK
REFERENCE_MARK = conventions.REFERENCE_MARK


UNIT_SUFFIX = {"percent": "%", "per_10k": "（1万人当たり）", "flag": "", "count": "件", "yen": "円"}


# --- Report cells (an indicators row) --------------------------------------------------------------


def is_missing(v) -> bool:
    return (
        v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or (not isinstance(v, str) and pd.isna(v))
    )


def is_suppressed(row) -> bool:
    return row is not None and bool(row.get("suppressed", False))


def is_reference(row) -> bool:
    n = None if row is None else row.get("n_unweighted")
    return (
        row is not None
        and not is_suppressed(row)
        and not is_missing(n)
        and config.MIN_BASE <= int(n) < config.REFERENCE_BASE
    )


def fmt_num(v, unit: str = "percent", digits: int = 1) -> str:
    if is_missing(v):
        return MISSING
    if unit == "flag":
        return "あり" if float(v) >= 0.5 else "なし"
    return f"{float(v):,.{digits}f}"


def fmt_value(row, unit: str = "percent") -> str:
    """The value of an indicators row as shown: 'x' if suppressed, '―' if missing, '12.3※' if 参考値."""
    if row is None:
        return MISSING
    if is_suppressed(row):
        return SUPPRESSED
    text = fmt_num(row.get("value"), unit)
    return text + REFERENCE_MARK if is_reference(row) and text != MISSING else text


def fmt_ci(row) -> str:
    if row is None or is_suppressed(row):
        return SUPPRESSED if row is not None else MISSING
    return fmt_interval(row.get("lower_ci95"), row.get("upper_ci95")) or MISSING


def fmt_base(row) -> str:
    if row is None or is_missing(row.get("n_unweighted")):
        return MISSING
    n = int(row["n_unweighted"])
    return f"{config.MIN_BASE}人未満" if n < config.MIN_BASE else f"{n:,}"


def fmt_national(row, unit: str = "percent") -> str:
    if row is None:
        return MISSING
    v = row.get("national_value")
    if unit == "flag":
        return MISSING if is_missing(v) else f"{float(v):.0f}%が設置"
    return fmt_num(v, unit)


def fmt_comparison(row) -> str:
    """Comparison with national as symbol + word in a span with a class (coloured by report.css in
    HTML and report.lua in Typst; pipelines.domain.conventions)."""
    if row is None or is_suppressed(row):
        return MISSING
    comp = str(row.get("comparison") or "not_compared")
    if comp == "not_compared":
        return MISSING
    style = conventions.comparison(comp)
    return MdText(f"[{md_escape(style.symbol + ' ' + style.label)}]{{.cmp-{_css_class(style.key)}}}")


def _css_class(value: str) -> str:
    """A class name from a data value: letters, digits, _ and - only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(value))


def fmt_change(row, polarity: str | None = None) -> str:
    """The change since the previous round as shown: symbol and word; with the indicator's
    ``polarity`` the word says 改善/悪化 where it has a direction of good (conventions.change_words).
    A row whose previous round came from another source is not tested: 出典変更（比較なし）."""
    if row is None or is_suppressed(row):
        return MISSING
    ch = str(row.get("change_vs_previous") or "not_compared")
    if ch == "not_compared":
        return md_escape("出典変更（比較なし）") if bool(row.get("source_changed", False)) is True else MISSING
    style = conventions.change(ch)
    word = conventions.change_words(ch, polarity) if polarity else style.label
    if word == "変化なし":
        word = style.label  # 有意差なし
    text = md_escape(f"{style.symbol} {word}")
    return MdText(f"[{text}]{{.chg-{style.key}}}" if ch in ("increase", "decrease") else text)


class MdText(str):
    """Markdown built by our own helpers (e.g. the coloured comparison spans): md_table keeps it as
    is. Every other cell is data and is escaped with md_escape."""


_MD_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def md_escape(text: object) -> str:
    """Text from data (names, notes, survey ids, file names) as Markdown that shows it literally.

    pandoc's Markdown lets every ASCII punctuation character be backslash-escaped, so escaping all
    of them neutralises HTML tags, raw attributes (`x`{=html}), links and images, citations (@x),
    math ($x$), emphasis, headings, list markers and fenced divs; the Typst and HTML writers then
    escape the literal text for their own syntax (# [ ] etc.). Line breaks and control characters
    become a space (a value cannot start a new block or table row); | becomes ｜ (pipe tables)."""
    s = _MD_CONTROL.sub(" ", str(text)).replace("|", "｜")
    return _MD_PUNCT.sub(r"\\\1", s)


def shown_value(row) -> float | None:
    """The value a chart may plot: None when suppressed or missing."""
    if row is None or is_suppressed(row) or is_missing(row.get("value")):
        return None
    return float(row["value"])


# --- The leading estimate (issue #24: direct, pooled or model-based; pipelines/domain/small_area.py) ----


def lead_method(row) -> str | None:
    """'direct', 'pooled' or 'model': which estimate a row shows (the indicators table's
    ``estimate_method``; a table without it, or a programme row, shows its direct value); None
    when the row has nothing to show."""
    if row is None:
        return None
    m = row.get("estimate_method")
    if isinstance(m, str) and m:
        return m
    return None if shown_value(row) is None else "direct"


def lead(row) -> tuple[float | None, float | None, float | None]:
    """(value, lower, upper) of the leading estimate of a row (percent); Nones when there is none."""
    m = lead_method(row)
    if m is None:
        return None, None, None
    if m == "direct" or is_missing(row.get("lead_value")):
        v = shown_value(row)
        if v is None:
            return None, None, None
        lo, hi = row.get("lower_ci95"), row.get("upper_ci95")
        return v, None if is_missing(lo) else float(lo), None if is_missing(hi) else float(hi)
    lo, hi = row.get("lead_lower_ci95"), row.get("lead_upper_ci95")
    return (float(row["lead_value"]), None if is_missing(lo) else float(lo), None if is_missing(hi) else float(hi))


def fmt_method(row) -> str:
    """The 推計方法 cell: 直接推計 / 3年プール（2022–2024年平均） / モデル推計 (― when none)."""
    m = lead_method(row)
    return conventions.estimate_method_label(m, row.get("lead_years") if row is not None else None) or MISSING


def fmt_method_direct(row, unit: str = "percent") -> str:
    """The 推計方法 cell with, where another estimate leads, the direct value beside it:
    'モデル推計（直接推計 0.0※）'. Tables keep the direct base, comparison and change beside it."""
    method = fmt_method(row)
    if lead_method(row) not in (None, "direct"):
        method = f"{method}（直接推計 {fmt_value(row, unit)}）"
    return method


def fmt_lead_value(row, unit: str = "percent") -> str:
    """The leading estimate as shown: the direct value as ``fmt_value`` shows it (x, ※), a pooled or
    model-based value as a number."""
    if lead_method(row) in (None, "direct"):
        return fmt_value(row, unit)
    return fmt_num(lead(row)[0], unit)


def fmt_lead_ci(row) -> str:
    if lead_method(row) in (None, "direct"):
        return fmt_ci(row)
    _, lo, hi = lead(row)
    return fmt_interval(lo, hi) or MISSING


def fmt_lead_base(row) -> str:
    """Base of the leading estimate: the direct base; 非公表 for a pooled one (not published); ― for
    a model-based one (an estimate, not a count)."""
    m = lead_method(row)
    if m == "pooled":
        return "非公表"
    if m == "model":
        return MISSING
    return fmt_base(row)


def fmt_lead_marked(row, unit: str = "percent") -> str:
    """The leading estimate with the mark of its method where a table has no method column:
    '4.8◇' model-based, '12.0△' pooled, the direct value as ``fmt_value`` shows it."""
    m = lead_method(row)
    text = fmt_lead_value(row, unit)
    return text + conventions.ESTIMATE_MARKS[m] if m in conventions.ESTIMATE_MARKS and text != MISSING else text


# --- Site cells (a bare value) and intervals --------------------------------------------------------


def as_number(v: Any) -> float | None:
    """``v`` as a float; None when it is missing, NaN or not a number."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def fmt_site_value(v: Any, unit: str = "percent") -> str:
    """A value with its unit as the site's map and index table show it: '12.3%', '1,200件', 'あり';
    '―' when missing (the reports' ``fmt_num`` shows the number alone, the unit being in the header)."""
    f = as_number(v)
    if f is None:
        return conventions.MISSING_MARK
    if unit == "flag":
        return "あり" if f >= 0.5 else "なし"
    if unit in ("count", "yen"):
        return f"{f:,.0f}{UNIT_SUFFIX[unit]}"
    if unit == "percent":
        return f"{f:.1f}%"
    return f"{f:.1f}"


def fmt_interval(lo: Any, hi: Any) -> str:
    """A 95% interval as every page shows it: '12.3～15.6'; '' when either end is missing."""
    a, b = as_number(lo), as_number(hi)
    if a is None or b is None:
        return ""
    return f"{a:.1f}～{b:.1f}"


def fmt_size(n: int) -> str:
    """A file size as the downloads page shows it: 812 B, 45.3 KB, 2.1 MB (1 KB = 1,024 bytes)."""
    if n < 1024:
        return f"{n:,} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024**2:.1f} MB"


# --- Published precision (the downloads, chart data files and pages show values at it) --------------

SHARE_COLUMNS = (
    "value",
    "lower_ci95",
    "upper_ci95",
    "national_value",
    "reference_value",
    "difference",
    "difference_lower_ci95",
    "difference_upper_ci95",
    "previous_value",
    "change_difference",
    "change_lower_ci95",
    "change_upper_ci95",
    "lead_value",
    "lead_lower_ci95",
    "lead_upper_ci95",
)
# Columns in the indicator's own unit (a programme rate per 10,000 is rounded as a rate).
VALUE_UNIT_COLUMNS = (
    "value",
    "lower_ci95",
    "upper_ci95",
    "national_value",
    "lead_value",
    "lead_lower_ci95",
    "lead_upper_ci95",
)
N_COLUMNS = ("n_effective", "reference_n_effective", "previous_n_effective")
P_COLUMNS = ("p_value", "change_p_value")
# Whole numbers in the warehouse (no rounding): year, previous_year, n_unweighted.


def round_published(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of an indicators table (``schema.INDICATOR_COLUMNS``, any subset; a ``unit`` column or
    the catalogue gives each row's unit) at the published precision: every numeric column as the
    reports, the site and the quality page show it (``tests/test_downloads_excel.py`` checks each
    numeric column of the downloads)."""
    out = df.copy()
    if "unit" in out.columns:
        unit = out["unit"].astype(str).to_numpy()
    else:
        from pipelines.domain.catalogue import load_catalogue

        units = {i.id: i.unit for i in load_catalogue()}
        unit = (
            out["indicator_id"].map(units).astype(str).to_numpy()
            if "indicator_id" in out.columns
            else np.full(len(out), "percent")
        )
    rate = unit == "per_10k"
    for c in SHARE_COLUMNS:
        if c in out.columns:
            v = pd.to_numeric(out[c], errors="coerce").to_numpy(dtype=float)
            out[c] = np.where(rate & (c in VALUE_UNIT_COLUMNS), np.round(v, RATE_DECIMALS) + 0.0, published_share(v))
    for c in N_COLUMNS:
        if c in out.columns:
            out[c] = published_n(pd.to_numeric(out[c], errors="coerce").to_numpy(dtype=float))
    for c in P_COLUMNS:
        if c in out.columns:
            out[c] = published_p(pd.to_numeric(out[c], errors="coerce").to_numpy(dtype=float))
    if "design_effect" in out.columns:
        out["design_effect"] = published_deff(
            pd.to_numeric(out["design_effect"], errors="coerce").to_numpy(dtype=float)
        )
    if "lead_cv" in out.columns:
        out["lead_cv"] = (
            np.round(pd.to_numeric(out["lead_cv"], errors="coerce").to_numpy(dtype=float), CV_DECIMALS) + 0.0
        )
    return out


# --- Plain JSON values -------------------------------------------------------------------------------


def plain(obj: Any) -> Any:
    """Numpy/pandas scalars -> plain Python, recursively (for JSON)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [plain(v) for v in obj]
    if obj is None or type(obj) in (bool, int, float, str):  # exact types: np.float64 is a float
        if isinstance(obj, float) and obj != obj:
            return None
        return obj
    if hasattr(obj, "item"):
        try:
            return plain(obj.item())
        except (ValueError, TypeError):
            pass
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


def json_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [plain(r) for r in df.to_dict("records")]
