"""Everything XLSX: column letters, the formula-injection guard on cell text, the workbook writer,
the worksheet reader of the disclosure check, and the checks on an input file before openpyxl opens it.

**Column letters.** ``column_letter`` (0 -> A, 25 -> Z, 26 -> AA) and ``column_index`` (its inverse,
0-based) are the package's only conversions between column numbers and letters.

**Formula injection.** Text that a spreadsheet would read as a formula (starting with = + - @, tab or
CR) gets a leading apostrophe: ``neutralise`` (one value) and ``neutralise_frame`` (every text cell of
a DataFrame, vectorised; the same rule).

**Writer.** ``write_workbook`` writes the workbooks the site publishes (downloads, per-prefecture
files): each worksheet (``sheet_xml``) is the XML openpyxl 3.1 writes for the same cells, faster,
and the bytes depend only on the cells (no timestamp inside, fixed zip member dates).

**Reader.** ``read_sheets`` reads the cell texts of every sheet of a workbook (the disclosure check
reads every download of every build): a direct read of the sheet XML, faster than openpyxl.
``open_workbook`` opens an input file with openpyxl after ``check_archive_once``.

**Guard** (issue #15). An XLSX file is a zip of XML parts. A small file can expand to gigabytes (a
"zip bomb": a few MB of shared strings), and openpyxl
keeps every shared string in memory. ``check_archive`` looks only at the zip's central directory and
streams the shared-strings part through expat with counters, stopping at the first limit passed:

* the sum of the members' uncompressed sizes (``TSUNAGARI_MAX_XLSX_BYTES``, setting max_xlsx_bytes, default 1,000,000,000);
* the compression ratio of any member larger than 1 MiB (``TSUNAGARI_MAX_XLSX_RATIO``, default 100;
  real worksheets compress about 10:1, a bomb about 1000:1);
* the number of shared strings (``TSUNAGARI_MAX_XLSX_STRINGS``, default 2,000,000) and their total
  length in characters (``TSUNAGARI_MAX_XLSX_STRING_CHARS``, default 100,000,000);
* no part parsed here may declare a DTD (XLSX never does; entity expansion is how XML bombs work).

Python's zipfile never inflates a member past its declared size (it stops there and the CRC check
fails), so declared sizes bound what openpyxl can read.

``uncached_formulas`` finds formula cells of a worksheet without a stored result: openpyxl
(``data_only=True``) reads them as blank, which silently turned good values into NULL. A formula
cell *with* a stored result is read as that result (what Excel showed when the file was saved).
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence
from xml.parsers import expat

import numpy as np
import pandas as pd

from pipelines.domain import config
from pipelines.domain.errors import RULE_UNREADABLE, DataError

_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"


# --- Column letters --------------------------------------------------------------------------------


def column_letter(i: int) -> str:
    """The letters of the 0-based column ``i``: 0 -> A, 25 -> Z, 26 -> AA, 16383 -> XFD."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def column_index(ref: str) -> int:
    """The 0-based column of a reference's leading letters: 'A' -> 0, 'AA' -> 26, 'B12' -> 1 ('' -> -1)."""
    k = 0
    for ch in ref:
        if not ch.isalpha():
            break
        k = k * 26 + (ord(ch.upper()) - 64)
    return k - 1


# The first 256 columns' letters (the writer's and the reader's per-cell table); a list, as the reader
# compares a row's letters, a list, with a slice of it.
COLUMN_LETTERS = [column_letter(i) for i in range(256)]


