"""Downloads for prefecture staff and analysts: CSV (UTF-8 with BOM, so Excel shows the Japanese)
and XLSX, laid out for Excel users (issue #23 item 6).

* Every data table has two header rows: the Japanese headers, then the column codes (the
  indicators table's names, on which scripts rely; read with ``pd.read_csv(path, header=1)``). A
  column of English codes (comparison, change, source, methods, ...) has a Japanese label column
  before it. Built from synthetic data, every row carries ``synthetic`` = TRUE (first column).
* Workbooks: the data sheet (header rows styled, frozen, an autofilter on the code row, column
  widths from the values), a notes sheet (the synthetic-data statement first; methods, sources,
  catalogue) and the data dictionary sheet.
* The data dictionary (``COLUMNS``: Japanese header, code, meaning, unit/format of every column) is
  the one source of the headers, the dictionary sheets, ``downloads/data-dictionary.csv`` and the
  table on the downloads page.

Text cells that a spreadsheet would read as a formula (starting with = + - @, tab or CR) are
neutralised by a leading apostrophe.

Workbooks (these and the per-prefecture ones of pipelines.site) are written by ``write_workbook``: the
worksheet XML openpyxl writes for the same cells, ~15x faster, and the same bytes for the same cells
(no timestamp inside, fixed zip member dates).

Published precision (``round_published``; the warehouse keeps full precision), as the reports,
the site and the quality page show the figures: shares, their intervals, national / reference /
previous values and differences to 0.1 percentage point; rates per 10,000 to 0.1; effective sizes
to 0.1; design effects to 0.01; p-values to 3 significant digits; coefficients of variation to
0.001. The tests of the comparison and the change take the shares and effective sizes at this
precision (``published_share`` / ``published_n``, called by ``indicators``), so every label can be
recomputed from its download row with ``pipelines.stats.difference_test``.
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb
import numpy as np
import pandas as pd

from . import config, conventions, keys, schema
from . import warehouse as warehouse_db
from .errors import UsageError, check_pref_code, check_year

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Published precision (the warehouse keeps full precision): conventions, where the tests read it too.
from .conventions import (  # noqa: E402,F401
    CV_DECIMALS,
    DEFF_DECIMALS,
    N_DECIMALS,
    P_DIGITS,
    RATE_DECIMALS,
    SHARE_DECIMALS,
    published_deff,
    published_n,
    published_p,
    published_share,
)

SHARE_COLUMNS = ("value", "lower_ci95", "upper_ci95", "national_value", "reference_value", "difference",
                 "difference_lower_ci95", "difference_upper_ci95", "previous_value", "change_difference",
                 "change_lower_ci95", "change_upper_ci95", "lead_value", "lead_lower_ci95", "lead_upper_ci95")
# Columns in the indicator's own unit (a programme rate per 10,000 is rounded as a rate).
VALUE_UNIT_COLUMNS = ("value", "lower_ci95", "upper_ci95", "national_value", "lead_value", "lead_lower_ci95",
                      "lead_upper_ci95")
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
        from .catalogue import load_catalogue

        units = {i.id: i.unit for i in load_catalogue()}
        unit = out["indicator_id"].map(units).astype(str).to_numpy() if "indicator_id" in out.columns \
            else np.full(len(out), "percent")
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
        out["design_effect"] = published_deff(pd.to_numeric(out["design_effect"], errors="coerce").to_numpy(dtype=float))
    if "lead_cv" in out.columns:
        out["lead_cv"] = np.round(pd.to_numeric(out["lead_cv"], errors="coerce").to_numpy(dtype=float), CV_DECIMALS) + 0.0
    return out


# --- The data dictionary: every column of the downloads, in file order -----------------------------
# One source for the Japanese headers (first header row), the codes (second header row; the
# indicators table's names, on which scripts rely), the dictionary sheet of every workbook,
# downloads/data-dictionary.csv and the table on the downloads page.

@dataclass(frozen=True)
class Column:
    code: str      # the column's name (second header row); the data contract's name for its columns
    ja: str        # the Japanese header (first header row)
    meaning: str   # what it holds (Japanese)
    format: str    # unit, format, precision (Japanese)
    en: str        # what it holds (English)


_SHARE_FMT = (f"単位列のとおり（小数第{SHARE_DECIMALS}位）" if SHARE_DECIMALS == RATE_DECIMALS else
              f"単位列のとおり（%・ポイントは小数第{SHARE_DECIMALS}位、1万人当たりの率は小数第{RATE_DECIMALS}位）")
_DIFF_FMT = f"ポイント（小数第{SHARE_DECIMALS}位）"
_N_FMT = f"人（小数第{N_DECIMALS}位）"
_P_FMT = f"0～1（有効数字{P_DIGITS}桁）"
_BOOL_FMT = "TRUE / FALSE（CSV では True / False）"

COLUMNS: tuple[Column, ...] = (
    Column("synthetic", "合成データ", "TRUE のとき、この行の数値は合成（架空）データから計算した見本で、実際の調査結果ではない。"
           "合成データで作成したファイルにだけある列（全行 TRUE）。", _BOOL_FMT,
           "TRUE: computed from synthetic (made-up) sample data, not survey results. Present only in files built"
           " from synthetic data (TRUE on every row)."),
    Column("year", "調査年", "調査の年（事業データは年度）。", "整数（西暦）", "Survey year (fiscal year for programme data)."),
    Column("area_code", "地域コード", "都道府県の JIS コード。00 は全国。", "2桁の文字（先頭の0を含む。01～47、00）",
           "JIS prefecture code, 00 = national (text: keep the leading zero)."),
    Column("area_name", "地域名", "都道府県名（全国の行は「全国」）。", "文字", "Prefecture name (全国 = national)."),
    Column("indicator_name_ja", "指標名", "指標の名称。", "文字", "Indicator name (Japanese)."),
    Column("indicator_id", "指標ID", "指標の識別子（指標カタログ indicators.yml の id）。", "英字コード",
           "Indicator id (the catalogue's id)."),
    Column("indicator_name_en", "指標名（英語）", "指標の英語名。", "文字", "Indicator name (English)."),
    Column("unit_ja", "単位", "値の単位。", "文字（%、16歳以上人口1万人当たり、1=あり 0=なし）", "Unit of the value (Japanese)."),
    Column("unit", "単位コード", "値の単位のコード: percent（%）、per_10k（16歳以上人口1万人当たり）、flag（都道府県の行は1=あり・0=なし、"
           "全国の行は該当する都道府県の割合 %）。", "英字コード",
           "Unit code: percent, per_10k (per 10,000 people aged 16+), flag (1/0; national row: share of prefectures, %)."),
    Column("breakdown_ja", "内訳", "集計の区分（全体、男性・女性、年齢階級など）。", "文字", "Breakdown (Japanese)."),
    Column("breakdown", "内訳コード", "集計の区分のコード: total、sex=1（男性）・sex=2（女性）、age=…（年齢階級）、"
           "uk_age=…（英国比較用の年齢区分）、household_single=1（一人暮らし）・0。", "英字コード",
           "Breakdown code: total, sex=1/2, age=…, uk_age=…, household_single=1/0."),
    Column("value", "値", "指標の値（直接推計）。非表示の行は空欄。", _SHARE_FMT,
           "The indicator's value (direct estimate); empty on a suppressed row."),
    Column("lower_ci95", "95%信頼区間 下限", "値の95%信頼区間の下限（有効標本サイズによる Wilson スコア区間）。", _SHARE_FMT,
           "Lower bound of the 95% Wilson interval (effective size)."),
    Column("upper_ci95", "95%信頼区間 上限", "値の95%信頼区間の上限。", _SHARE_FMT, "Upper bound of the 95% interval."),
    Column("n_unweighted", "回答者数", f"集計対象の回答者数（ウエイトなし）。非表示の行は空欄（{config.MIN_BASE}人未満または非公表。注記を参照）。",
           "人（整数）", "Unweighted base; empty on a suppressed row."),
    Column("n_effective", "有効標本サイズ", "Kish の有効標本サイズ (Σw)²/Σw² を設計効果で割った値。区間と検定はこれを用いる。",
           _N_FMT, "Kish effective sample size divided by the design effect; used by every interval and test."),
    Column("national_value", "全国値", "同じ年・指標・内訳の全国の値。", _SHARE_FMT, "National value, same year, indicator and breakdown."),
    Column("comparison_ja", "全国との比較", "全国との比較の判定（良い・悪い・同程度・高い・低い・比較なし）。", "文字",
           "Comparison with national (Japanese)."),
    Column("comparison", "全国との比較コード", "判定のコード: better、worse、similar、higher、lower、not_compared。", "英字コード",
           "Comparison code: better, worse, similar, higher, lower, not_compared."),
    Column("change_vs_previous_ja", "前回調査からの変化", "前回調査からの変化の判定（増加・減少・有意差なし・比較なし）。", "文字",
           "Change since the previous round (Japanese)."),
    Column("change_vs_previous", "前回調査からの変化コード", "変化のコード: increase、decrease、no_change、not_compared。", "英字コード",
           "Change code: increase, decrease, no_change, not_compared."),
    Column("suppressed", "非表示", "TRUE のとき、回答者数が少ないなどの理由で値を公表しない行（一次・二次秘匿）。", _BOOL_FMT,
           "TRUE: the value is not published (small base, or hidden to protect another cell)."),
    Column("note", "注記", "出典、回答者数、参考値・非表示の理由など。", "文字", "Source, base, reference-value and suppression notes."),
    Column("source_ja", "出典の種類", "値の出典（全国調査、全国調査の当該県回答者、県独自調査、事業データ）。", "文字",
           "Source of the value (Japanese)."),
    Column("source", "出典の種類コード", "出典のコード: national、national_subsample、own_survey、programme、none。", "英字コード",
           "Source code: national, national_subsample, own_survey, programme, none."),
    Column("previous_year", "前回調査年", "前回比で比べた調査年（なければ空欄）。", "整数（西暦）", "The round the change compares with."),
    Column("source_changed", "前回と出典が異なる", "TRUE のとき、前回調査と出典が異なる（例: 全国調査の当該県回答者から県独自調査へ）ため前回比の検定をしない。",
           _BOOL_FMT, "TRUE: the previous round's source differs; the change is shown, not tested."),
    Column("comparison_method_ja", "全国との比較の方法", "全国との比較に用いた方法。", "文字", "Comparison method (Japanese)."),
    Column("comparison_method", "全国との比較の方法コード", "方法のコード: newcombe、fisher、newcombe_rest、fisher_rest（_rest は当該県を除く全国と比較）、none。",
           "英字コード", "Comparison method code: newcombe, fisher, newcombe_rest, fisher_rest (vs the rest of the nation), none."),
    Column("change_method_ja", "前回比の方法", "前回比に用いた方法。", "文字", "Change method (Japanese)."),
    Column("change_method", "前回比の方法コード", "方法のコード: newcombe、fisher、source_break（出典変更のため検定なし）、none。", "英字コード",
           "Change method code: newcombe, fisher, source_break, none."),
    Column("design_effect", "設計効果", "この行の調査の設計効果。有効標本サイズ = Kish の n_eff ÷ 設計効果。",
           f"比（小数第{DEFF_DECIMALS}位）", "Design effect of the row's survey (n_effective = Kish n_eff / deff)."),
    Column("reference_value", "比較の基準値", "全国との比較で検定した相手の値: 県独自調査の県は全国値、全国調査の当該県回答者による県は当該県を除く全国の値。"
           "判定のある行のみ。", _SHARE_FMT, "The value the area was tested against (national, or the rest of the nation); labelled rows only."),
    Column("reference_n_effective", "基準値の有効標本サイズ", "基準値の有効標本サイズ。", _N_FMT, "Effective size of the reference."),
    Column("difference", "基準値との差", "値 − 比較の基準値（検定した差）。", _DIFF_FMT, "Value minus reference, as tested (points)."),
    Column("difference_lower_ci95", "基準値との差の95%信頼区間 下限", "差の95%信頼区間（Newcombe のハイブリッド・スコア区間）の下限。",
           _DIFF_FMT, "Lower bound of the difference's 95% Newcombe interval."),
    Column("difference_upper_ci95", "基準値との差の95%信頼区間 上限", "差の95%信頼区間の上限。", _DIFF_FMT,
           "Upper bound of the difference's 95% interval."),
    Column("p_value", "全国との比較のp値", "Fisher の正確検定（両側）の p 値。Fisher の検定で判定した行のみ（方法コードが fisher・fisher_rest）。",
           _P_FMT, "Two-sided p of Fisher's exact test, only where it decided."),
    Column("previous_value", "前回値", "前回調査（前回調査年）の同じ地域・指標・内訳の値。", _SHARE_FMT, "The previous round's value."),
    Column("previous_n_effective", "前回の有効標本サイズ", "前回値の有効標本サイズ。", _N_FMT, "The previous round's effective size."),
    Column("change_difference", "前回との差", "値 − 前回値（検定した差）。", _DIFF_FMT, "Value minus previous value (points)."),
    Column("change_lower_ci95", "前回との差の95%信頼区間 下限", "前回との差の95% Newcombe 区間の下限。", _DIFF_FMT,
           "Lower bound of the change's 95% interval."),
    Column("change_upper_ci95", "前回との差の95%信頼区間 上限", "前回との差の95%区間の上限。", _DIFF_FMT,
           "Upper bound of the change's 95% interval."),
    Column("change_p_value", "前回比のp値", "前回比の Fisher の正確検定の p 値（前回比の方法コードが fisher の行のみ）。", _P_FMT,
           "Fisher's p of the change, only where Fisher decided."),
    Column("estimate_method_ja", "表示する推計の方法", "報告書・サイトが表示する推計の方法（直接推計・プール推計・モデル推計）。", "文字",
           "The estimate the reports and the site show (Japanese)."),
    Column("estimate_method", "表示する推計の方法コード", "方法のコード: direct、pooled、model。", "英字コード",
           "Leading estimate code: direct, pooled, model."),
    Column("lead_value", "表示する推計値", "報告書・サイトが表示する推計値（direct なら値と同じ）。非表示の行にもプール推計・モデル推計の値は載る。",
           _SHARE_FMT, "The value the reports show (= value when direct); pooled or model values also on suppressed rows."),
    Column("lead_lower_ci95", "表示する推計値の95%区間 下限", "表示する推計値の95%区間の下限。", _SHARE_FMT, "Its 95% interval, lower bound."),
    Column("lead_upper_ci95", "表示する推計値の95%区間 上限", "表示する推計値の95%区間の上限。", _SHARE_FMT, "Its 95% interval, upper bound."),
    Column("lead_cv", "表示する推計値の変動係数", "変動係数（標準誤差 ÷ 推計値）。", f"比（小数第{CV_DECIMALS}位）",
           "Coefficient of variation (standard error / estimate)."),
    Column("lead_years", "プール推計の期間", "プール推計で合わせた調査年（例: 2022-2024）。", "文字（西暦-西暦）", "Rounds pooled (e.g. 2022-2024)."),
)
COLUMN_BY_CODE = {c.code: c for c in COLUMNS}
HEADER_JA = {c.code: c.ja for c in COLUMNS}            # code -> Japanese header
# The dictionary's own columns (it is a table with the same two header rows).
DICTIONARY_COLUMNS = (("列名", "header_ja"), ("列コード", "code"), ("内容", "meaning"), ("単位・形式", "format"),
                      ("説明（英語）", "meaning_en"))
DICTIONARY_FILE = "data-dictionary.csv"

# What the downloads (and the per-prefecture workbooks) read: the indicators columns the dictionary
# lists (``download_table`` keeps those only) and the files the notes sheet lists.
DOWNLOAD_ROWS = keys.Reads("indicators", tuple(c.code for c in COLUMNS if c.code in schema.INDICATOR_COLUMNS),
                           rows="the rounds in the file")
NOTED_FILES = keys.Reads("files", ("survey_year", "file_name", "kind", "survey_id", "synthetic"),
                         rows="the programme files and the survey files up to the file's last round")
DOWNLOADS = keys.Stage("downloads", reads=(DOWNLOAD_ROWS, NOTED_FILES),
                       writes=("downloads/indicators.csv", "downloads/indicators.xlsx", "downloads/indicators-{year}.csv",
                               "downloads/indicators-{year}.xlsx", f"downloads/{DICTIONARY_FILE}"))

DICTIONARY_SHEET = "列の説明 (data dictionary)"
DATA_SHEET = "指標 (indicators)"
NOTES_SHEET = "注記 (notes)"
# How to read the files (downloads page, README, notes sheet).
READING_JA = ("1行目は日本語の列名、2行目は列コード（スクリプト用の列名）、3行目からがデータ。Excel ではそのまま開ける"
              "（CSV は BOM 付き UTF-8）。pandas: pd.read_csv(path, header=1, dtype={'area_code': str})、"
              "R: read.csv(path, skip = 1, fileEncoding = 'UTF-8-BOM', colClasses = c(area_code = 'character'))。")
READING_EN = ("Line 1: Japanese headers; line 2: column codes; data from line 3. pandas: pd.read_csv(path, header=1,"
              " dtype={'area_code': str}); R: read.csv(path, skip = 1, fileEncoding = 'UTF-8-BOM').")

PRECISION_JA = (f"割合・差は{10 ** -SHARE_DECIMALS:g}ポイント、16歳以上人口1万人当たりの率は{10 ** -RATE_DECIMALS:g}、"
                f"有効標本サイズは{10 ** -N_DECIMALS:g}、設計効果は{10 ** -DEFF_DECIMALS:g}、p 値は有効数字{P_DIGITS}桁、"
                f"変動係数は{10 ** -CV_DECIMALS:g}")

UNIT_JA = {"percent": "%", "per_10k": "16歳以上人口1万人当たり", "flag": "1=あり 0=なし（全国行は%）"}
SOURCE_JA = {"national": "全国調査", "national_subsample": "全国調査の当該県回答者", "own_survey": "県独自調査",
             "programme": "事業データ", "none": "なし"}
METHOD_JA = {"newcombe": "Newcombe区間", "fisher": "Fisherの正確検定",
             "newcombe_rest": "当該県を除く全国と比較（Newcombe区間）", "fisher_rest": "当該県を除く全国と比較（Fisherの正確検定）",
             "source_break": "出典変更のため検定なし", "none": "検定なし"}


def dictionary_table() -> pd.DataFrame:
    """The data dictionary: one row per column of the downloads (codes as its column names)."""
    return pd.DataFrame([(c.ja, c.code, c.meaning, c.format, c.en) for c in COLUMNS],
                        columns=[code for _, code in DICTIONARY_COLUMNS])


def dictionary_headers() -> list[list[str]]:
    """The dictionary's two header rows (Japanese, codes)."""
    return [[ja for ja, _ in DICTIONARY_COLUMNS], [code for _, code in DICTIONARY_COLUMNS]]


