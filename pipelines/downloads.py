"""Downloads for prefecture staff: CSV (UTF-8 with BOM, so Excel shows the Japanese) and XLSX
(one tidy sheet with readable headers plus a notes sheet: methods, sources, synthetic-data statement).

Text cells that a spreadsheet would read as a formula (starting with = + - @, tab or CR) are
neutralised by a leading apostrophe.

Workbooks (these and the per-prefecture ones of pipelines.site) are written by ``write_workbook``: the
worksheet XML openpyxl writes for the same cells, ~15x faster, and the same bytes for the same cells
(no timestamp inside, fixed zip member dates).

Published precision (``download_table``; the warehouse keeps full precision): shares, their
intervals, national / reference / previous values and differences to 0.1 percentage point; rates
per 10,000 to 0.01; effective sizes to 0.1; p-values to 3 significant digits. The tests of the
comparison and the change take the shares and effective sizes at this precision
(``published_share`` / ``published_n``, called by ``indicators``), so every label can be recomputed
from its download row with ``pipelines.stats.difference_test``.
"""

from __future__ import annotations

import math
import re
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb
import numpy as np
import pandas as pd

from . import conventions, schema
from . import warehouse as warehouse_db
from .audit import RULE_JA
from .errors import UsageError, check_pref_code, check_year

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Published precision (the warehouse keeps full precision): conventions, where the tests read it too.
from .conventions import (N_DECIMALS, P_DIGITS, RATE_DECIMALS, SHARE_DECIMALS,  # noqa: E402,F401
                          published_n, published_p, published_share)

SHARE_COLUMNS = ("value", "lower_ci95", "upper_ci95", "national_value", "reference_value", "difference",
                 "difference_lower_ci95", "difference_upper_ci95", "previous_value", "change_difference",
                 "change_lower_ci95", "change_upper_ci95", "lead_value", "lead_lower_ci95", "lead_upper_ci95")
# Columns in the indicator's own unit (a programme rate per 10,000 is rounded as a rate).
VALUE_UNIT_COLUMNS = ("value", "lower_ci95", "upper_ci95", "national_value", "lead_value", "lead_lower_ci95",
                      "lead_upper_ci95")
CV_DECIMALS = 3        # coefficient of variation (ratio)
N_COLUMNS = ("n_effective", "reference_n_effective", "previous_n_effective")
P_COLUMNS = ("p_value", "change_p_value")


