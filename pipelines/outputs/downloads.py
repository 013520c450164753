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

Workbooks (these and the per-prefecture ones of pipelines.outputs.site) are written by
``pipelines.io.xlsx.write_workbook``: the worksheet XML openpyxl writes for the same cells, faster,
and the same bytes for the same cells (no timestamp inside, fixed zip member dates).

Published precision (``round_published``; the warehouse keeps full precision), as the reports,
the site and the quality page show the figures: shares, their intervals, national / reference /
previous values and differences to 0.1 percentage point; rates per 10,000 to 0.1; effective sizes
to 0.1; design effects to 0.01; p-values to 3 significant digits; coefficients of variation to
0.001. The tests of the comparison and the change take the shares and effective sizes at this
precision (``published_share`` / ``published_n``, called by ``indicators``), so every label can be
recomputed from its download row with ``pipelines.domain.stats.difference_test``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import duckdb
import pandas as pd

from pipelines.domain import config, conventions, schema

# Published precision (the warehouse keeps full precision): conventions, where the tests read it too.
from pipelines.domain.conventions import (  # noqa: E402,F401
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

# The data dictionary (pipelines/domain/dictionary.py) and the published precision (pipelines/domain/formatting.py)
# are imported here under their old names.
from pipelines.domain.dictionary import COLUMN_BY_CODE, COLUMNS, DICTIONARY_COLUMNS, DICTIONARY_FILE, HEADER_JA, Column  # noqa: E402,F401
from pipelines.domain.errors import UsageError, check_pref_code, check_year
from pipelines.domain.formatting import N_COLUMNS, P_COLUMNS, SHARE_COLUMNS, VALUE_UNIT_COLUMNS, round_published  # noqa: E402,F401
from pipelines.engine import keys
from pipelines.io import warehouse as warehouse_db
from pipelines.io.xlsx import data_sheet, frame_rows, neutralise_frame, text_sheet, write_workbook

# What the downloads (and the per-prefecture workbooks) read: the indicators columns the dictionary
# lists (``download_table`` keeps those only) and the files the notes sheet lists.
DOWNLOAD_ROWS = keys.Reads(
    "indicators", tuple(c.code for c in COLUMNS if c.code in schema.INDICATOR_COLUMNS), rows="the rounds in the file"
)
NOTED_FILES = keys.Reads(
    "files",
    ("survey_year", "file_name", "kind", "survey_id", "synthetic"),
    rows="the programme files and the survey files up to the file's last round",
)
DOWNLOADS = keys.Stage(
    "downloads",
    reads=(DOWNLOAD_ROWS, NOTED_FILES),
    writes=(
        "downloads/indicators.csv",
        "downloads/indicators.xlsx",
        "downloads/indicators-{year}.csv",
        "downloads/indicators-{year}.xlsx",
        f"downloads/{DICTIONARY_FILE}",
    ),
)

DICTIONARY_SHEET = "列の説明 (data dictionary)"
DATA_SHEET = "指標 (indicators)"
NOTES_SHEET = "注記 (notes)"
# How to read the files (downloads page, README, notes sheet).
READING_JA = (
    "1行目は日本語の列名、2行目は列コード（スクリプト用の列名）、3行目からがデータ。Excel ではそのまま開ける"
    "（CSV は BOM 付き UTF-8）。pandas: pd.read_csv(path, header=1, dtype={'area_code': str})、"
    "R: read.csv(path, skip = 1, fileEncoding = 'UTF-8-BOM', colClasses = c(area_code = 'character'))。"
)
READING_EN = (
    "Line 1: Japanese headers; line 2: column codes; data from line 3. pandas: pd.read_csv(path, header=1,"
    " dtype={'area_code': str}); R: read.csv(path, skip = 1, fileEncoding = 'UTF-8-BOM')."
)

PRECISION_JA = (
    f"割合・差は{10**-SHARE_DECIMALS:g}ポイント、16歳以上人口1万人当たりの率は{10**-RATE_DECIMALS:g}、"
    f"有効標本サイズは{10**-N_DECIMALS:g}、設計効果は{10**-DEFF_DECIMALS:g}、p 値は有効数字{P_DIGITS}桁、"
    f"変動係数は{10**-CV_DECIMALS:g}"
)

UNIT_JA = {"percent": "%", "per_10k": "16歳以上人口1万人当たり", "flag": "1=あり 0=なし（全国行は%）"}
SOURCE_JA = {
    "national": "全国調査",
    "national_subsample": "全国調査の当該県回答者",
    "own_survey": "県独自調査",
    "programme": "事業データ",
    "none": "なし",
}
METHOD_JA = {
    "newcombe": "Newcombe区間",
    "fisher": "Fisherの正確検定",
    "newcombe_rest": "当該県を除く全国と比較（Newcombe区間）",
    "fisher_rest": "当該県を除く全国と比較（Fisherの正確検定）",
    "source_break": "出典変更のため検定なし",
    "none": "検定なし",
}


def dictionary_table() -> pd.DataFrame:
    """The data dictionary: one row per column of the downloads (codes as its column names)."""
    return pd.DataFrame(
        [(c.ja, c.code, c.meaning, c.format, c.en) for c in COLUMNS], columns=[code for _, code in DICTIONARY_COLUMNS]
    )


def dictionary_headers() -> list[list[str]]:
    """The dictionary's two header rows (Japanese, codes)."""
    return [[ja for ja, _ in DICTIONARY_COLUMNS], [code for _, code in DICTIONARY_COLUMNS]]


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """UTF-8 with BOM, comma separated, header row of the frame's column names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralise_frame(df).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    return path


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
        neutralise_frame(table).to_csv(f, index=False, header=False, lineterminator="\r\n")
    tmp.replace(path)
    return path


def frame_sheet(table: pd.DataFrame) -> tuple[bytes, str]:
    """``data_sheet`` of a download table (columns: the codes)."""
    return data_sheet(header_rows(list(table.columns)), frame_rows(neutralise_frame(table)))


def dictionary_sheet() -> tuple[bytes, str]:
    """The data dictionary as a data sheet (its own two header rows, filter, frozen)."""
    d = dictionary_table()
    return data_sheet(dictionary_headers(), frame_rows(neutralise_frame(d)), [22, 24, 60, 30, 50])


def write_dictionary_csv(dest_dir: Path) -> Path:
    """``downloads/data-dictionary.csv``: every column of the downloads (its header rows as theirs)."""
    return write_download_csv(dictionary_table(), Path(dest_dir) / DICTIONARY_FILE, dictionary_headers())


def check_area_code(value: object, parameter: str = "area_code") -> str:
    """Guard: an area code '00' (national) or '01'..'47'."""
    text = str(value).strip()
    if text in ("0", "00"):
        return "00"
    try:
        return f"{check_pref_code(text, parameter):02d}"
    except UsageError:
        raise UsageError(
            parameter, f"'{value}' is not an area code (00 national, 01–47) / 地域コードではありません"
        ) from None


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
    df["estimate_method_ja"] = [
        conventions.estimate_method_label(m, y) if isinstance(m, str) else ""
        for m, y in zip(df["estimate_method"], df["lead_years"])
    ]
    if synthetic:
        df["synthetic"] = True
    return df[[c.code for c in COLUMNS if c.code in df.columns]]


def method_notes() -> list[tuple[str, str]]:
    """(item, text) lines stating how every figure was made: denominators, intervals, the tests and
    when each is used, the design effects in force, small bases and suppression. One text for the
    notes sheets of every workbook (all areas and per prefecture)."""
    from pipelines.domain import method_statement
    from pipelines.domain.conventions import EXTREME_NOTE
    from pipelines.domain.reference import POP_16PLUS_FACTOR
    from pipelines.domain.stats import METHOD_DESCRIPTIONS

    effects = config.design_effects()
    rule = (
        "標本設計（列 stratum・psu）のある調査は、テイラー線形化による設計に基づく分散から指標ごとに推定した設計効果"
        "（調査全体の値。層内で第1次抽出単位を復元抽出とみなす。単位が1つの層は全体平均を中心とする保守的な扱い。"
        "ウエイトの効果は n_eff に含まれるため、それを超える集落化・層化の効果）。標本設計のない調査は既定値 "
        f"{config.DEFAULT_DEFF:g}（{config.DEFAULT_DEFF_BASIS}）。設計効果 1.0・1.5・2.0 での判定数の比較はデータ品質ページ"
        " / surveys with design columns: deff estimated per indicator by Taylor linearisation (ultimate clusters, "
        f"single-PSU strata 'adjust'; beyond the weighting already in n_eff); others {config.DEFAULT_DEFF:g}"
    )
    deff = (
        rule
        if not effects
        else "指定 / set: "
        + "、".join(f"{'全調査' if k == '*' else k} = {v:g}" for k, v in sorted(effects.items()))
        + f"（指定が推定値・既定値に優先。指定のない調査は: {rule}）"
    )
    # The rules in the words of the one method statement (reports, site and notes say the same).

    lines = [(f"{r.title_ja} / {r.title_en}", f"{r.text_ja} / {r.text_en}") for r in method_statement.rules()]
    lines += [
        (
            "設計効果の設定 / design effects in force",
            f"{deff}。有効標本サイズ n_effective = (Σw)²/Σw² ÷ 設計効果（列 design_effect）。"
            " / n_effective = Kish n_eff / deff is used by every interval and test.",
        ),
        (
            "判定の再現 / reproducing a label",
            "判定のある行（comparison または change_vs_previous が not_compared 以外）は、"
            f"比較の相手（基準値とその有効標本サイズ）、差とその{config.confidence_percent()}%信頼区間、Fisher の正確検定を用いた場合はその p 値、"
            "方法を持つ。検定はこのファイルに公表した精度の値（割合は0.1ポイント、有効標本サイズは0.1）で行っているため、"
            "value・n_effective・reference_value・reference_n_effective（前回比は previous_value・previous_n_effective）"
            "を100で割った割合から pipelines.domain.stats.difference_test で同じ判定が得られる。非表示の行には載せない。"
            " / Every labelled row carries what it was tested against. The tests use the figures"
            " at the published precision, so value, n_effective, reference_value and"
            " reference_n_effective (previous_value, previous_n_effective for the change) give the"
            " same label with pipelines.domain.stats.difference_test. Suppressed rows carry none of them.",
        ),
        (
            "列 reference_value",
            "比較の基準値（%）: 県独自調査の県は全国値、全国調査の当該県回答者による県は当該県を除く全国の値"
            "（national_value とは異なる）。 / The reference the area was tested against (percent): the"
            " national value for an own-survey area, the rest of the nation (national minus the area) for"
            " a national-subsample area.",
        ),
        (
            "列 reference_n_effective",
            "基準値の有効標本サイズ（Kish の n_eff ÷ 設計効果）。 / The reference's effective sample size"
            " (Kish n_eff / design effect).",
        ),
        (
            "列 difference",
            "value − reference_value（ポイント、検定した値）。 / Area minus reference, percentage points, as tested.",
        ),
        (
            "列 difference_lower_ci95, difference_upper_ci95",
            f"差の{config.confidence_percent()}%信頼区間（Newcombe のハイブリッド・スコア区間、ポイント）。"
            f"Fisher の正確検定で判定した行でも参考に示す。 / {config.confidence_percent()}% Newcombe"
            " hybrid score interval of the difference (points); also shown where"
            " Fisher's test decided.",
        ),
        (
            "列 p_value",
            "Fisher の正確検定（両側、有効標本数を丸めた度数）の p 値。comparison_method が fisher または fisher_rest の行のみ。"
            "Newcombe 区間で判定した行は空欄（区間が0を含まなければ5%水準で有意）。 / Two-sided p of Fisher's exact"
            " test, only where it decided (fisher, fisher_rest); empty where the Newcombe interval decided.",
        ),
        (
            "列 previous_value, previous_n_effective",
            "前回調査（previous_year）の同じ地域・内訳の値（%）と有効標本サイズ。"
            "出典変更の行（source_break）にも示す（検定はしない）。 / The previous"
            " round's value and effective size; also on a source-break row (not tested).",
        ),
        (
            "列 change_difference, change_lower_ci95, change_upper_ci95, change_p_value",
            f"前回との差（value − previous_value、ポイント）とその{config.confidence_percent()}% Newcombe 区間、change_method が fisher の行のみ Fisher の p 値。"
            f" / The change (points), its {config.confidence_percent()}% Newcombe interval, and Fisher's p where Fisher decided.",
        ),
        (
            "丸め / rounding",
            f"割合・信頼区間・全国値・基準値・前回値・差は{10**-SHARE_DECIMALS:g}ポイント単位、16歳以上人口1万人当たりの率は"
            f"{10**-RATE_DECIMALS:g}単位、有効標本サイズは{10**-N_DECIMALS:g}単位、設計効果は{10**-DEFF_DECIMALS:g}単位、"
            f"p 値は有効数字{P_DIGITS}桁に丸めて公表（割合・率は報告書・サイトの表示と同じ桁）"
            "（データベースは丸める前の値を保持）。 / Shares, intervals, national, reference and previous"
            f" values and differences are published to {10**-SHARE_DECIMALS:g} point, rates per 10,000 to"
            f" {10**-RATE_DECIMALS:g}, effective sizes to {10**-N_DECIMALS:g}, design effects to"
            f" {10**-DEFF_DECIMALS:g}, p-values to {P_DIGITS}"
            " significant digits; the warehouse keeps full precision.",
        ),
        (
            "0%・100% / 0% and 100%",
            f"集計対象が{config.REFERENCE_BASE}人未満で、標本の該当者が0人または全員（ちょうど0%または100%）の値は、"
            f"参考値として{config.confidence_percent()}%信頼区間とともに公表し、注記「{EXTREME_NOTE}」を付ける（区間が標本から言える範囲を示す）。"
            f" / A share of exactly 0% or 100% on an unweighted base under {config.REFERENCE_BASE} is"
            " published as a reference value with its Wilson interval and a note, never read on its own.",
        ),
        (
            "都道府県値の出典 / area source",
            "当該年に県独自調査（全国調査と同じ調査票）がある県はその結果（source = own_survey）、"
            "ない県は全国調査の当該県回答者（national_subsample）。全国値は全国調査（national）、"
            "事業指標は事業データ（programme）。各行の注記に出典と回答者数（非表示の行は「"
            f"{config.MIN_BASE}人未満」または「非公表」）を記載。",
        ),
        (
            "16歳以上人口 / population 16+",
            f"推計値: 2020年国勢調査の総人口 × {POP_16PLUS_FACTOR}（全国の0～14歳 15,031,602人と15歳約107万人を除いた割合）。",
        ),
        ("推計の方法 / estimates", method_statement.text("estimates")),
        (
            "列 estimate_method, lead_value, lead_lower_ci95, lead_upper_ci95, lead_cv, lead_years",
            "報告書・サイトが表示する推計（上の規則で選んだもの）: direct（直接推計。value と同じ）、pooled（プール推計、"
            "lead_years の期間の全国調査の当該県回答者を合わせた値。回答者数は公表しない）、model（Fay–Herriot モデル推計。"
            f"回答者数の集計ではないため回答者数を持たない）。その値・{config.confidence_percent()}%区間（%）・変動係数（標準誤差÷値、比率、"
            f"小数第{CV_DECIMALS}位）。value・n_unweighted などの列と判定（comparison、change_vs_previous）は常に直接推計のもので、"
            "プール推計・モデル推計には判定を付けない。非表示（suppressed）の行にも pooled・model の値は載る（非表示の直接推計の値ではない）。"
            "モデルの係数・地域分散・縮小係数はデータ品質ページ。"
            " / The estimate reports and the site show, chosen by the rule above: direct (= value), pooled (the"
            " rounds in lead_years together; no base published) or model (Fay-Herriot; not a count, no base);"
            f" its value, {config.confidence_percent()}% interval and CV. The value, base and label columns stay those of the direct estimate.",
        ),
    ]
    lines += [(f"方法 {k}", v) for k, v in METHOD_DESCRIPTIONS.items()]
    return lines


SYNTHETIC_NOTE = (
    "【注意】合成データ / SYNTHETIC DATA",
    "この表は合成（架空）データから作成した見本です。実際の調査結果ではありません"
    "（データの各行の「合成データ」列が TRUE）。 / These figures are computed from synthetic sample data,"
    " not real survey results (the column 'synthetic' is TRUE on every row).",
)


def is_synthetic(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse holds synthetic data: any committed file marked synthetic, as the
    site's banner and the reports' watermark decide (True when the flag cannot be read: the
    statement is shown rather than silently dropped)."""
    return warehouse_db.synthetic_flag(con)


def columns_note() -> tuple[str, str]:
    """The notes sheets' line on how the data sheets and CSV files are laid out."""
    return (
        "列 / columns",
        f"{READING_JA}各列の意味・単位はシート「{DICTIONARY_SHEET}」と {DICTIONARY_FILE}。"
        f"値の単位は unit 列: percent=%、per_10k=16歳以上人口1万人当たり、flag=1/0。"
        f" / {READING_EN} Every column is described in the sheet '{DICTIONARY_SHEET}' and"
        f" {DICTIONARY_FILE}.",
    )


def notes_table(
    con: duckdb.DuckDBPyConnection, year: int | None, catalogue, synthetic: bool | None = None
) -> pd.DataFrame:
    """The notes sheet: the synthetic-data statement first (when the data are synthetic), the
    title, methods, the layout of the files, sources, the catalogue. ``year`` None: the workbook of
    every round. ``synthetic``: None reads it from the warehouse (``is_synthetic``)."""
    from pipelines.io.warehouse import previous_year, rounds

    files = pd.DataFrame(columns=["file_name", "kind", "survey_id", "survey_year", "synthetic"])
    has_files = warehouse_db.has_table(con, "files")
    if year is None:
        years = rounds(con)
        span = f"{years[0]}～{years[-1]}年（全調査回）" if years else "（調査回なし）"
        title = f"孤独・孤立対策 評価指標 {span} / Loneliness and isolation indicators, every round"
        if has_files:
            files = con.execute(
                "SELECT file_name, kind, survey_id, survey_year, synthetic FROM files "
                "ORDER BY kind, survey_year, file_name"
            ).df()
    else:
        prev = previous_year(con, year)
        title = f"孤独・孤立対策 評価指標 {year}年調査 / Loneliness and isolation indicators, {year}"
        if prev is not None:
            title += f"（前回比は {prev}年調査と比較 / change vs {prev}）"
        if has_files:
            files = con.execute(
                "SELECT file_name, kind, survey_id, survey_year, synthetic FROM files "
                "WHERE kind = 'programme' OR survey_year IN (?, ?) ORDER BY kind, survey_year, file_name",
                [year, prev if prev is not None else year],
            ).df()
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
        rows.append(
            (
                f"指標 {ind.id}",
                f"{ind.name_ja} / {ind.name_en}。{ind.pillar_label}。分母: {ind.denominator_ja or ind.denominator}。"
                f"{ind.description_ja}",
            )
        )
    return pd.DataFrame(rows, columns=["項目 (item)", "内容 (text)"])


def write_indicator_downloads(
    con: duckdb.DuckDBPyConnection, year: int | None, dest_dir: Path, area_code: str | None = None
) -> tuple[Path, Path]:
    """Write ``indicators-{year}.csv`` and ``.xlsx`` (or ``indicators-{year}-{area}.*`` with
    ``area_code``: that area's rows, national value in the same row) from the warehouse.
    ``year`` None: every round in one tidy table with its ``year`` column, ``indicators.csv|xlsx``
    (``indicators-{area}.*`` with ``area_code``)."""
    from pipelines.domain.catalogue import BREAKDOWNS_COMMON, BREAKDOWNS_UK, load_catalogue

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
    ind = (
        ind.assign(_i=ind.indicator_id.map(order), _b=ind.breakdown.map(bd_order))
        .sort_values(["year", "area_code", "_i", "_b"], kind="stable")
        .drop(columns=["_i", "_b"])
    )
    synthetic = is_synthetic(con)
    table = download_table(ind, catalogue, synthetic)
    stem = "-".join(["indicators"] + [str(year)] * (year is not None) + [area_code] * (area_code is not None))
    dest_dir = Path(dest_dir)
    csv = write_download_csv(table, dest_dir / f"{stem}.csv")
    notes = notes_table(con, year, catalogue, synthetic)
    xlsx = write_workbook(
        dest_dir / f"{stem}.xlsx",
        [
            (DATA_SHEET, *frame_sheet(table)),
            (NOTES_SHEET, text_sheet(notes.columns, notes.itertuples(index=False), [28, 120])),
            (DICTIONARY_SHEET, *dictionary_sheet()),
        ],
        bold=True,
    )
    return csv, xlsx


def write_downloads(
    year: int | None, warehouse: Path, out_dir: Path, years: list[int] | None = None, combined: bool = True
) -> list[Path]:
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