# --- Formula injection -----------------------------------------------------------------------------

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """One cell: text that a spreadsheet would read as a formula (= + - @, tab, CR first) gets a
    leading apostrophe; anything else is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` whose text cells are ``neutralise``d (vectorised per column)."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            try:  # vectorised; a cell that is not text gives NA here (and is left alone)
                hit = s.str.startswith(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)
            except AttributeError:  # an object column without text
                hit = None
            s = s.astype(object)
            if hit is not None and hit.any():
                s = s.copy()
                s[hit] = "'" + s[hit]
            out[col] = s
    return out


# --- Writer ------------------------------------------------------------------------------------


def write_xlsx(sheets: dict[str, pd.DataFrame], path: Path) -> Path:
    """One sheet per entry, header frozen, columns sized to their header.

    The cells are what ``DataFrame.to_excel(index=False)`` writes (missing values as empty text
    cells, +-inf as 'inf'/'-inf', numbers as numbers, booleans as booleans), written by
    ``write_workbook`` (faster than pandas + openpyxl; same sheet XML; deterministic bytes)."""
    parts = []
    for name, df in sheets.items():
        safe = neutralise_frame(df)
        widths = [max(10, min(60, len(str(col)) + 4)) for col in safe.columns]
        rows = [list(safe.columns), *frame_rows(safe)]
        parts.append((name, sheet_xml(rows, widths, freeze_header=True, dimension=True)))
    return write_workbook(path, parts)


def frame_rows(df: pd.DataFrame) -> list[list[Any]]:
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


def _display_width(v: Any) -> int:
    """Roughly the width of a cell's text in Excel's units (a Japanese character counts two)."""
    if v is None or v == "":
        return 0
    s = v if isinstance(v, str) else ("%.16g" % v if isinstance(v, float) else str(v))
    return (len(s) + len(s.encode("utf-8"))) // 2


WIDTH_SAMPLE = 500  # rows whose values size the columns (evenly spread over the sheet)


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


def data_sheet(
    headers: list[list[str]], rows: list[list[Any]], widths: Sequence[float] | None = None
) -> tuple[bytes, str]:
    """(sheet XML, autofilter range) of a data sheet: row 1 the Japanese headers (bold, wrapped),
    row 2 the column codes (a secondary style), both frozen, an autofilter on the code row over
    the data, column widths from ``column_widths``."""
    if widths is None:
        widths = column_widths(headers, rows)
    ncol = max(1, len(headers[0]))
    ref = f"A{len(headers)}:{column_letter(ncol - 1)}{len(headers) + max(len(rows), 1)}"
    return sheet_xml(
        [*headers, *rows],
        widths,
        freeze_header=True,
        bold_header=True,
        dimension=True,
        header_rows=len(headers),
        autofilter=ref,
        bool_style=True,
    ), ref


def text_sheet(header: Sequence[str], rows: Iterable[Sequence[Any]], widths: Sequence[float]) -> bytes:
    """A sheet of text (notes, the dictionary): a bold header row, frozen."""
    return sheet_xml(
        [list(header), *([neutralise(v) for v in r] for r in rows)], widths, freeze_header=True, bold_header=True
    )


# A small writer for the two kinds of workbooks the site publishes (text, numbers, booleans; a bold
# header; frozen first row; column widths). Each worksheet is the same XML that openpyxl 3.1 writes
# for the same cells (inline strings, '%.16g' numbers, the same element order), so any reader that
# reads openpyxl's files reads these. It is much faster than openpyxl's per-cell element
# serialisation, and the bytes depend only on the cells: no timestamp in docProps/core.xml and a
# fixed date (1980-01-01) on every zip member.

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_XLSX_ERRORS = frozenset(("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"))
_ILLEGAL_XML = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")  # as openpyxl refuses
_MAX_TEXT = 32767  # Excel's cell limit (openpyxl truncates likewise)


def _text(s: str) -> str:
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    return s


def _attr(s: str) -> str:
    return _text(s).replace('"', "&quot;").replace("\r", "&#13;").replace("\n", "&#10;").replace("\t", "&#09;")


def _cell_tail(ref: str, v: Any) -> str:
    """What follows ``<c r="{ref}"{style}`` in the cell of ``v``; it depends on ``v`` only (``ref``
    names the cell in an error)."""
    if isinstance(v, str):
        if len(v) > _MAX_TEXT:
            v = v[:_MAX_TEXT]
        if _ILLEGAL_XML.search(v):
            raise ValueError(f"{ref}: text with a control character cannot be written to a worksheet: {v!r}")
        if v.startswith("=") and len(v) > 1:  # callers neutralise text; never write a formula
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


def sheet_xml(
    rows: Iterable[Sequence[Any]],
    widths: Sequence[int | float] = (),
    *,
    freeze_header: bool = False,
    bold_header: bool = False,
    dimension: bool = False,
    header_rows: int = 1,
    autofilter: str | None = None,
    bool_style: bool = False,
) -> bytes:
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
            ref = (COLUMN_LETTERS[j] if j < len(COLUMN_LETTERS) else column_letter(j)) + rs
            if v is None:
                if style:
                    cells.append(f'<c r="{ref}"{style} t="n" />')
                continue
            key = (v.__class__, v)
            try:
                tail = tails[key]
            except KeyError:
                tail = tails[key] = _cell_tail(ref, v)
            except TypeError:  # an unhashable value: _cell_tail names the cell
                tail = _cell_tail(ref, v)
            if bool_style and not style and v.__class__ is bool:
                cells.append(f'<c r="{ref}" s="3"{tail}')
                continue
            cells.append(f'<c r="{ref}"{style}{tail}')
        attrs = two_line if i == 1 else ""
        body.append(f'<row r="{rs}"{attrs}>{"".join(cells)}</row>' if cells else f'<row r="{rs}"{attrs} />')
    head = [
        f'<worksheet xmlns="{_MAIN_NS}"><sheetPr><outlinePr summaryBelow="1" summaryRight="1" />'
        "<pageSetUpPr /></sheetPr>"
    ]
    if dimension:
        width = max((len(r) for r in rows), default=1) or 1
        head.append(f'<dimension ref="A1:{column_letter(width - 1)}{max(len(rows), 1)}" />')
    if freeze_header:
        head.append(
            f'<sheetViews><sheetView workbookViewId="0"><pane ySplit="{header_rows}" '
            f'topLeftCell="A{header_rows + 1}" activePane="bottomLeft" state="frozen" /><selection '
            'pane="bottomLeft" activeCell="A1" sqref="A1" /></sheetView></sheetViews>'
        )
    else:
        head.append(
            '<sheetViews><sheetView workbookViewId="0"><selection activeCell="A1" sqref="A1" />'
            "</sheetView></sheetViews>"
        )
    head.append('<sheetFormatPr baseColWidth="8" defaultRowHeight="15" />')
    if widths:
        head.append(
            "<cols>"
            + "".join(
                f'<col width="{w:g}" customWidth="1" min="{k}" max="{k}" />' for k, w in enumerate(widths, start=1)
            )
            + "</cols>"
        )
    tail = f'<autoFilter ref="{autofilter}" />' if autofilter else ""
    xml = (
        "".join(head) + "<sheetData>" + "".join(body) + f'</sheetData>{tail}<pageMargins left="0.75" right="0.75" '
        'top="1" bottom="1" header="0.5" footer="0.5" /></worksheet>'
    )
    return xml.encode("utf-8")


def _styles_xml(bold: bool) -> str:
    """The stylesheet: the default cell style; with ``bold`` also the header styles: 1 bold on a light
    fill, wrapped, top-aligned (the first header row), 2 grey italic on a grey fill (the row of
    column codes), and 3 a boolean's number format (TRUE / FALSE)."""
    from openpyxl.styles.colors import COLOR_INDEX

    font = (
        '<font><name val="Calibri" /><family val="2" /><color theme="1" /><sz val="11" /><scheme val="minor" /></font>'
    )
    xf = '<xf numFmtId="0" fontId="{}" fillId="0" borderId="0" pivotButton="0" quotePrefix="0" xfId="0" />'
    fills = '<fill><patternFill /></fill><fill><patternFill patternType="gray125" /></fill>'
    if bold:
        fonts = (
            f'<fonts count="3">{font}<font><b val="1" /></font><font><i val="1" /><color rgb="FF595959" />'
            '<sz val="10" /></font></fonts>'
        )
        fills = (
            f'<fills count="4">{fills}<fill><patternFill patternType="solid"><fgColor rgb="FFDDEBF7" />'
            '</patternFill></fill><fill><patternFill patternType="solid"><fgColor rgb="FFF2F2F2" />'
            "</patternFill></fill></fills>"
        )
        numfmts = '<numFmts count="1"><numFmt numFmtId="164" formatCode="&quot;TRUE&quot;;&quot;TRUE&quot;;&quot;FALSE&quot;" /></numFmts>'
        xfs = (
            '<cellXfs count="4">'
            + xf.format(0)
            + '<xf numFmtId="0" fontId="1" fillId="2" borderId="0" applyFont="1" applyFill="1" applyAlignment="1" '
            'pivotButton="0" quotePrefix="0" xfId="0"><alignment vertical="top" wrapText="1" /></xf>'
            + '<xf numFmtId="0" fontId="2" fillId="3" borderId="0" applyFont="1" applyFill="1" pivotButton="0" '
            'quotePrefix="0" xfId="0" />'
            + '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" applyNumberFormat="1" pivotButton="0" '
            'quotePrefix="0" xfId="0" /></cellXfs>'
        )
    else:
        numfmts = '<numFmts count="0" />'
        fonts = f'<fonts count="1">{font}</fonts>'
        fills = f'<fills count="2">{fills}</fills>'
        xfs = f'<cellXfs count="1">{xf.format(0)}</cellXfs>'
    colors = "".join(f'<rgbColor rgb="{c}" />' for c in COLOR_INDEX[:64])
    return (
        f'<styleSheet xmlns="{_MAIN_NS}">{numfmts}{fonts}{fills}<borders count="1"><border><left />'
        '<right /><top /><bottom /><diagonal /></border></borders><cellStyleXfs count="1"><xf numFmtId="0" '
        f'fontId="0" fillId="0" borderId="0" /></cellStyleXfs>{xfs}<cellStyles count="1"><cellStyle '
        'name="Normal" xfId="0" builtinId="0" hidden="0" /></cellStyles><tableStyles count="0" '
        'defaultTableStyle="TableStyleMedium9" defaultPivotStyle="PivotStyleLight16" /><colors><indexedColors>'
        f"{colors}</indexedColors></colors></styleSheet>"
    )


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
        "docProps/app.xml": (
            '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/'
            'extended-properties"><Application>Microsoft Excel Compatible / tsunagari'
            "</Application></Properties>"
        ).encode(),
        # No created/modified date: the bytes of a workbook depend only on its cells.
        "docProps/core.xml": (
            '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
            'metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            'xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:creator>tsunagari'
            "</dc:creator></cp:coreProperties>"
        ).encode(),
        "xl/theme/theme1.xml": theme_xml.encode("utf-8"),
    }
    for k, (_, xml, *_rest) in enumerate(sheets, start=1):
        members[f"xl/worksheets/sheet{k}.xml"] = xml
    names = "".join(
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="{k}" hidden="1">'
        f"{_text(_sheet_ref(title, rest[0]))}</definedName>"
        for k, (title, _, *rest) in enumerate(sheets)
        if rest and rest[0]
    )
    defined = f"<definedNames>{names}</definedNames>" if names else "<definedNames />"
    members["xl/styles.xml"] = _styles_xml(bold).encode()
    members["_rels/.rels"] = (
        f'<Relationships xmlns="{_PKG_REL_NS}"><Relationship Type="{_REL_NS}/officeDocument" '
        'Target="xl/workbook.xml" Id="rId1" /><Relationship Type="http://schemas.openxmlformats.org/package/'
        '2006/relationships/metadata/core-properties" Target="docProps/core.xml" Id="rId2" /><Relationship '
        f'Type="{_REL_NS}/extended-properties" Target="docProps/app.xml" Id="rId3" /></Relationships>'
    ).encode()
    members["xl/workbook.xml"] = (
        f'<workbook xmlns:r="{_REL_NS}" xmlns="{_MAIN_NS}"><workbookPr /><workbookProtection /><bookViews>'
        '<workbookView visibility="visible" minimized="0" showHorizontalScroll="1" showVerticalScroll="1" '
        'showSheetTabs="1" tabRatio="600" firstSheet="0" activeTab="0" autoFilterDateGrouping="1" /></bookViews>'
        "<sheets>"
        + "".join(
            f'<sheet name="{_attr(title)}" sheetId="{k}" state="visible" r:id="rId{k}" />'
            for k, (title, *_) in enumerate(sheets, start=1)
        )
        + f'</sheets>{defined}<calcPr calcId="124519" fullCalcOnLoad="1" /></workbook>'
    ).encode()
    members["xl/_rels/workbook.xml.rels"] = (
        f'<Relationships xmlns="{_PKG_REL_NS}">'
        + "".join(
            f'<Relationship Type="{_REL_NS}/worksheet" Target="/xl/worksheets/sheet{k}.xml" Id="rId{k}" />'
            for k in range(1, n + 1)
        )
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
        + "".join(
            f'<Override PartName="/xl/worksheets/sheet{k}.xml" ContentType="{ct}.spreadsheetml.worksheet+xml" />'
            for k in range(1, n + 1)
        )
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


# --- Reader ------------------------------------------------------------------------------------

_NS = "{" + _MAIN_NS + "}"
_RNS = "{" + _REL_NS + "}"

# Fast path for a worksheet's cells: regular expressions over XML that expat has already accepted
# as well formed, for the plain markup every writer we publish with produces (no namespace prefix,
# no DTD, CDATA, comment or processing instruction inside; UTF-8). Anything else goes through
# ElementTree, which gives the same cells (tests compare both on every published workbook).
_XATTRS = r"((?:\s+[A-Za-z_][\w.\-:]*\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*"
_XROW = re.compile(r"<row" + _XATTRS + r"(?:/>|>(.*?)</row>)", re.S)
_XCELL = re.compile(r"<c" + _XATTRS + r"(?:/>|>(.*?)</c>)", re.S)
_XATTR = re.compile(r"([A-Za-z_][\w.\-:]*)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_XV = re.compile(r"<v" + _XATTRS + r"(?:/>|>(.*?)</v>)", re.S)
_XT = re.compile(r"<t" + _XATTRS + r"(?:/>|>(.*?)</t>)", re.S)
_XUNSAFE = re.compile(r"<[A-Za-z_][\w.\-]*:|<!|<\?(?!xml[\s?])|<\?xml[^>]*encoding=[\"'](?!utf-?8[\"'])", re.I)
_XENTITY = re.compile(r"&(?:(lt|gt|amp|quot|apos)|#([0-9]+)|#x([0-9A-Fa-f]+));")
_XNAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_REF = re.compile(r"([A-Z]+)[0-9]+")
_XROOT = re.compile(
    r"^(?:<\?xml[^>]*\?>)?\s*<worksheet\s[^>]*xmlns=\"http://schemas\.openxmlformats\.org/"
    r"spreadsheetml/2006/main\""
)
_COLS: dict[str, int] = {}
# The cells as openpyxl (and sheet_xml) write them; a row made only of these is read by
# one regular expression, any other row by the general expressions above.
_XSTRICT_CELL = (
    r'<c r="([A-Z]{1,3})[0-9]+"(?: s="[0-9]+")?(?: t="([A-Za-z]+)")?'
    r'(?: />|/>|>(?:(<v>[^<]*</v>|<v ?/>)|<is><t(?: xml:space="preserve")?>([^<]*)</t></is>)</c>)'
)
_XSTRICT_ROW = re.compile(f"(?:{_XSTRICT_CELL})*")
_XSTRICT = re.compile(_XSTRICT_CELL)


def _xunescape(text: str) -> str:
    if "&" not in text:
        return text
    return _XENTITY.sub(
        lambda m: _XNAMED[m.group(1)] if m.group(1) else chr(int(m.group(2) or m.group(3), 10 if m.group(2) else 16)),
        text,
    )


def _xattrs(text: str) -> dict[str, str]:
    return {m[0]: _xunescape(m[1] if m[1] or not m[2] else m[2]) for m in _XATTR.findall(text)}


def sheet_rows_fast(data: bytes, shared: list[str]) -> list[list[str]] | None:
    """The rows of a worksheet, or None when the fast path does not apply."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    root = _XROOT.search(text)
    if root is None or text.count("xmlns=") != 1 or _XUNSAFE.search(text):
        return None
    try:
        expat.ParserCreate().Parse(data, True)  # well formed (the ElementTree path would raise)
    except expat.ExpatError:
        return None
    if "\r" in text:  # XML end-of-line handling, before character references are expanded
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    rows: list[list[str]] = []
    cols = _COLS
    for m in _XROW.finditer(text):
        content = m.group(2) or ""
        if _XSTRICT_ROW.fullmatch(content):
            cells = _XSTRICT.findall(content)
            if 't="s"' not in content and [c[0] for c in cells] == COLUMN_LETTERS[: len(cells)]:
                # cells A, B, C, ... without a gap or a shared string (every row we write): one
                # comprehension, the same values as the loop below
                rows.append(
                    [
                        (_xunescape(is_t) if "&" in is_t else is_t)
                        if t == "inlineStr"
                        else ((_xunescape(v[3:-4]) if "&" in v else v[3:-4]) if len(v) > 7 else "")
                        for _, t, v, is_t in cells
                    ]
                )
                continue
            row = []
            for letters, t, v, is_t in cells:  # v: the <v> element or ""
                if t == "inlineStr":
                    value = _xunescape(is_t)
                elif t == "s" and v:
                    if len(v) <= 7:  # an empty <v>: no index (ElementTree's int(None) raises too)
                        raise ValueError(f"shared-string cell {letters} without an index")
                    value = shared[int(_xunescape(v[3:-4]))]
                else:
                    value = _xunescape(v[3:-4]) if len(v) > 7 else ""
                i = cols.get(letters)
                if i is None:
                    i = cols[letters] = column_index(letters)
                if i >= len(row):
                    row += [""] * (i + 1 - len(row))
                row[i] = value
            rows.append(row)
            continue
        row = []
        for c in _XCELL.finditer(content):
            attrs = _xattrs(c.group(1))
            cell = c.group(2) or ""
            t = attrs.get("t")
            if t == "inlineStr":
                value = "".join(_xunescape(x.group(2) or "") for x in _XT.finditer(cell))
            else:
                v = _XV.search(cell)
                raw = None if v is None or v.group(2) is None else _xunescape(v.group(2))
                if t == "s" and v is not None:
                    value = shared[int(raw)]  # as the ElementTree path: int(None) raises
                else:
                    value = raw or ""
            ref = attrs.get("r")
            if ref:
                k = _REF.fullmatch(ref)
                if k is None:
                    i = column_index(ref)
                else:
                    i = cols.get(k.group(1))
                    if i is None:
                        i = cols[k.group(1)] = column_index(k.group(1))
            else:
                i = len(row)
            row += [""] * (i + 1 - len(row))
            row[i] = value
        rows.append(row)
    return rows


def sheet_rows_et(stream, shared: list[str]) -> list[list[str]]:
    rows: list[list[str]] = []
    for _, el in ET.iterparse(stream):
        if el.tag != f"{_NS}row":
            continue
        row: list[str] = []
        for c in el.iter(f"{_NS}c"):
            t, v = c.get("t"), c.find(f"{_NS}v")
            if t == "s" and v is not None:
                text = shared[int(v.text)]
            elif t == "inlineStr":
                text = "".join(x.text or "" for x in c.iter(f"{_NS}t"))
            else:
                text = "" if v is None or v.text is None else v.text
            i = column_index(c.get("r", "")) if c.get("r") else len(row)
            row += [""] * (i + 1 - len(row))
            row[i] = text
        rows.append(row)
        el.clear()
    return rows


def read_sheets(path: Path, fast: bool = True, known=()) -> list[tuple[str, list[list[str]] | None, str]]:
    """(sheet name, rows of cell texts, digest of the sheet's XML and shared strings) of every sheet:
    a direct read of the sheet XML, faster than openpyxl (the check reads every download of
    every build). A sheet whose digest is in ``known`` is not read (rows None). ``fast=False``:
    ElementTree only (the reference the fast path is tested against)."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        shared: list[str] = []
        shared_digest = ""
        if "xl/sharedStrings.xml" in names:
            raw = z.read("xl/sharedStrings.xml")
            shared_digest = hashlib.sha256(raw).hexdigest()
            root = ET.fromstring(raw)
            shared = ["".join(t.text or "" for t in si.iter(f"{_NS}t")) for si in root.iter(f"{_NS}si")]
        rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        targets = {r.get("Id"): r.get("Target") for r in rels}
        wb = ET.fromstring(z.read("xl/workbook.xml"))
        out = []
        for sh in wb.iter(f"{_NS}sheet"):
            target = targets.get(sh.get(f"{_RNS}id"), "")
            member = target.lstrip("/") if target.startswith("/") else posixpath.normpath("xl/" + target)
            data = z.read(member)
            digest = hashlib.sha256(data).hexdigest() + shared_digest
            rows = None
            if digest not in known:
                rows = sheet_rows_fast(data, shared) if fast else None
                if rows is None:
                    rows = sheet_rows_et(z.open(member), shared)
            out.append((sh.get("name", ""), rows, digest))
    return out


# --- Guard: checks on an input file before openpyxl opens it ------------------------------------

RULE_LIMIT = "XLSX over a safety limit / XLSXが安全上の上限を超えています"
RULE_FORMULA = "formula without a stored result / 計算結果が保存されていない数式"
DETAIL_FORMULA = (
    "the file was saved without the formulas' results (e.g. written by a program): open it in Excel and "
    "save it again, or paste the cells as values / 数式の計算結果が保存されていません。Excelで開いて"
    "保存し直すか、値として貼り付けてください"
)

LIMITS = {  # key: (setting of pipelines/domain/config.py, what)
    "bytes": ("max_xlsx_bytes", "bytes uncompressed"),
    "ratio": ("max_xlsx_ratio", "compression ratio"),
    "strings": ("max_xlsx_strings", "shared strings"),
    "chars": ("max_xlsx_string_chars", "characters of shared strings"),
}
RATIO_MIN_MEMBER = 1 << 20  # the ratio is checked on members larger than this
_CHUNK = 1 << 20
_SST_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"


def limits() -> dict[str, int]:
    """The limits, from the settings (read at call time; a bad value is a SettingsError, exit 2)."""
    from pipelines.domain.config import settings

    s = settings()
    return {key: getattr(s, name) for key, (name, _) in LIMITS.items()}


def _over(file_name: str, key: str, got: str, limit: int, where: str) -> DataError:
    from pipelines.domain.config import BY_NAME

    name, what = LIMITS[key]
    env = BY_NAME[name].env
    return DataError(
        file_name,
        RULE_LIMIT,
        detail=f"{where}: {got} > limit {limit:,} {what} ({env}); refused before reading / "
        f"上限 {limit:,} を超えているため読み込みません（{env}）",
    )


class _Stop(Exception):
    """Raised from an expat handler to stop parsing with an error."""

    def __init__(self, error: DataError) -> None:
        self.error = error


def _no_dtd(file_name: str, member: str):
    def handler(*_args) -> None:
        raise _Stop(
            DataError(
                file_name,
                RULE_LIMIT,
                detail=f"{member}: an XML document type declaration (DTD), which XLSX never has / "
                "XLSXにないはずのDTD宣言があります",
            )
        )

    return handler


def _parse(zf: zipfile.ZipFile, member: str, parser) -> None:
    with zf.open(member) as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            parser.Parse(chunk, False)
    parser.Parse(b"", True)


def _local(name: str) -> str:
    return name.rsplit(" ", 1)[-1]


def _shared_string_parts(zf: zipfile.ZipFile, file_name: str) -> list[str]:
    names = set(zf.namelist())
    parts = {n for n in names if PurePosixPath(n).name.lower() == "sharedstrings.xml"}
    if "[Content_Types].xml" in names and zf.getinfo("[Content_Types].xml").file_size < _CHUNK:
        p = expat.ParserCreate(namespace_separator=" ")
        p.StartDoctypeDeclHandler = _no_dtd(file_name, "[Content_Types].xml")

        def start(name, attrs):
            if _local(name) == "Override" and attrs.get("ContentType") == _SST_TYPE:
                part = attrs.get("PartName", "").lstrip("/")
                if part in names:
                    parts.add(part)

        p.StartElementHandler = start
        _parse(zf, "[Content_Types].xml", p)
    return sorted(parts)


def _check_strings(zf: zipfile.ZipFile, member: str, file_name: str, lim: dict[str, int]) -> None:
    count = chars = 0
    in_t = 0
    p = expat.ParserCreate(namespace_separator=" ")
    p.StartDoctypeDeclHandler = _no_dtd(file_name, member)

    def start(name, attrs):
        nonlocal count, in_t
        local = _local(name)
        if local == "si":
            count += 1
            if count > lim["strings"]:
                raise _Stop(
                    _over(file_name, "strings", f"more than {lim['strings']:,} strings", lim["strings"], member)
                )
        elif local == "t":
            in_t += 1

    def end(name):
        nonlocal in_t
        if _local(name) == "t":
            in_t -= 1

    def text(data):
        nonlocal chars
        if in_t:
            chars += len(data)
            if chars > lim["chars"]:
                raise _Stop(_over(file_name, "chars", f"more than {lim['chars']:,} characters", lim["chars"], member))

    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, text
    _parse(zf, member, p)


def check_archive(path, file_name: str) -> None:
    """Refuse an XLSX whose expanded size, compression ratio or shared strings pass the limits.
    A file that is not a zip at all is left to the reader (which reports it as unreadable)."""
    lim = limits()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return
    with zf:
        infos = zf.infolist()
        total = sum(i.file_size for i in infos)
        if total > lim["bytes"]:
            big = max(infos, key=lambda i: i.file_size)
            raise _over(
                file_name,
                "bytes",
                f"{total:,} bytes in all",
                lim["bytes"],
                f"{len(infos)} parts, the largest {big.filename!r} ({big.compress_size:,} bytes "
                f"expanding to {big.file_size:,})",
            )
        for i in infos:
            if i.file_size > RATIO_MIN_MEMBER and i.file_size > lim["ratio"] * max(i.compress_size, 1):
                ratio = i.file_size / max(i.compress_size, 1)
                raise _over(
                    file_name,
                    "ratio",
                    f"{ratio:,.0f}:1",
                    lim["ratio"],
                    f"{i.filename!r} expands from {i.compress_size:,} to {i.file_size:,} bytes",
                )
        try:
            for member in _shared_string_parts(zf, file_name):
                _check_strings(zf, member, file_name, lim)
        except _Stop as stop:
            raise stop.error from None
        except (expat.ExpatError, zipfile.BadZipFile, OSError, EOFError, ValueError):
            return  # corrupt: the reader reports it


# --- Formulas without a stored result ------------------------------------------------------------


@dataclass
class FormulaCell:
    ref: str  # A1 reference
    row: int  # 1-based sheet row
    col: int  # 1-based column


_REF_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?(\d+)$")
_FORMULA_TAGS = (b"<f>", b"<f ", b"<f/", b":f>", b":f ", b":f/")


def _sheet_part(zf: zipfile.ZipFile, title: str, file_name: str) -> str | None:
    """The zip member of the worksheet called ``title`` (xl/workbook.xml and its relationships)."""
    rid = None
    p = expat.ParserCreate(namespace_separator=" ")
    p.StartDoctypeDeclHandler = _no_dtd(file_name, "xl/workbook.xml")

    def start(name, attrs):
        nonlocal rid
        if _local(name) == "sheet" and attrs.get("name") == title and rid is None:
            rid = attrs.get(f"{_REL_NS} id")

    p.StartElementHandler = start
    _parse(zf, "xl/workbook.xml", p)
    if rid is None:
        return None
    target = None
    r = expat.ParserCreate(namespace_separator=" ")
    r.StartDoctypeDeclHandler = _no_dtd(file_name, "xl/_rels/workbook.xml.rels")

    def start_rel(name, attrs):
        nonlocal target
        if _local(name) == "Relationship" and attrs.get("Id") == rid:
            target = attrs.get("Target")

    r.StartElementHandler = start_rel
    _parse(zf, "xl/_rels/workbook.xml.rels", r)
    if not target:
        return None
    part = target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
    return part if part in set(zf.namelist()) else None


def _has_formula_tag(zf: zipfile.ZipFile, member: str) -> bool:
    """Whether the part may hold an <f> element (plain byte searches; a false alarm only costs a parse)."""
    tail = b""
    with zf.open(member) as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            data = tail + chunk
            if any(tag in data for tag in _FORMULA_TAGS):
                return True
            tail = chunk[-4:]
    return False


def uncached_formulas(path, sheet_title: str, file_name: str, min_row: int = 1) -> tuple[list[FormulaCell], int]:
    """(first 100,000 cells, total) of formula cells at or below ``min_row`` of the sheet that have no
    stored result: a ``<f>`` without ``<v>``, or with an empty ``<v>`` unless the result type is a
    string (``t="str"``, an empty text result). Sheets without any formula are not parsed."""
    found: list[FormulaCell] = []
    total = 0
    with zipfile.ZipFile(path) as zf:
        member = _sheet_part(zf, sheet_title, file_name)
        if member is None or not _has_formula_tag(zf, member):
            return found, 0
        row_no, col_no = 0, 0
        cell: dict = {}
        v_text: list[str] | None = None
        in_v = False
        p = expat.ParserCreate(namespace_separator=" ")
        p.StartDoctypeDeclHandler = _no_dtd(file_name, member)

        def start(name, attrs):
            nonlocal row_no, col_no, cell, v_text, in_v
            local = _local(name)
            if local == "row":
                row_no = int(attrs["r"]) if attrs.get("r", "").isdigit() else row_no + 1
                col_no = 0
            elif local == "c":
                m = _REF_RE.match(attrs.get("r", ""))
                col_no = column_index(m.group(1)) + 1 if m else col_no + 1
                cell = {"t": attrs.get("t"), "f": False}
                v_text = None
            elif local == "f":
                cell["f"] = True
            elif local == "v":
                in_v, v_text = True, []

        def end(name):
            nonlocal in_v, total
            local = _local(name)
            if local == "v":
                in_v = False
            elif local == "c" and cell.get("f") and row_no >= min_row:
                empty = v_text is None or ("".join(v_text) == "" and cell.get("t") != "str")
                if empty:
                    total += 1
                    if len(found) < 100_000:
                        found.append(FormulaCell(f"{column_letter(col_no - 1)}{row_no}", row_no, col_no))

        def text(data):
            if in_v and v_text is not None:
                v_text.append(data)

        p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, text
        try:
            _parse(zf, member, p)
        except _Stop as stop:
            raise stop.error from None
    return found, total


_CHECKED: set[tuple] = set()


def check_archive_once(path: Path) -> None:
    """``check_archive`` once per file version and process (ingest checks every XLSX before anything
    is read; ``open_workbook`` checks again only a file it was handed directly)."""
    key = config.file_key(path)
    if key not in _CHECKED:
        check_archive(path, path.name)
        _CHECKED.add(key)


def open_workbook(path: Path):
    """An input workbook opened by openpyxl (read-only, the stored results of formulas) after
    ``check_archive_once``; a file openpyxl cannot open is a DataError naming it."""
    import openpyxl

    check_archive_once(path)  # zip-bomb and shared-string limits, before openpyxl opens it
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile/openpyxl raise many kinds
        raise DataError(
            path.name,
            RULE_UNREADABLE,
            detail=f"not a valid XLSX file, truncated or corrupt ({type(exc).__name__}: {exc}) / "
            "XLSXファイルとして読めません（壊れているか途中で切れています）",
        ) from None