def round_published(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of an indicators table (``schema.INDICATOR_COLUMNS``, any subset; a ``unit`` column or
    the catalogue gives each row's unit) at the published precision."""
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
    if "lead_cv" in out.columns:
        out["lead_cv"] = np.round(pd.to_numeric(out["lead_cv"], errors="coerce").to_numpy(dtype=float), CV_DECIMALS) + 0.0
    return out

# Readable headers for the XLSX sheet: Japanese with the contract name.
HEADERS_JA = {
    "year": "調査年 (year)",
    "area_code": "地域コード (area_code)",
    "area_name": "地域名 (area_name)",
    "indicator_id": "指標ID (indicator_id)",
    "indicator_name_ja": "指標名 (indicator_name_ja)",
    "indicator_name_en": "Indicator (indicator_name_en)",
    "unit": "単位 (unit)",
    "breakdown": "内訳 (breakdown)",
    "breakdown_ja": "内訳の説明 (breakdown_ja)",
    "value": "値 (value)",
    "lower_ci95": "95%信頼区間 下限 (lower_ci95)",
    "upper_ci95": "95%信頼区間 上限 (upper_ci95)",
    "n_unweighted": "回答者数 (n_unweighted)",
    "n_effective": "有効標本サイズ (n_effective)",
    "national_value": "全国値 (national_value)",
    "comparison": "全国との比較 (comparison)",
    "comparison_ja": "全国との比較 表示 (comparison_ja)",
    "change_vs_previous": "前回調査からの変化 (change_vs_previous)",
    "change_vs_previous_ja": "前回調査からの変化 表示 (change_vs_previous_ja)",
    "suppressed": "非表示 (suppressed)",
    "note": "注記 (note)",
    "source": "出典の種類 (source)",
    "previous_year": "前回調査年 (previous_year)",
    "source_changed": "前回と出典が異なる (source_changed)",
    "comparison_method": "全国との比較の方法 (comparison_method)",
    "change_method": "前回比の方法 (change_method)",
    "design_effect": "設計効果 (design_effect)",
    "reference_value": "比較の基準値 (reference_value)",
    "reference_n_effective": "基準値の有効標本サイズ (reference_n_effective)",
    "difference": "基準値との差 ポイント (difference)",
    "difference_lower_ci95": "差の95%信頼区間 下限 (difference_lower_ci95)",
    "difference_upper_ci95": "差の95%信頼区間 上限 (difference_upper_ci95)",
    "p_value": "Fisher正確検定のp値 (p_value)",
    "previous_value": "前回値 (previous_value)",
    "previous_n_effective": "前回の有効標本サイズ (previous_n_effective)",
    "change_difference": "前回との差 ポイント (change_difference)",
    "change_lower_ci95": "前回との差の95%信頼区間 下限 (change_lower_ci95)",
    "change_upper_ci95": "前回との差の95%信頼区間 上限 (change_upper_ci95)",
    "change_p_value": "前回比のFisher正確検定のp値 (change_p_value)",
    "estimate_method": "表示する推計の方法 (estimate_method)",
    "estimate_method_ja": "推計方法 表示 (estimate_method_ja)",
    "lead_value": "表示する推計値 (lead_value)",
    "lead_lower_ci95": "表示する推計値の95%区間 下限 (lead_lower_ci95)",
    "lead_upper_ci95": "表示する推計値の95%区間 上限 (lead_upper_ci95)",
    "lead_cv": "表示する推計値の変動係数 (lead_cv)",
    "lead_years": "プール推計の期間 (lead_years)",
}
UNIT_JA = {"percent": "%", "per_10k": "16歳以上人口1万人当たり", "flag": "1=あり 0=なし（全国行は%）"}


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
              bold_header: bool = False, dimension: bool = False) -> bytes:
    """The XML of one worksheet: ``rows`` (the first is the header) of str / int / float / bool /
    None (no cell); ``widths`` of the first columns; the header row frozen and/or bold (the bold
    style exists only in a workbook written with ``write_workbook(..., bold=True)``); a
    <dimension> element (as openpyxl writes for a workbook not in write-only mode)."""
    rows = [list(r) for r in rows]
    body = []
    # A cell's XML after its reference depends on its value only, and a sheet repeats values
    # (area names, indicator ids, labels): each distinct value is formatted once. The type is part
    # of the key, as 1, 1.0 and True are equal keys with different cells.
    tails: dict[tuple[type, Any], str] = {}
    for i, row in enumerate(rows, start=1):
        rs = str(i)
        style = ' s="1"' if bold_header and i == 1 else ""
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
            cells.append(f'<c r="{ref}"{style}{tail}')
        body.append(f'<row r="{rs}">{"".join(cells)}</row>' if cells else f'<row r="{rs}" />')
    head = [f'<worksheet xmlns="{_MAIN_NS}"><sheetPr><outlinePr summaryBelow="1" summaryRight="1" />'
            '<pageSetUpPr /></sheetPr>']
    if dimension:
        width = max((len(r) for r in rows), default=1) or 1
        head.append(f'<dimension ref="A1:{_col_letter(width - 1)}{max(len(rows), 1)}" />')
    if freeze_header:
        head.append('<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" '
                    'activePane="bottomLeft" state="frozen" /><selection pane="bottomLeft" activeCell="A1" '
                    'sqref="A1" /></sheetView></sheetViews>')
    else:
        head.append('<sheetViews><sheetView workbookViewId="0"><selection activeCell="A1" sqref="A1" />'
                    '</sheetView></sheetViews>')
    head.append('<sheetFormatPr baseColWidth="8" defaultRowHeight="15" />')
    if widths:
        head.append("<cols>" + "".join(f'<col width="{w:g}" customWidth="1" min="{k}" max="{k}" />'
                                       for k, w in enumerate(widths, start=1)) + "</cols>")
    xml = ("".join(head) + "<sheetData>" + "".join(body) + '</sheetData><pageMargins left="0.75" right="0.75" '
           'top="1" bottom="1" header="0.5" footer="0.5" /></worksheet>')
    return xml.encode("utf-8")


def _styles_xml(bold: bool) -> str:
    from openpyxl.styles.colors import COLOR_INDEX

    font = '<font><name val="Calibri" /><family val="2" /><color theme="1" /><sz val="11" /><scheme val="minor" /></font>'
    xf = '<xf numFmtId="0" fontId="{}" fillId="0" borderId="0" pivotButton="0" quotePrefix="0" xfId="0" />'
    fonts = f'<fonts count="2">{font}<font><b val="1" /></font></fonts>' if bold else f'<fonts count="1">{font}</fonts>'
    xfs = (f'<cellXfs count="2">{xf.format(0)}{xf.format(1)}</cellXfs>' if bold
           else f'<cellXfs count="1">{xf.format(0)}</cellXfs>')
    colors = "".join(f'<rgbColor rgb="{c}" />' for c in COLOR_INDEX[:64])
    return (f'<styleSheet xmlns="{_MAIN_NS}"><numFmts count="0" />{fonts}<fills count="2"><fill><patternFill />'
            '</fill><fill><patternFill patternType="gray125" /></fill></fills><borders count="1"><border><left />'
            '<right /><top /><bottom /><diagonal /></border></borders><cellStyleXfs count="1"><xf numFmtId="0" '
            f'fontId="0" fillId="0" borderId="0" /></cellStyleXfs>{xfs}<cellStyles count="1"><cellStyle '
            'name="Normal" xfId="0" builtinId="0" hidden="0" /></cellStyles><tableStyles count="0" '
            'defaultTableStyle="TableStyleMedium9" defaultPivotStyle="PivotStyleLight16" /><colors><indexedColors>'
            f'{colors}</indexedColors></colors></styleSheet>')


def workbook_bytes(sheets: Sequence[tuple[str, bytes]], bold: bool = False) -> dict[str, bytes]:
    """The package members (name -> bytes, in openpyxl's member order) of a workbook of ``sheets``
    ((title, ``sheet_xml`` bytes), titles <= 31 characters)."""
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
    for k, (_, xml) in enumerate(sheets, start=1):
        members[f"xl/worksheets/sheet{k}.xml"] = xml
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
                             for k, (title, _) in enumerate(sheets, start=1))
        + '</sheets><definedNames /><calcPr calcId="124519" fullCalcOnLoad="1" /></workbook>').encode()
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