def neutralise(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` whose text cells cannot be read as spreadsheet formulas."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            try:   # vectorised; a cell that is not text gives NA here (and is left alone)
                hit = s.str.startswith(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)
            except AttributeError:   # an object column without text
                hit = None
            s = s.astype(object)
            if hit is not None and hit.any():
                s = s.copy()
                s[hit] = "'" + s[hit]
            out[col] = s
    return out


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """UTF-8 with BOM, comma separated, header row of the frame's column names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralise(df).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    return path


def write_xlsx(sheets: dict[str, pd.DataFrame], path: Path) -> Path:
    """One sheet per entry, header frozen, columns sized to their header.

    The cells are what ``DataFrame.to_excel(index=False)`` writes (missing values as empty text
    cells, +-inf as 'inf'/'-inf', numbers as numbers, booleans as booleans), written by
    ``write_workbook`` (~15x faster than pandas + openpyxl; same sheet XML; deterministic bytes)."""
    parts = []
    for name, df in sheets.items():
        safe = neutralise(df)
        widths = [max(10, min(60, len(str(col)) + 4)) for col in safe.columns]
        rows = [list(safe.columns), *_frame_rows(safe)]
        parts.append((name, sheet_xml(rows, widths, freeze_header=True, dimension=True)))
    return write_workbook(path, parts)


def _frame_rows(df: pd.DataFrame) -> list[list[Any]]:
    """Rows of plain Python values as pandas' Excel formatter gives them (na_rep '', inf_rep 'inf')."""
    cols = []
    for name in df.columns:
        out = []
        for v in df[name].tolist():
            if v is None or v is pd.NA or v is pd.NaT:
                v = ""
            elif isinstance(v, (float, np.floating)):
                v = float(v)
                if math.isnan(v):
                    v = ""
                elif math.isinf(v):
                    v = "inf" if v > 0 else "-inf"
            elif isinstance(v, (bool, np.bool_)):
                v = bool(v)
            elif isinstance(v, np.integer):
                v = int(v)
            out.append(v)
        cols.append(out)
    return [list(r) for r in zip(*cols)] if cols else [[] for _ in range(len(df))]


# --- The download files: two header rows (Japanese, codes), filters, frozen header ----------------

def header_rows(codes: Sequence[str]) -> list[list[str]]:
    """The two header rows of a download table: Japanese headers, then the column codes."""
    return [[HEADER_JA.get(c, c) for c in codes], list(codes)]


def write_download_csv(table: pd.DataFrame, path: Path, headers: list[list[str]] | None = None) -> Path:
    """A download CSV: UTF-8 with BOM (Excel then shows the Japanese), CRLF, comma separated; line 1
    the Japanese headers, line 2 the column codes, then the rows (text neutralised against formula
    injection). ``headers``: the two header rows (default ``header_rows(table.columns)``)."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerows(headers or header_rows(list(table.columns)))
        neutralise(table).to_csv(f, index=False, header=False, lineterminator="\r\n")
    tmp.replace(path)
    return path


def _display_width(v: Any) -> int:
    """Roughly the width of a cell's text in Excel's units (a Japanese character counts two)."""
    if v is None or v == "":
        return 0
    s = v if isinstance(v, str) else ("%.16g" % v if isinstance(v, float) else str(v))
    return (len(s) + len(s.encode("utf-8"))) // 2


WIDTH_SAMPLE = 500    # rows whose values size the columns (evenly spread over the sheet)


def column_widths(headers: list[list[str]], rows: Sequence[Sequence[Any]], cap: int = 50) -> list[float]:
    """Widths that show each column's code and values (sampled rows) and its Japanese header on
    at most two lines (the first header row wraps)."""
    step = max(1, len(rows) // WIDTH_SAMPLE)
    sample = rows[::step]
    out = []
    for j in range(len(headers[0])):
        ja = _display_width(headers[0][j])
        w = max([_display_width(headers[-1][j])] + [_display_width(r[j]) for r in sample if j < len(r)])
        w = max(w, ja if ja <= 16 else -(-ja // 2) + 1)
        out.append(float(min(cap, max(8, w + 2))))
    return out


def data_sheet(headers: list[list[str]], rows: list[list[Any]], widths: Sequence[float] | None = None
               ) -> tuple[bytes, str]:
    """(sheet XML, autofilter range) of a data sheet: row 1 the Japanese headers (bold, wrapped),
    row 2 the column codes (a secondary style), both frozen, an autofilter on the code row over
    the data, column widths from ``column_widths``."""
    if widths is None:
        widths = column_widths(headers, rows)
    ncol = max(1, len(headers[0]))
    ref = f"A{len(headers)}:{_col_letter(ncol - 1)}{len(headers) + max(len(rows), 1)}"
    return sheet_xml([*headers, *rows], widths, freeze_header=True, bold_header=True, dimension=True,
                     header_rows=len(headers), autofilter=ref, bool_style=True), ref


def frame_sheet(table: pd.DataFrame) -> tuple[bytes, str]:
    """``data_sheet`` of a download table (columns: the codes)."""
    return data_sheet(header_rows(list(table.columns)), _frame_rows(neutralise(table)))


def text_sheet(header: Sequence[str], rows: Iterable[Sequence[Any]], widths: Sequence[float]) -> bytes:
    """A sheet of text (notes, the dictionary): a bold header row, frozen."""
    return sheet_xml([list(header), *([neutralise_value(v) for v in r] for r in rows)], widths,
                     freeze_header=True, bold_header=True)


def neutralise_value(v: Any) -> Any:
    """One cell: text that a spreadsheet would read as a formula gets a leading apostrophe."""
    if isinstance(v, str) and v.startswith(FORMULA_PREFIXES):
        return "'" + v
    return v


def dictionary_sheet() -> tuple[bytes, str]:
    """The data dictionary as a data sheet (its own two header rows, filter, frozen)."""
    d = dictionary_table()
    return data_sheet(dictionary_headers(), _frame_rows(neutralise(d)), [22, 24, 60, 30, 50])


def write_dictionary_csv(dest_dir: Path) -> Path:
    """``downloads/data-dictionary.csv``: every column of the downloads (its header rows as theirs)."""
    return write_download_csv(dictionary_table(), Path(dest_dir) / DICTIONARY_FILE, dictionary_headers())


# --- XLSX writer -----------------------------------------------------------------------------------
# A small writer for the two kinds of workbooks the site publishes (text, numbers, booleans; a bold
# header; frozen first row; column widths). Each worksheet is the same XML that openpyxl 3.1 writes
# for the same cells (inline strings, '%.16g' numbers, the same element order), so any reader that
# reads openpyxl's files reads these. It is ~15-20x faster than openpyxl (whose per-cell element
# serialisation cost ~4 s per build), and the bytes depend only on the cells: no timestamp in
# docProps/core.xml and a fixed date (1980-01-01) on every zip member.

_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_XLSX_ERRORS = frozenset(("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"))
_ILLEGAL_XML = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")   # as openpyxl refuses
_MAX_TEXT = 32767   # Excel's cell limit (openpyxl truncates likewise)


def _col_letter(i: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


COLUMN_LETTERS = [_col_letter(i) for i in range(256)]


def _text(s: str) -> str:
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    return s


def _attr(s: str) -> str:
    return (_text(s).replace('"', "&quot;").replace("\r", "&#13;").replace("\n", "&#10;")
            .replace("\t", "&#09;"))


def _cell(ref: str, v: Any, style: str) -> str:
    """One <c> element (None: the caller skips the cell)."""
    return f'<c r="{ref}"{style}{_cell_tail(ref, v)}'


def _cell_tail(ref: str, v: Any) -> str:
    """What follows ``<c r="{ref}"{style}`` in the cell of ``v``; it depends on ``v`` only (``ref``
    names the cell in an error)."""
    if isinstance(v, str):
        if len(v) > _MAX_TEXT:
            v = v[:_MAX_TEXT]
        if _ILLEGAL_XML.search(v):
            raise ValueError(f"{ref}: text with a control character cannot be written to a worksheet: {v!r}")
        if v.startswith("=") and len(v) > 1:   # callers neutralise text; never write a formula
            raise ValueError(f"{ref}: text that a spreadsheet reads as a formula: {v!r}")
        if v in _XLSX_ERRORS:
            return f' t="e"><v>{_text(v)}</v></c>'
        if not v:
            return ' t="inlineStr" />'
        stripped = v.strip()
        space = ' xml:space="preserve"' if stripped and stripped != v else ""
        return f' t="inlineStr"><is><t{space}>{_text(v)}</t></is></c>'
    if isinstance(v, (bool, np.bool_)):
        return f' t="b"><v>{1 if v else 0}</v></c>'
    if isinstance(v, (int, float, Decimal, np.integer, np.floating)):
        f = float(v)
        if math.isnan(f) or math.isinf(f):
            return ' t="n"><v /></c>'
        return f' t="n"><v>{"%.16g" % v}</v></c>'
    raise TypeError(f"{ref}: cannot write a {type(v).__name__} to a worksheet")


def sheet_xml(rows: Iterable[Sequence[Any]], widths: Sequence[int | float] = (), *, freeze_header: bool = False,
              bold_header: bool = False, dimension: bool = False, header_rows: int = 1,
              autofilter: str | None = None, bool_style: bool = False) -> bytes:
    """The XML of one worksheet: ``rows`` (the first ``header_rows`` are the header) of str / int /
    float / bool / None (no cell); ``widths`` of the first columns; the header rows frozen and/or
    styled (row 1 bold; with two header rows, row 1 also wrapped on two lines and row 2 in the
    secondary style of the column codes; the styles of ``write_workbook``); a <dimension> element
    (as openpyxl writes for a workbook not in write-only mode); an <autoFilter> over the range
    ``autofilter`` (e.g. 'A2:Z100': its first row holds the filter buttons); ``bool_style``: boolean
    data cells in the style whose number format shows TRUE / FALSE (LibreOffice shows the first
    boolean of a column so and the others as 1 / 0 without it). With the defaults the XML is what
    openpyxl writes for the same cells."""
    rows = [list(r) for r in rows]
    styles = {1: ' s="1"', 2: ' s="2"' if header_rows >= 2 else ' s="1"'} if bold_header else {}
    two_line = ' ht="30" customHeight="1"' if bold_header and header_rows >= 2 else ""
    body = []
    # A cell's XML after its reference depends on its value only, and a sheet repeats values
    # (area names, indicator ids, labels): each distinct value is formatted once. The type is part
    # of the key, as 1, 1.0 and True are equal keys with different cells.
    tails: dict[tuple[type, Any], str] = {}
    for i, row in enumerate(rows, start=1):
        rs = str(i)
        style = styles.get(i, "") if i <= header_rows else ""
        cells = []
        for j, v in enumerate(row):
            ref = (COLUMN_LETTERS[j] if j < len(COLUMN_LETTERS) else _col_letter(j)) + rs
            if v is None:
                if style:
                    cells.append(f'<c r="{ref}"{style} t="n" />')
                continue
            key = (v.__class__, v)
            try:
                tail = tails[key]
            except KeyError:
                tail = tails[key] = _cell_tail(ref, v)
            except TypeError:   # an unhashable value: _cell_tail names the cell
                tail = _cell_tail(ref, v)
            if bool_style and not style and v.__class__ is bool:
                cells.append(f'<c r="{ref}" s="3"{tail}')
                continue
            cells.append(f'<c r="{ref}"{style}{tail}')
        attrs = two_line if i == 1 else ""
        body.append(f'<row r="{rs}"{attrs}>{"".join(cells)}</row>' if cells else f'<row r="{rs}"{attrs} />')
    head = [f'<worksheet xmlns="{_MAIN_NS}"><sheetPr><outlinePr summaryBelow="1" summaryRight="1" />'
            '<pageSetUpPr /></sheetPr>']
    if dimension:
        width = max((len(r) for r in rows), default=1) or 1
        head.append(f'<dimension ref="A1:{_col_letter(width - 1)}{max(len(rows), 1)}" />')
    if freeze_header:
        head.append(f'<sheetViews><sheetView workbookViewId="0"><pane ySplit="{header_rows}" '
                    f'topLeftCell="A{header_rows + 1}" activePane="bottomLeft" state="frozen" /><selection '
                    'pane="bottomLeft" activeCell="A1" sqref="A1" /></sheetView></sheetViews>')
    else:
        head.append('<sheetViews><sheetView workbookViewId="0"><selection activeCell="A1" sqref="A1" />'
                    '</sheetView></sheetViews>')
    head.append('<sheetFormatPr baseColWidth="8" defaultRowHeight="15" />')
    if widths:
        head.append("<cols>" + "".join(f'<col width="{w:g}" customWidth="1" min="{k}" max="{k}" />'
                                       for k, w in enumerate(widths, start=1)) + "</cols>")
    tail = f'<autoFilter ref="{autofilter}" />' if autofilter else ""
    xml = ("".join(head) + "<sheetData>" + "".join(body) + f'</sheetData>{tail}<pageMargins left="0.75" right="0.75" '
           'top="1" bottom="1" header="0.5" footer="0.5" /></worksheet>')
    return xml.encode("utf-8")


def _styles_xml(bold: bool) -> str:
    """The stylesheet: the default cell style; with ``bold`` also the header styles: 1 bold on a light
    fill, wrapped, top-aligned (the first header row), 2 grey italic on a grey fill (the row of
    column codes), and 3 a boolean's number format (TRUE / FALSE)."""
    from openpyxl.styles.colors import COLOR_INDEX

    font = '<font><name val="Calibri" /><family val="2" /><color theme="1" /><sz val="11" /><scheme val="minor" /></font>'
    xf = '<xf numFmtId="0" fontId="{}" fillId="0" borderId="0" pivotButton="0" quotePrefix="0" xfId="0" />'
    fills = '<fill><patternFill /></fill><fill><patternFill patternType="gray125" /></fill>'
    if bold:
        fonts = (f'<fonts count="3">{font}<font><b val="1" /></font><font><i val="1" /><color rgb="FF595959" />'
                 '<sz val="10" /></font></fonts>')
        fills = (f'<fills count="4">{fills}<fill><patternFill patternType="solid"><fgColor rgb="FFDDEBF7" />'
                 '</patternFill></fill><fill><patternFill patternType="solid"><fgColor rgb="FFF2F2F2" />'
                 '</patternFill></fill></fills>')
        numfmts = '<numFmts count="1"><numFmt numFmtId="164" formatCode="&quot;TRUE&quot;;&quot;TRUE&quot;;&quot;FALSE&quot;" /></numFmts>'
        xfs = ('<cellXfs count="4">' + xf.format(0)
               + '<xf numFmtId="0" fontId="1" fillId="2" borderId="0" applyFont="1" applyFill="1" applyAlignment="1" '
                 'pivotButton="0" quotePrefix="0" xfId="0"><alignment vertical="top" wrapText="1" /></xf>'
               + '<xf numFmtId="0" fontId="2" fillId="3" borderId="0" applyFont="1" applyFill="1" pivotButton="0" '
                 'quotePrefix="0" xfId="0" />'
               + '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" applyNumberFormat="1" pivotButton="0" '
                 'quotePrefix="0" xfId="0" /></cellXfs>')
    else:
        numfmts = '<numFmts count="0" />'
        fonts = f'<fonts count="1">{font}</fonts>'
        fills = f'<fills count="2">{fills}</fills>'
        xfs = f'<cellXfs count="1">{xf.format(0)}</cellXfs>'
    colors = "".join(f'<rgbColor rgb="{c}" />' for c in COLOR_INDEX[:64])
    return (f'<styleSheet xmlns="{_MAIN_NS}">{numfmts}{fonts}{fills}<borders count="1"><border><left />'
            '<right /><top /><bottom /><diagonal /></border></borders><cellStyleXfs count="1"><xf numFmtId="0" '
            f'fontId="0" fillId="0" borderId="0" /></cellStyleXfs>{xfs}<cellStyles count="1"><cellStyle '
            'name="Normal" xfId="0" builtinId="0" hidden="0" /></cellStyles><tableStyles count="0" '
            'defaultTableStyle="TableStyleMedium9" defaultPivotStyle="PivotStyleLight16" /><colors><indexedColors>'
            f'{colors}</indexedColors></colors></styleSheet>')


def _sheet_ref(title: str, ref: str) -> str:
    """'Sheet name'!$A$2:$Z$100 (for a defined name)."""
    a, b = ref.split(":")
    absolute = [re.sub(r"([A-Z]+)([0-9]+)", r"$\1$\2", x) for x in (a, b)]
    return "'" + title.replace("'", "''") + "'!" + ":".join(absolute)


def workbook_bytes(sheets: Sequence[tuple], bold: bool = False) -> dict[str, bytes]:
    """The package members (name -> bytes, in openpyxl's member order) of a workbook of ``sheets``
    ((title, ``sheet_xml`` bytes[, its autofilter range]), titles <= 31 characters). A sheet with an
    autofilter gets the hidden defined name Excel keeps for it (_xlnm._FilterDatabase)."""
    from openpyxl.writer.theme import theme_xml

    ct = "application/vnd.openxmlformats-officedocument"
    n = len(sheets)
    members: dict[str, bytes] = {
        "docProps/app.xml": ('<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/'
                             'extended-properties"><Application>Microsoft Excel Compatible / tsunagari'
                             '</Application></Properties>').encode(),
        # No created/modified date: the bytes of a workbook depend only on its cells.
        "docProps/core.xml": ('<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
                              'metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" '
                              'xmlns:dcterms="http://purl.org/dc/terms/" '
                              'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:creator>tsunagari'
                              '</dc:creator></cp:coreProperties>').encode(),
        "xl/theme/theme1.xml": theme_xml.encode("utf-8"),
    }
    for k, (_, xml, *_rest) in enumerate(sheets, start=1):
        members[f"xl/worksheets/sheet{k}.xml"] = xml
    names = "".join(f'<definedName name="_xlnm._FilterDatabase" localSheetId="{k}" hidden="1">'
                    f'{_text(_sheet_ref(title, rest[0]))}</definedName>'
                    for k, (title, _, *rest) in enumerate(sheets) if rest and rest[0])
    defined = f"<definedNames>{names}</definedNames>" if names else "<definedNames />"
    members["xl/styles.xml"] = _styles_xml(bold).encode()
    members["_rels/.rels"] = (
        f'<Relationships xmlns="{_PKG_REL_NS}"><Relationship Type="{_REL_NS}/officeDocument" '
        'Target="xl/workbook.xml" Id="rId1" /><Relationship Type="http://schemas.openxmlformats.org/package/'
        '2006/relationships/metadata/core-properties" Target="docProps/core.xml" Id="rId2" /><Relationship '
        f'Type="{_REL_NS}/extended-properties" Target="docProps/app.xml" Id="rId3" /></Relationships>').encode()
    members["xl/workbook.xml"] = (
        f'<workbook xmlns:r="{_REL_NS}" xmlns="{_MAIN_NS}"><workbookPr /><workbookProtection /><bookViews>'
        '<workbookView visibility="visible" minimized="0" showHorizontalScroll="1" showVerticalScroll="1" '
        'showSheetTabs="1" tabRatio="600" firstSheet="0" activeTab="0" autoFilterDateGrouping="1" /></bookViews>'
        "<sheets>" + "".join(f'<sheet name="{_attr(title)}" sheetId="{k}" state="visible" r:id="rId{k}" />'
                             for k, (title, *_) in enumerate(sheets, start=1))
        + f'</sheets>{defined}<calcPr calcId="124519" fullCalcOnLoad="1" /></workbook>').encode()
    members["xl/_rels/workbook.xml.rels"] = (
        f'<Relationships xmlns="{_PKG_REL_NS}">'
        + "".join(f'<Relationship Type="{_REL_NS}/worksheet" Target="/xl/worksheets/sheet{k}.xml" Id="rId{k}" />'
                  for k in range(1, n + 1))
        + f'<Relationship Type="{_REL_NS}/styles" Target="styles.xml" Id="rId{n + 1}" />'
        + f'<Relationship Type="{_REL_NS}/theme" Target="theme/theme1.xml" Id="rId{n + 2}" /></Relationships>'
    ).encode()
    members["[Content_Types].xml"] = (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml" /><Default Extension="xml" '
        f'ContentType="application/xml" /><Override PartName="/xl/styles.xml" ContentType="{ct}.spreadsheetml.'
        f'styles+xml" /><Override PartName="/xl/theme/theme1.xml" ContentType="{ct}.theme+xml" /><Override '
        'PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml" />'
        f'<Override PartName="/docProps/app.xml" ContentType="{ct}.extended-properties+xml" />'
        + "".join(f'<Override PartName="/xl/worksheets/sheet{k}.xml" ContentType="{ct}.spreadsheetml.worksheet+xml" />'
                  for k in range(1, n + 1))
        + f'<Override PartName="/xl/workbook.xml" ContentType="{ct}.spreadsheetml.sheet.main+xml" /></Types>'
    ).encode()
    return members


def write_workbook(path: Path, sheets: Sequence[tuple], bold: bool = False) -> Path:
    """Write an XLSX of ``sheets`` ((title, ``sheet_xml`` bytes[, autofilter range])) atomically (tmp
    file + rename); ``bold``: with the header styles of ``sheet_xml(bold_header=True)``.
    Identical sheets give identical bytes: fixed member dates and order, no timestamps."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in workbook_bytes(sheets, bold).items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o600 << 16
            z.writestr(info, data)
    tmp.replace(path)
    return path


def check_area_code(value: object, parameter: str = "area_code") -> str:
    """Guard: an area code '00' (national) or '01'..'47'."""
    text = str(value).strip()
    if text in ("0", "00"):
        return "00"
    try:
        return f"{check_pref_code(text, parameter):02d}"
    except UsageError:
        raise UsageError(parameter, f"'{value}' is not an area code (00 national, 01–47) / 地域コードではありません") from None


def _breakdown_ja(b: str) -> str:
    if b == "total":
        return "全体"
    key, _, val = b.partition("=")
    if key == "sex":
        return schema.SEX.get(int(val), val)
    if key == "age":
        return schema.AGE_BAND_LABELS.get(val, val)
    if key == "uk_age":
        return f"英国比較用年齢区分 {val}歳"
    if key == "household_single":
        return "一人暮らし" if val == "1" else "一人暮らし以外"
    return b


def download_table(indicators: pd.DataFrame, catalogue, synthetic: bool = False) -> pd.DataFrame:
    """The download table: the contract columns (in contract order) with names joined from the
    catalogue and a Japanese label column before each column of English codes (unit, breakdown,
    comparison, change, source, methods, estimate), at the published precision
    (``round_published``), in the order of ``COLUMNS``. ``synthetic``: a first column ``synthetic``
    (TRUE on every row) says the figures come from synthetic data."""
    cat = {i.id: i for i in catalogue}
    df = indicators[schema.INDICATOR_COLUMNS].copy()
    unit = df["indicator_id"].map(lambda i: cat[i].unit if i in cat else "")
    df = round_published(df.assign(unit=unit))
    df["indicator_name_ja"] = df["indicator_id"].map(lambda i: cat[i].name_ja if i in cat else "")
    df["indicator_name_en"] = df["indicator_id"].map(lambda i: cat[i].name_en if i in cat else "")
    df["unit_ja"] = df["unit"].map(lambda u: UNIT_JA.get(u, u))
    df["breakdown_ja"] = df["breakdown"].map(_breakdown_ja)
    df["comparison_ja"] = df["comparison"].map(schema.COMPARISON_LABELS)
    df["change_vs_previous_ja"] = df["change_vs_previous"].map(schema.CHANGE_LABELS)
    for col, labels in (("source", SOURCE_JA), ("comparison_method", METHOD_JA), ("change_method", METHOD_JA)):
        df[f"{col}_ja"] = df[col].map(lambda v, labels=labels: labels.get(v, v) if isinstance(v, str) else v)
    df["estimate_method_ja"] = [conventions.estimate_method_label(m, y) if isinstance(m, str) else ""
                                for m, y in zip(df["estimate_method"], df["lead_years"])]
    if synthetic:
        df["synthetic"] = True
    return df[[c.code for c in COLUMNS if c.code in df.columns]]


def method_notes() -> list[tuple[str, str]]:
    """(item, text) lines stating how every figure was made: denominators, intervals, the tests and
    when each is used, the design effects in force, small bases and suppression. One text for the
    notes sheets of every workbook (all areas and per prefecture)."""
    from . import config, method_statement
    from .indicators import EXTREME_NOTE, POP_16PLUS_FACTOR
    from .stats import METHOD_DESCRIPTIONS

    effects = config.design_effects()
    rule = ("標本設計（列 stratum・psu）のある調査は、テイラー線形化による設計に基づく分散から指標ごとに推定した設計効果"
            "（調査全体の値。層内で第1次抽出単位を復元抽出とみなす。単位が1つの層は全体平均を中心とする保守的な扱い。"
            "ウエイトの効果は n_eff に含まれるため、それを超える集落化・層化の効果）。標本設計のない調査は既定値 "
            f"{config.DEFAULT_DEFF:g}（{config.DEFAULT_DEFF_BASIS}）。設計効果 1.0・1.5・2.0 での判定数の比較はデータ品質ページ"
            " / surveys with design columns: deff estimated per indicator by Taylor linearisation (ultimate clusters, "
            f"single-PSU strata 'adjust'; beyond the weighting already in n_eff); others {config.DEFAULT_DEFF:g}")
    deff = (rule if not effects else
            "指定 / set: " + "、".join(f"{'全調査' if k == '*' else k} = {v:g}" for k, v in sorted(effects.items()))
            + f"（指定が推定値・既定値に優先。指定のない調査は: {rule}）")
    # The rules in the words of the one method statement (reports, site and notes say the same).

    lines = [(f"{r.title_ja} / {r.title_en}", f"{r.text_ja} / {r.text_en}") for r in method_statement.rules()]
    lines += [
        ("設計効果の設定 / design effects in force", f"{deff}。有効標本サイズ n_effective = (Σw)²/Σw² ÷ 設計効果（列 design_effect）。"
                                                   " / n_effective = Kish n_eff / deff is used by every interval and test."),
        ("判定の再現 / reproducing a label", "判定のある行（comparison または change_vs_previous が not_compared 以外）は、"
                                            "比較の相手（基準値とその有効標本サイズ）、差とその95%信頼区間、Fisher の正確検定を用いた場合はその p 値、"
                                            "方法を持つ。検定はこのファイルに公表した精度の値（割合は0.1ポイント、有効標本サイズは0.1）で行っているため、"
                                            "value・n_effective・reference_value・reference_n_effective（前回比は previous_value・previous_n_effective）"
                                            "を100で割った割合から pipelines.stats.difference_test で同じ判定が得られる。非表示の行には載せない。"
                                            " / Every labelled row carries what it was tested against. The tests use the figures"
                                            " at the published precision, so value, n_effective, reference_value and"
                                            " reference_n_effective (previous_value, previous_n_effective for the change) give the"
                                            " same label with pipelines.stats.difference_test. Suppressed rows carry none of them."),
        ("列 reference_value", "比較の基準値（%）: 県独自調査の県は全国値、全国調査の当該県回答者による県は当該県を除く全国の値"
                              "（national_value とは異なる）。 / The reference the area was tested against (percent): the"
                              " national value for an own-survey area, the rest of the nation (national minus the area) for"
                              " a national-subsample area."),
        ("列 reference_n_effective", "基準値の有効標本サイズ（Kish の n_eff ÷ 設計効果）。 / The reference's effective sample size"
                                    " (Kish n_eff / design effect)."),
        ("列 difference", "value − reference_value（ポイント、検定した値）。 / Area minus reference, percentage points, as tested."),
        ("列 difference_lower_ci95, difference_upper_ci95", "差の95%信頼区間（Newcombe のハイブリッド・スコア区間、ポイント）。"
                                                          "Fisher の正確検定で判定した行でも参考に示す。 / 95% Newcombe"
                                                          " hybrid score interval of the difference (points); also shown where"
                                                          " Fisher's test decided."),
        ("列 p_value", "Fisher の正確検定（両側、有効標本数を丸めた度数）の p 値。comparison_method が fisher または fisher_rest の行のみ。"
                      "Newcombe 区間で判定した行は空欄（区間が0を含まなければ5%水準で有意）。 / Two-sided p of Fisher's exact"
                      " test, only where it decided (fisher, fisher_rest); empty where the Newcombe interval decided."),
        ("列 previous_value, previous_n_effective", "前回調査（previous_year）の同じ地域・内訳の値（%）と有効標本サイズ。"
                                                   "出典変更の行（source_break）にも示す（検定はしない）。 / The previous"
                                                   " round's value and effective size; also on a source-break row (not tested)."),
        ("列 change_difference, change_lower_ci95, change_upper_ci95, change_p_value",
         "前回との差（value − previous_value、ポイント）とその95% Newcombe 区間、change_method が fisher の行のみ Fisher の p 値。"
         " / The change (points), its 95% Newcombe interval, and Fisher's p where Fisher decided."),
        ("丸め / rounding", f"割合・信頼区間・全国値・基準値・前回値・差は{10 ** -SHARE_DECIMALS:g}ポイント単位、16歳以上人口1万人当たりの率は"
                           f"{10 ** -RATE_DECIMALS:g}単位、有効標本サイズは{10 ** -N_DECIMALS:g}単位、設計効果は{10 ** -DEFF_DECIMALS:g}単位、"
                           f"p 値は有効数字{P_DIGITS}桁に丸めて公表（割合・率は報告書・サイトの表示と同じ桁）"
                           "（データベースは丸める前の値を保持）。 / Shares, intervals, national, reference and previous"
                           f" values and differences are published to {10 ** -SHARE_DECIMALS:g} point, rates per 10,000 to"
                           f" {10 ** -RATE_DECIMALS:g}, effective sizes to {10 ** -N_DECIMALS:g}, design effects to"
                           f" {10 ** -DEFF_DECIMALS:g}, p-values to {P_DIGITS}"
                           " significant digits; the warehouse keeps full precision."),
        ("0%・100% / 0% and 100%", f"集計対象が{config.REFERENCE_BASE}人未満で、標本の該当者が0人または全員（ちょうど0%または100%）の値は、"
                                  f"参考値として95%信頼区間とともに公表し、注記「{EXTREME_NOTE}」を付ける（区間が標本から言える範囲を示す）。"
                                  f" / A share of exactly 0% or 100% on an unweighted base under {config.REFERENCE_BASE} is"
                                  " published as a reference value with its Wilson interval and a note, never read on its own."),
        ("都道府県値の出典 / area source", "当該年に県独自調査（全国調査と同じ調査票）がある県はその結果（source = own_survey）、"
                                          "ない県は全国調査の当該県回答者（national_subsample）。全国値は全国調査（national）、"
                                          "事業指標は事業データ（programme）。各行の注記に出典と回答者数（非表示の行は「"
                                          f"{config.MIN_BASE}人未満」または「非公表」）を記載。"),
        ("16歳以上人口 / population 16+", f"推計値: 2020年国勢調査の総人口 × {POP_16PLUS_FACTOR}（全国の0～14歳 15,031,602人と15歳約107万人を除いた割合）。"),
        ("推計の方法 / estimates", method_statement.text("estimates")),
        ("列 estimate_method, lead_value, lead_lower_ci95, lead_upper_ci95, lead_cv, lead_years",
         "報告書・サイトが表示する推計（上の規則で選んだもの）: direct（直接推計。value と同じ）、pooled（プール推計、"
         "lead_years の期間の全国調査の当該県回答者を合わせた値。回答者数は公表しない）、model（Fay–Herriot モデル推計。"
         "回答者数の集計ではないため回答者数を持たない）。その値・95%区間（%）・変動係数（標準誤差÷値、比率、"
         f"小数第{CV_DECIMALS}位）。value・n_unweighted などの列と判定（comparison、change_vs_previous）は常に直接推計のもので、"
         "プール推計・モデル推計には判定を付けない。非表示（suppressed）の行にも pooled・model の値は載る（非表示の直接推計の値ではない）。"
         "モデルの係数・地域分散・縮小係数はデータ品質ページ。"
         " / The estimate reports and the site show, chosen by the rule above: direct (= value), pooled (the"
         " rounds in lead_years together; no base published) or model (Fay-Herriot; not a count, no base);"
         " its value, 95% interval and CV. The value, base and label columns stay those of the direct estimate."),
    ]
    lines += [(f"方法 {k}", v) for k, v in METHOD_DESCRIPTIONS.items()]
    return lines


SYNTHETIC_NOTE = ("【注意】合成データ / SYNTHETIC DATA",
                  "この表は合成（架空）データから作成した見本です。実際の調査結果ではありません"
                  "（データの各行の「合成データ」列が TRUE）。 / These figures are computed from synthetic sample data,"
                  " not real survey results (the column 'synthetic' is TRUE on every row).")


def is_synthetic(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse holds synthetic data: any committed file marked synthetic, as the
    site's banner and the reports' watermark decide (True when the flag cannot be read: the
    statement is shown rather than silently dropped)."""
    return warehouse_db.synthetic_flag(con)


def columns_note() -> tuple[str, str]:
    """The notes sheets' line on how the data sheets and CSV files are laid out."""
    return ("列 / columns", f"{READING_JA}各列の意味・単位はシート「{DICTIONARY_SHEET}」と {DICTIONARY_FILE}。"
                           f"値の単位は unit 列: percent=%、per_10k=16歳以上人口1万人当たり、flag=1/0。"
                           f" / {READING_EN} Every column is described in the sheet '{DICTIONARY_SHEET}' and"
                           f" {DICTIONARY_FILE}.")


def notes_table(con: duckdb.DuckDBPyConnection, year: int | None, catalogue,
                synthetic: bool | None = None) -> pd.DataFrame:
    """The notes sheet: the synthetic-data statement first (when the data are synthetic), the
    title, methods, the layout of the files, sources, the catalogue. ``year`` None: the workbook of
    every round. ``synthetic``: None reads it from the warehouse (``is_synthetic``)."""
    from .indicators import previous_year, rounds

    files = pd.DataFrame(columns=["file_name", "kind", "survey_id", "survey_year", "synthetic"])
    has_files = con.execute("SELECT count(*) FROM information_schema.tables "
                            "WHERE table_name = 'files'").fetchone()[0]
    if year is None:
        years = rounds(con)
        span = f"{years[0]}～{years[-1]}年（全調査回）" if years else "（調査回なし）"
        title = f"孤独・孤立対策 評価指標 {span} / Loneliness and isolation indicators, every round"
        if has_files:
            files = con.execute("SELECT file_name, kind, survey_id, survey_year, synthetic FROM files "
                                "ORDER BY kind, survey_year, file_name").df()
    else:
        prev = previous_year(con, year)
        title = f"孤独・孤立対策 評価指標 {year}年調査 / Loneliness and isolation indicators, {year}"
        if prev is not None:
            title += f"（前回比は {prev}年調査と比較 / change vs {prev}）"
        if has_files:
            files = con.execute(
                "SELECT file_name, kind, survey_id, survey_year, synthetic FROM files "
                "WHERE kind = 'programme' OR survey_year IN (?, ?) ORDER BY kind, survey_year, file_name",
                [year, prev if prev is not None else year]).df()
    if synthetic is None:
        synthetic = is_synthetic(con)
    rows: list[tuple[str, str]] = [SYNTHETIC_NOTE] if synthetic else []
    rows += [("表題 / Title", title), columns_note()]
    rows += method_notes()
    for _, f in files.iterrows():
        label = f"出典ファイル / source file ({f['kind']})"
        sid = f" {f['survey_id']}" if isinstance(f["survey_id"], str) else ""
        rows.append((label, f"{f['file_name']}{sid}" + (" [合成データ / synthetic]" if f["synthetic"] else "")))
    for ind in catalogue:
        rows.append((f"指標 {ind.id}",
                     f"{ind.name_ja} / {ind.name_en}。{ind.pillar_label}。分母: {ind.denominator_ja or ind.denominator}。"
                     f"{ind.description_ja}"))
    return pd.DataFrame(rows, columns=["項目 (item)", "内容 (text)"])


def write_indicator_downloads(con: duckdb.DuckDBPyConnection, year: int | None, dest_dir: Path,
                              area_code: str | None = None) -> tuple[Path, Path]:
    """Write ``indicators-{year}.csv`` and ``.xlsx`` (or ``indicators-{year}-{area}.*`` with
    ``area_code``: that area's rows, national value in the same row) from the warehouse.
    ``year`` None: every round in one tidy table with its ``year`` column, ``indicators.csv|xlsx``
    (``indicators-{area}.*`` with ``area_code``)."""
    from .catalogue import BREAKDOWNS_COMMON, BREAKDOWNS_UK, load_catalogue

    # Both name the output files: digits only (no path traversal); both are bound into the SQL.
    if year is not None:
        year = check_year(year, "year")
    if area_code is not None:
        area_code = check_area_code(area_code)
    catalogue = load_catalogue()
    sql = "SELECT * FROM indicators WHERE (? IS NULL OR year = ?)"
    params: list = [year, year]
    if area_code is not None:
        sql += " AND area_code = ?"
        params.append(area_code)
    ind = con.execute(sql + " ORDER BY year, area_code", params).df()
    order = {i.id: k for k, i in enumerate(catalogue)}
    bd_order = {b: k for k, b in enumerate(BREAKDOWNS_COMMON + BREAKDOWNS_UK)}
    ind = (ind.assign(_i=ind.indicator_id.map(order), _b=ind.breakdown.map(bd_order))
              .sort_values(["year", "area_code", "_i", "_b"], kind="stable").drop(columns=["_i", "_b"]))
    synthetic = is_synthetic(con)
    table = download_table(ind, catalogue, synthetic)
    stem = "-".join(["indicators"] + [str(year)] * (year is not None) + [area_code] * (area_code is not None))
    dest_dir = Path(dest_dir)
    csv = write_download_csv(table, dest_dir / f"{stem}.csv")
    notes = notes_table(con, year, catalogue, synthetic)
    xlsx = write_workbook(dest_dir / f"{stem}.xlsx", [
        (DATA_SHEET, *frame_sheet(table)),
        (NOTES_SHEET, text_sheet(notes.columns, notes.itertuples(index=False), [28, 120])),
        (DICTIONARY_SHEET, *dictionary_sheet())], bold=True)
    return csv, xlsx


def write_downloads(year: int | None, warehouse: Path, out_dir: Path, years: list[int] | None = None,
                    combined: bool = True) -> list[Path]:
    """``out_dir/downloads/indicators.csv|xlsx`` (every round) and ``data-dictionary.csv`` (unless
    ``combined`` is False) and ``indicators-{y}.csv|xlsx`` for each round in ``years`` (default:
    every round in the warehouse tables). ``year`` is kept for callers: every round is written."""
    con = warehouse_db.connect(warehouse)
    try:
        if years is None:
            years = [int(r[0]) for r in con.execute("SELECT DISTINCT year FROM indicators ORDER BY 1").fetchall()]
        paths = []
        if combined:
            paths += write_indicator_downloads(con, None, Path(out_dir) / "downloads")
            paths.append(write_dictionary_csv(Path(out_dir) / "downloads"))
        for y in years:
            paths += write_indicator_downloads(con, y, Path(out_dir) / "downloads")
        return paths
    finally:
        con.close()
