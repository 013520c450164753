"""Checks on an XLSX file before openpyxl parses it (issue #15).

An XLSX file is a zip of XML parts. A small file can expand to gigabytes (a "zip bomb": 5 MB of
shared strings that inflate to 2 GB were read past 5.4 GB of memory), and openpyxl keeps every
shared string in memory. ``check_archive`` looks only at the zip's central directory and streams
the shared-strings part through expat with counters, stopping at the first limit passed:

* the sum of the members' uncompressed sizes (``TSUNAGARI_MAX_XLSX_BYTES``, default 1,000,000,000);
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

import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from xml.parsers import expat

from .errors import DataError

RULE_LIMIT = "XLSX over a safety limit / XLSXが安全上の上限を超えています"
RULE_FORMULA = "formula without a stored result / 計算結果が保存されていない数式"
DETAIL_FORMULA = ("the file was saved without the formulas' results (e.g. written by a program): open it in Excel and "
                  "save it again, or paste the cells as values / 数式の計算結果が保存されていません。Excelで開いて"
                  "保存し直すか、値として貼り付けてください")

LIMITS = {  # key: (setting of pipelines/settings.py, what)
    "bytes": ("max_xlsx_bytes", "bytes uncompressed"),
    "ratio": ("max_xlsx_ratio", "compression ratio"),
    "strings": ("max_xlsx_strings", "shared strings"),
    "chars": ("max_xlsx_string_chars", "characters of shared strings"),
}
RATIO_MIN_MEMBER = 1 << 20   # the ratio is checked on members larger than this
_CHUNK = 1 << 20
_SST_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def limits() -> dict[str, int]:
    """The limits, from the settings (read at call time; a bad value is a SettingsError, exit 2)."""
    from .settings import settings

    s = settings()
    return {key: getattr(s, name) for key, (name, _) in LIMITS.items()}


def _over(file_name: str, key: str, got: str, limit: int, where: str) -> DataError:
    from .settings import BY_NAME

    name, what = LIMITS[key]
    env = BY_NAME[name].env
    return DataError(file_name, RULE_LIMIT,
                     detail=f"{where}: {got} > limit {limit:,} {what} ({env}); refused before reading / "
                            f"上限 {limit:,} を超えているため読み込みません（{env}）")


class _Stop(Exception):
    """Raised from an expat handler to stop parsing with an error."""

    def __init__(self, error: DataError) -> None:
        self.error = error


def _no_dtd(file_name: str, member: str):
    def handler(*_args) -> None:
        raise _Stop(DataError(file_name, RULE_LIMIT,
                              detail=f"{member}: an XML document type declaration (DTD), which XLSX never has / "
                                     "XLSXにないはずのDTD宣言があります"))
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
                raise _Stop(_over(file_name, "strings", f"more than {lim['strings']:,} strings", lim["strings"], member))
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
            raise _over(file_name, "bytes", f"{total:,} bytes in all", lim["bytes"],
                        f"{len(infos)} parts, the largest {big.filename!r} ({big.compress_size:,} bytes "
                        f"expanding to {big.file_size:,})")
        for i in infos:
            if i.file_size > RATIO_MIN_MEMBER and i.file_size > lim["ratio"] * max(i.compress_size, 1):
                ratio = i.file_size / max(i.compress_size, 1)
                raise _over(file_name, "ratio", f"{ratio:,.0f}:1", lim["ratio"],
                            f"{i.filename!r} expands from {i.compress_size:,} to {i.file_size:,} bytes")
        try:
            for member in _shared_string_parts(zf, file_name):
                _check_strings(zf, member, file_name, lim)
        except _Stop as stop:
            raise stop.error from None
        except (expat.ExpatError, zipfile.BadZipFile, OSError, EOFError, ValueError):
            return   # corrupt: the reader reports it


# --- Formulas without a stored result ------------------------------------------------------------


@dataclass
class FormulaCell:
    ref: str        # A1 reference
    row: int        # 1-based sheet row
    col: int        # 1-based column


_REF_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?(\d+)$")
_FORMULA_TAGS = (b"<f>", b"<f ", b"<f/", b":f>", b":f ", b":f/")


def col_index(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def col_letters(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


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
                col_no = col_index(m.group(1)) if m else col_no + 1
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
                        found.append(FormulaCell(f"{col_letters(col_no)}{row_no}", row_no, col_no))

        def text(data):
            if in_v and v_text is not None:
                v_text.append(data)

        p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, text
        try:
            _parse(zf, member, p)
        except _Stop as stop:
            raise stop.error from None
    return found, total