def write_workbook(path: Path, sheets: Sequence[tuple[str, bytes]], bold: bool = False) -> Path:
    """Write an XLSX of ``sheets`` ((title, ``sheet_xml`` bytes)) atomically (tmp file + rename).
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


def download_table(indicators: pd.DataFrame, catalogue) -> pd.DataFrame:
    """The contract columns (in contract order) plus names joined from the catalogue and Japanese
    labels of the comparison columns, at the published precision (``round_published``)."""
    cat = {i.id: i for i in catalogue}
    df = indicators[schema.INDICATOR_COLUMNS].copy()
    df = round_published(df.assign(unit=df["indicator_id"].map(lambda i: cat[i].unit if i in cat else "")))
    df = df.drop(columns=["unit"])
    df.insert(4, "indicator_name_ja", df["indicator_id"].map(lambda i: cat[i].name_ja if i in cat else ""))
    df.insert(5, "indicator_name_en", df["indicator_id"].map(lambda i: cat[i].name_en if i in cat else ""))
    df.insert(6, "unit", df["indicator_id"].map(lambda i: cat[i].unit if i in cat else ""))
    df.insert(8, "breakdown_ja", df["breakdown"].map(_breakdown_ja))
    pos = df.columns.get_loc("comparison") + 1
    df.insert(pos, "comparison_ja", df["comparison"].map(schema.COMPARISON_LABELS))
    pos = df.columns.get_loc("change_vs_previous") + 1
    df.insert(pos, "change_vs_previous_ja", df["change_vs_previous"].map(schema.CHANGE_LABELS))
    pos = df.columns.get_loc("estimate_method") + 1
    df.insert(pos, "estimate_method_ja", [conventions.estimate_method_label(m, y) if isinstance(m, str) else ""
                                          for m, y in zip(df["estimate_method"], df["lead_years"])])
    return df


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
    from . import method_statement

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
                           f"{10 ** -RATE_DECIMALS:g}単位、有効標本サイズは{10 ** -N_DECIMALS:g}単位、p 値は有効数字{P_DIGITS}桁に丸めて公表"
                           "（データベースは丸める前の値を保持）。 / Shares, intervals, national, reference and previous"
                           f" values and differences are published to {10 ** -SHARE_DECIMALS:g} point, rates per 10,000 to"
                           f" {10 ** -RATE_DECIMALS:g}, effective sizes to {10 ** -N_DECIMALS:g}, p-values to {P_DIGITS}"
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


def notes_table(con: duckdb.DuckDBPyConnection, year: int | None, catalogue) -> pd.DataFrame:
    """The notes sheet: methods, sources, synthetic-data statement, the catalogue. ``year`` None:
    the workbook of every round."""
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
    synthetic = bool(files["synthetic"].astype(bool).any()) if len(files) else False
    rows: list[tuple[str, str]] = [("表題 / Title", title)]
    if synthetic:
        rows.append(("【注意】合成データ / SYNTHETIC DATA",
                     "この表は合成（架空）データから作成した見本です。実際の調査結果ではありません。"
                     " / These figures are computed from synthetic sample data, not real survey results."))
    rows += method_notes()
    rows.append(("列 / columns", "CSVの列名はデータ契約の列名（year, area_code, …）。値の単位は unit 列: percent=%、"
                                 "per_10k=16歳以上人口1万人当たり、flag=1/0。year は調査年（事業データは年度）。"))
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
    table = download_table(ind, catalogue)
    stem = "-".join(["indicators"] + [str(year)] * (year is not None) + [area_code] * (area_code is not None))
    dest_dir = Path(dest_dir)
    csv = write_csv(table, dest_dir / f"{stem}.csv")
    xlsx = write_xlsx({"指標 (indicators)": table.rename(columns=HEADERS_JA),
                       "注記 (notes)": notes_table(con, year, catalogue)}, dest_dir / f"{stem}.xlsx")
    return csv, xlsx


def write_downloads(year: int | None, warehouse: Path, out_dir: Path, years: list[int] | None = None,
                    combined: bool = True) -> list[Path]:
    """``out_dir/downloads/indicators.csv|xlsx`` (every round; unless ``combined`` is False) and
    ``indicators-{y}.csv|xlsx`` for each round in ``years`` (default: every round in the warehouse
    tables). ``year`` is kept for callers: every round is written."""
    con = warehouse_db.connect(warehouse)
    try:
        if years is None:
            years = [int(r[0]) for r in con.execute("SELECT DISTINCT year FROM indicators ORDER BY 1").fetchall()]
        paths = list(write_indicator_downloads(con, None, Path(out_dir) / "downloads")) if combined else []
        for y in years:
            paths += write_indicator_downloads(con, y, Path(out_dir) / "downloads")
        return paths
    finally:
        con.close()
