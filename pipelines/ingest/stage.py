"""Ingest: raw files (CSV UTF-8/CP932, XLSX, Parquet) -> DuckDB staging -> validation -> warehouse.

Each file is read as text, normalised (Unicode NFKC: full-width digits and spaces; trimmed), its
headers and value labels mapped to the data contract through ``mapping.yml`` (plus an optional user
mapping), typed and coded, and checked for the problems a user can act on: unknown column, unmapped
label, impossible code, wrong type. The first problem found stops the load with a ``DataError``
naming the file, the column, the rule, the first data rows (1-based), the count and examples.

All files of one call are committed in one DuckDB transaction: staging tables are filled, the
validation stage (``pipelines.validate.stage.validate_staged``, when present) looks at them, then earlier
versions are deleted and the new rows inserted. Any failure rolls everything back, so the warehouse
is exactly as it was. A file whose sha256 is already recorded in ``files`` is skipped; a new file
with the same name (or, for surveys, the same survey id) replaces its earlier version.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipelines.domain import config, schema
from pipelines.domain.errors import RULE_UNREADABLE, DataError, UsageError, printable
from pipelines.io import safe_yaml, xlsx
from pipelines.io import warehouse as warehouse_db
from pipelines.io.staging import StagedFile

log = logging.getLogger("tsunagari.ingest")

SUFFIXES = (".csv", ".xlsx", ".parquet")
# \Z, not $: "$" also matches before a final newline (a file named "national-2024\n.csv").
SURVEY_ID_RE = re.compile(r"^(national|pref\d{2})-(\d{4})\Z")

# Rules, as printed in error messages (English / Japanese).
RULE_UNKNOWN_COLUMN = "unknown column / 未知の列"
RULE_MISSING_COLUMN = "missing column / 必須の列がありません"
RULE_DUPLICATE_COLUMN = "duplicate column / 列名の重複"
RULE_UNKNOWN_KIND = "unknown file kind / ファイルの種類を判別できません"
RULE_UNMAPPED_LABEL = "unmapped label / 対応表にない値"
RULE_IMPOSSIBLE_CODE = "impossible code / ありえないコード"
RULE_WRONG_TYPE = "wrong type / 型が不正"
RULE_TOO_LARGE = "file too large / ファイルが大きすぎます"
RULE_ENCODING = "cannot decode / 文字コードを判別できません"
RULE_EMPTY = "no data rows / データ行がありません"
RULE_SURVEY_ID = "survey not identified / 調査を特定できません"
RULE_DUPLICATE_SURVEY = "same survey in two files / 同じ調査が2つのファイルにあります"
RULE_DUPLICATE_NAME = "same file name twice / 同じファイル名が2つあります"
RULE_MAPPING = "mapping file refers to an unknown column / 対応表に未知の列"
RULE_TOO_MANY_ROWS = "too many rows / 行数が多すぎます"
RULE_FIELD_COUNT = "wrong number of fields / 列数が見出しと合いません"
RULE_SHEETS = "several sheets with data / データのシートが複数あります"
RULE_UNKNOWN_PREF = "unknown prefecture / 存在しない都道府県"
RULE_FUTURE_YEAR = "year in the future / 未来の年"
RULE_DESIGN = "sample design incomplete / 標本設計の列が片方だけです"

DETAIL_BLANK = "blank in a required column / 必須の列が空欄です"
DETAIL_INT = "expected an integer / 整数ではありません"
DETAIL_NUMBER = "expected a number / 数値ではありません"
DETAIL_LABEL = "add it to a mapping file (--mapping) / 対応表（--mapping）に追加してください"
DETAIL_CHECK_ENCODING = "check --encoding (leave it out to detect UTF-8/CP932) / --encoding の指定を確認してください（省略すると自動判別します）"
# An XLSX header may sit below title rows (e.g. a merged group row): looked for in the first rows.
HEADER_SEARCH_ROWS = 10

SURVEY_INT = ["survey_year", "pref_code", "sex", "age", "household_single", *schema.QUESTIONS]
PROGRAMME_INT = ["fiscal_year", "pref_code"]
# A survey file's columns: the contract, then the optional sample design (stratum, psu).
SURVEY_CONTRACT = schema.SURVEY_COLUMNS + schema.SURVEY_DESIGN_COLUMNS
ALL_COLUMNS = list(dict.fromkeys(SURVEY_CONTRACT + schema.PROGRAMME_COLUMNS))
# Columns that may be absent from a file (filled in by ingest; the design columns with NULL: no design).
SURVEY_FILLED = {"survey_id", "survey_year", "weight", *schema.SURVEY_DESIGN_COLUMNS}
PROGRAMME_FILLED = {"source"}

# Row guard (data rows per file): the setting limits.max_input_rows (TSUNAGARI_MAX_INPUT_ROWS). The
# size guard is limits.max_input_bytes (config.MAX_INPUT_BYTES).
DEFAULT_MAX_INPUT_ROWS = config.BY_NAME["max_input_rows"].default

_INT_RE = re.compile(r"^[+-]?\d+(\.0*)?$")
_INT32 = 2**31 - 1


# --- Result ------------------------------------------------------------------------------------


@dataclass
class IngestResult:
    """What one ingest call did. ``loaded``: new files; ``replaced``: new files that replaced an
    earlier version (same file name or same survey); ``skipped``: already loaded (same sha256)."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    validation: object | None = None
    staged: list[StagedFile] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def committed(self) -> list[str]:
        return self.loaded + self.replaced

    def summary(self) -> str:
        """One short bilingual line per file."""
        return "\n".join(self.lines) if self.lines else "no files / ファイルなし"


# --- Mapping -----------------------------------------------------------------------------------


# Characters that Shift_JIS and CP932 decoders disagree on (the "wave dash" problem) and that NFKC
# leaves apart: fold them to what NFKC makes of the CP932 reading.
_SJIS_FOLD = str.maketrans({"\u301c": "~", "\u2212": "-", "\u2016": "\u2225", "\u2014": "\u2015"})


def norm(text: str) -> str:
    """NFKC (full-width digits, letters and spaces -> ASCII), Shift_JIS/CP932 variants folded, trimmed."""
    return unicodedata.normalize("NFKC", text).translate(_SJIS_FOLD).strip()


@dataclass
class Mapping:
    columns: dict[str, str]  # normalised source header -> contract column
    labels: dict[str, dict[str, object]]  # contract column -> normalised label -> code/value


_SCALARS = (str, int, float, bool)


def _shape_error(source: str, path: list[object], expected: str, got: object) -> DataError:
    what = "nothing" if got is None else f"a {type(got).__name__}" if not isinstance(got, _SCALARS) else repr(got)
    keys = " → ".join(str(k) for k in path)
    return DataError(
        source,
        safe_yaml.RULE_YAML,
        detail=f"{keys}: expected {expected}, got {what} / {keys} の形式が不正です. "
        "the file has two sections: columns: {source header: contract column} and labels: "
        "{contract column: {label: code}} / columns と labels の2つの節からなります",
    )


def check_mapping_shape(data: object, source: str) -> dict:
    """A mapping document's shape: ``columns:`` header -> contract column name (text), ``labels:``
    column -> {label: code}; nothing else. Raises DataError naming the file and the key path."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _shape_error(source, ["(top level)"], "the sections columns: and labels:", data)
    extra = [k for k in data if k not in ("columns", "labels")]
    if extra:
        raise _shape_error(source, [extra[0]], "only the sections columns: and labels:", extra[0])
    columns, labels = data.get("columns"), data.get("labels")
    if columns is not None and not isinstance(columns, dict):
        raise _shape_error(source, ["columns"], "a mapping of source header: contract column", columns)
    for header, column in (columns or {}).items():
        if not isinstance(header, _SCALARS):
            raise _shape_error(source, ["columns", header], "a header (text)", header)
        if not isinstance(column, str):
            raise _shape_error(source, ["columns", header], "a contract column name (text)", column)
    if labels is not None and not isinstance(labels, dict):
        raise _shape_error(source, ["labels"], "a mapping of contract column: {label: code}", labels)
    for column, table in (labels or {}).items():
        if not isinstance(column, str):
            raise _shape_error(source, ["labels", column], "a contract column name (text)", column)
        if table is not None and not isinstance(table, dict):
            raise _shape_error(source, ["labels", column], "a mapping of label: code", table)
        for label, code in (table or {}).items():
            if not isinstance(label, _SCALARS):
                raise _shape_error(source, ["labels", column, label], "a label (text)", label)
            if not isinstance(code, _SCALARS):
                raise _shape_error(source, ["labels", column, label], "a code (a number or text)", code)
    return data


def _merge_mapping(base: Mapping, data: dict, source: str) -> None:
    data = check_mapping_shape(data, source)
    bad = [f"{k} -> {v}" for k, v in (data.get("columns") or {}).items() if v not in ALL_COLUMNS]
    bad += [f"labels: {c}" for c in (data.get("labels") or {}) if c not in ALL_COLUMNS]
    if bad:
        raise DataError(
            source, RULE_MAPPING, examples=bad, detail="contract columns / 契約列: " + ", ".join(ALL_COLUMNS)
        )
    for header, column in (data.get("columns") or {}).items():
        base.columns[norm(str(header))] = column
    for column, labels in (data.get("labels") or {}).items():
        target = base.labels.setdefault(column, {})
        for label, code in (labels or {}).items():
            target[norm(str(label))] = code


@lru_cache(maxsize=1)
def _pref_labels() -> dict[str, int]:
    """Prefecture names -> JIS code: 東京都, 東京, Tokyo (北海道 has no short form)."""
    from pipelines.domain.reference import prefectures

    out: dict[str, int] = {}
    for row in prefectures().itertuples():
        code = int(row.pref_code)
        name = norm(str(row.name_ja))
        out[name] = code
        if name[-1] in "都府県" and name != "北海道":
            out[name[:-1]] = code
        out[str(row.romaji)] = code
        out[str(row.romaji).lower()] = code
    return out


def load_mapping(extra: Path | None = None) -> Mapping:
    """The shipped mapping.yml, extended/overridden by the user's YAML file when given."""
    base = Mapping(columns={}, labels={"pref_code": dict(_pref_labels())})
    _merge_mapping(base, safe_yaml.load(config.MAPPING_FILE), config.MAPPING_FILE.name)
    if extra is not None:
        extra = Path(extra)
        if not extra.is_file():
            raise UsageError("--mapping", f"'{extra}' does not exist / ファイルがありません")
        _merge_mapping(base, safe_yaml.load(extra), extra.name)
    return base


# --- Reading -----------------------------------------------------------------------------------


@dataclass
class RawTable:
    headers: list[str]  # as in the file
    columns: list[pa.Array]  # strings, '' for blank, no nulls
    source_row: np.ndarray  # 1-based data row numbers
    encoding: str | None


_SCANNED: dict[tuple, tuple[str, int]] = {}


def scan_file(path: Path) -> tuple[str, int]:
    """sha256 of the bytes and the number of lines (newlines, plus a last line without one), in one
    pass. Remembered per process while the file's size and modification time are unchanged: the
    build's look-ahead (has_new_inputs) and ingest then read each file once."""
    key = config.file_key(path)
    if key not in _SCANNED:
        _SCANNED[key] = _scan(path)
    return _SCANNED[key]


def _scan(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return h.hexdigest(), lines + (last != b"\n")


def max_input_rows() -> int:
    """The row guard: the setting limits.max_input_rows (TSUNAGARI_MAX_INPUT_ROWS), read at call time."""
    return config.settings().max_input_rows


def _too_many_rows(file_name: str, rows: int, limit: int, what: str = "rows") -> DataError:
    return DataError(
        file_name,
        RULE_TOO_MANY_ROWS,
        detail=f"{rows:,} {what} > limit {limit:,} rows (TSUNAGARI_MAX_INPUT_ROWS) / 上限 {limit:,} 行を超えています",
    )


_ENCODING_LABEL = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp932": "CP932 (Shift_JIS)"}


def _family(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    if name in ("utf-8", "utf-8-sig"):
        return "utf-8"
    if name in ("cp932", "shift_jis", "shift_jis_2004", "shift_jisx0213"):
        return "cp932"
    return name


@dataclass
class _Decoded:
    """Where a strict decode of a file stopped (``ok`` when it did not)."""

    ok: bool
    non_ascii: bool = False  # non-ASCII bytes before the error (or anywhere, when ok)
    line: int = 0  # 1-based physical line of the first undecodable byte
    line_start: int = 0  # byte offset of that line
    reason: str = ""
    at_end: bool = False  # only the last bytes are incomplete: the file stops inside a character
    mixed: bool = False  # complete lines with non-ASCII text decode before the error line


def _decode_check(path: Path, encoding: str, start: int = 0) -> _Decoded:
    dec = codecs.getincrementaldecoder(encoding)(errors="strict")
    pos, lines, first_na_line, last_nl = start, 1, None, start - 1
    with open(path, "rb") as fh:
        fh.seek(start)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            try:
                dec.decode(chunk)
            except UnicodeDecodeError as exc:
                base = pos + len(chunk) - len(exc.object)
                return _failure(exc, base, lines, first_na_line, last_nl, at_end=False)
            if first_na_line is None:
                m = _NON_ASCII.search(chunk)
                if m:
                    first_na_line = lines + chunk.count(b"\n", 0, m.start())
            k = chunk.rfind(b"\n")
            if k >= 0:
                last_nl = pos + k
            lines += chunk.count(b"\n")
            pos += len(chunk)
        try:
            dec.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            return _failure(exc, pos - len(exc.object), lines, first_na_line, last_nl, at_end=True)
    return _Decoded(ok=True, non_ascii=first_na_line is not None)


_NON_ASCII = re.compile(rb"[\x80-\xff]")


def _failure(
    exc: UnicodeDecodeError, base: int, lines: int, first_na_line: int | None, last_nl: int, at_end: bool
) -> _Decoded:
    data, at = exc.object, exc.start
    if first_na_line is None:
        m = _NON_ASCII.search(data, 0, at)
        if m:
            first_na_line = lines + data.count(b"\n", 0, m.start())
    line = lines + data.count(b"\n", 0, at)
    k = data.rfind(b"\n", 0, at)
    line_start = base + k + 1 if k >= 0 else last_nl + 1
    return _Decoded(
        ok=False,
        non_ascii=first_na_line is not None,
        line=line,
        line_start=line_start,
        reason=exc.reason,
        at_end=at_end,
        mixed=first_na_line is not None and first_na_line < line,
    )


def _decodes(path: Path, encoding: str, start: int = 0) -> bool:
    return _decode_check(path, encoding, start).ok


# Bytes that Python's cp932 decodes although they are no CP932 text (0x80, 0xA0, 0xFD-0xFF).
_CP932_FILLERS = re.compile("[\x80\uf8f0-\uf8f3]")


def _is_text_in(path: Path, encoding: str, start: int) -> bool:
    """The file from byte ``start`` on is real text in ``encoding`` (for the mixed-encodings check)."""
    if not _decodes(path, encoding, start):
        return False
    if _family(encoding) != "cp932":
        return True
    with open(path, "rb") as fh:
        fh.seek(start)
        text = codecs.getreader(encoding)(fh)
        for chunk in iter(lambda: text.read(1 << 20), ""):
            if _CP932_FILLERS.search(chunk):
                return False
    return True


def _undecodable(path: Path, encoding: str, d: _Decoded) -> DataError | None:
    """The error for a file cut inside a character, or for two encodings in one file."""
    label = _ENCODING_LABEL.get(encoding, encoding)
    if d.at_end:
        return DataError(
            path.name,
            RULE_ENCODING,
            detail=f"the file ends inside a character (line {d.line}): it was probably cut short; "
            f"copy or export it again / ファイルが文字の途中で終わっています（{d.line}行目）。"
            "途中で切れている可能性があります。もう一度コピーしてください",
        )
    other = "cp932" if _family(encoding) == "utf-8" else "utf-8"
    if d.mixed and _is_text_in(path, other, d.line_start):
        return DataError(
            path.name,
            RULE_ENCODING,
            detail=f"mixed encodings: {label} up to line {d.line - 1}, {_ENCODING_LABEL[other]} from "
            f"line {d.line}; save the whole file in one encoding / 文字コードが混在しています"
            f"（{d.line - 1}行目まで{encoding.upper()}、{d.line}行目から{other.upper()}）。"
            "ファイル全体を1つの文字コードで保存してください",
        )
    return None


def detect_encoding(path: Path) -> str:
    """'utf-8' ('utf-8-sig' with a BOM) when the whole file decodes strictly, else 'cp932'. A file cut
    inside a character and a file in two encodings (e.g. UTF-8 rows, then CP932 rows) are refused."""
    u = _decode_check(path, "utf-8")
    if u.ok:
        with open(path, "rb") as fh:
            return "utf-8-sig" if fh.read(3) == codecs.BOM_UTF8 else "utf-8"
    err = _undecodable(path, "utf-8", u)
    if err is not None:
        raise err
    c = _decode_check(path, "cp932")
    if c.ok:
        return "cp932"
    err = _undecodable(path, "cp932", c)
    if err is not None:
        raise err
    raise DataError(
        path.name,
        RULE_ENCODING,
        detail="neither UTF-8 nor CP932 (Shift_JIS); give --encoding / UTF-8でもCP932でもありません。--encoding を指定してください",
    )


def _guess_encoding(path: Path) -> str | None:
    try:
        return detect_encoding(path)
    except DataError:
        return None


def _check_declared_encoding(path: Path, encoding: str) -> None:
    """--encoding was given: refuse a file that does not decode with it, and a UTF-8 file with
    non-ASCII text given a non-UTF-8 encoding (CP932 decodes much UTF-8 into mojibake without error)."""
    d = _decode_check(path, encoding)
    if not d.ok:
        guess = _guess_encoding(path)
        looks = (
            f"; the file looks like {_ENCODING_LABEL.get(guess, guess)}"
            if guess and _family(guess) != _family(encoding)
            else ""
        )
        raise DataError(
            path.name,
            RULE_ENCODING,
            detail=f"not {encoding}: {d.reason} (line {d.line}){looks} / {encoding} ではありません"
            f"（{d.line}行目）. {DETAIL_CHECK_ENCODING}",
        )
    if _family(encoding) != "utf-8" and d.non_ascii:
        u = _decode_check(path, "utf-8")
        if u.ok:
            raise DataError(
                path.name,
                RULE_ENCODING,
                detail=f"the file is UTF-8, not {encoding}: read as {encoding} its Japanese text would be "
                f"garbled (mojibake) / このファイルはUTF-8です（{encoding}として読むと文字化けします）. "
                f"{DETAIL_CHECK_ENCODING}",
            )


def _field_count_error(path: Path, enc: str, width: int, fallback: str) -> DataError:
    """Locate the rows whose number of fields differs from the header's (pyarrow names none)."""
    bad: list[int] = []
    got: int | None = None
    last = 0
    with open(path, encoding=enc, newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            if not row:  # empty lines are not rows (pyarrow skips them too)
                continue
            last += 1
            if len(row) != width:
                bad.append(last)
                got = len(row) if got is None else got
    if not bad:
        return DataError(path.name, RULE_UNREADABLE, detail=fallback)
    if bad == [last]:
        detail = (
            f"the last row has {got} of {width} fields: the file was probably cut short; copy or export it "
            f"again / 最後の行が{width}列中{got}列で終わっています。ファイルが途中で切れている可能性があります"
        )
    else:
        detail = (
            f"the header has {width} fields, row {bad[0]} has {got}: a value with an unquoted comma or "
            f"quote, or a broken line / 見出しは{width}列、{bad[0]}行目は{got}列です（引用符のないカンマ・改行など）"
        )
    return DataError(path.name, RULE_FIELD_COUNT, rows=bad[:6], count=len(bad), detail=detail)


def _read_csv(path: Path, encoding: str | None) -> RawTable:
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise UsageError("--encoding", f"'{encoding}' is not a known encoding / 不明な文字コード") from None
        _check_declared_encoding(path, encoding)
        enc = encoding
    else:
        enc = detect_encoding(path)
    try:
        with open(path, encoding=enc, newline="") as fh:
            headers = next(csv.reader(fh), None)
    except UnicodeDecodeError as exc:
        raise DataError(
            path.name, RULE_ENCODING, detail=f"not {enc}: {exc.reason} / {enc} ではありません. {DETAIL_CHECK_ENCODING}"
        ) from None
    if not headers:
        raise DataError(path.name, RULE_EMPTY)
    names = [f"c{i}" for i in range(len(headers))]
    # pyarrow skips the UTF-8 BOM itself; other encodings are transcoded by Python's codec.
    pa_enc = "utf8" if codecs.lookup(enc).name in ("utf-8", "utf-8-sig") else enc
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding=pa_enc, skip_rows=1, column_names=names, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        message = str(exc).splitlines()[0]
        if "Expected" in message and "columns, got" in message:
            raise _field_count_error(path, enc, len(names), message) from None
        raise DataError(path.name, RULE_UNREADABLE, detail=message) from None
    cols = [table.column(i).combine_chunks() for i in range(len(names))]
    return RawTable(headers, cols, np.arange(1, table.num_rows + 1, dtype=np.int64), enc)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _is_header(row: Sequence[object], mapping: Mapping) -> bool:
    """A row that names the key column of a survey (respondent_id) or programme file (metric_id)."""
    for v in row:
        n = norm(_cell_text(v))
        m = mapping.columns.get(n, n.lower())
        if m in ("respondent_id", "metric_id"):
            return True
    return False


def _pick_sheet(path: Path, wb, mapping: Mapping | None) -> tuple[object, int]:
    """(worksheet, 0-based header row). The sheet whose first rows name the contract columns is read;
    rows above its header (titles, a merged group row) are skipped. Several such sheets are refused;
    with none, a one-sheet workbook is read from row 1 (its header is then reported) and a workbook of
    several sheets is refused, naming them."""
    sheets = wb.worksheets
    if mapping is None:
        return sheets[0], 0
    found = []
    for ws in sheets:
        for i, row in enumerate(ws.iter_rows(values_only=True, max_row=HEADER_SEARCH_ROWS)):
            if _is_header(row, mapping):
                found.append((ws, i))
                break
    names = [ws.title for ws in sheets]
    if len(found) > 1:
        raise DataError(
            path.name,
            RULE_SHEETS,
            examples=[ws.title for ws, _ in found],
            detail="one table per file: keep the data on one sheet (others may hold notes) / "
            "1ファイルに1つの表です。データは1つのシートにしてください（他のシートは注記のみ可）",
        )
    if found:
        ws, i = found[0]
        if len(sheets) > 1 or i:
            log.info(
                "%s: read sheet '%s', header in row %d (sheets: %s)",
                printable(path.name),
                printable(ws.title),
                i + 1,
                printable(", ".join(names)),
            )
        return found[0]
    if len(sheets) > 1:
        raise DataError(
            path.name,
            RULE_UNKNOWN_KIND,
            examples=names,
            detail="no sheet has a respondent_id (survey) or metric_id (programme) column in its first "
            f"{HEADER_SEARCH_ROWS} rows / respondent_id（調査）か metric_id（施策）の列があるシートがありません",
        )
    return sheets[0], 0


def _check_formulas(path: Path, sheet: str, header_row: int, headers: list[str], mapping: Mapping | None) -> None:
    """Refuse formula cells without a stored result (openpyxl reads them as blank), naming the
    cells (sheet!A1), their column and data rows. Formula cells with a stored result are read as it."""
    cells, total = xlsx.uncached_formulas(path, sheet, path.name, min_row=header_row)
    if not total:
        return
    first = cells[0].col
    same = [c for c in cells if c.col == first]
    header = headers[first - 1] if first <= len(headers) else ""
    column = (mapping.columns.get(norm(header), norm(header).lower()) if mapping else None) or header
    if column not in ALL_COLUMNS:
        column = header or f"column {xlsx.column_letter(first - 1)}"
    more = f"{total:,} such cells in the sheet in all. " if total > len(same) else ""
    raise DataError(
        path.name,
        xlsx.RULE_FORMULA,
        column=column,
        rows=[c.row - header_row for c in same if c.row > header_row][:6],
        count=len(same),
        examples=[f"{sheet}!{c.ref}" for c in same[:5]],
        detail=more + xlsx.DETAIL_FORMULA,
    )


def _read_xlsx(path: Path, mapping: Mapping | None = None, max_rows: int | None = None) -> RawTable:
    wb = xlsx.open_workbook(path)
    try:
        ws, header_at = _pick_sheet(path, wb, mapping)
        rows = ws.iter_rows(values_only=True, min_row=header_at + 1)
        header_row = next(rows, None)
        if header_row is None:
            raise DataError(path.name, RULE_EMPTY)
        headers = [_cell_text(v) for v in header_row]
        _check_formulas(path, ws.title, header_at + 1, headers, mapping)
        width = len(headers)
        data: list[list[str]] = [[] for _ in range(width)]
        n = 0
        for row in rows:
            n += 1
            if max_rows is not None and n > max_rows:
                raise _too_many_rows(path.name, n, max_rows, "rows or more")
            cells = [_cell_text(v) for v in row[:width]]
            if any(c != "" for c in row[width:] if c is not None):
                raise DataError(
                    path.name, RULE_UNREADABLE, detail="cells right of the header row / 見出しのない列に値があります"
                )
            cells += [""] * (width - len(cells))
            for i, c in enumerate(cells):
                data[i].append(c)
    finally:
        wb.close()
    n = len(data[0]) if data else 0
    return RawTable(headers, [pa.array(col, pa.string()) for col in data], np.arange(1, n + 1, dtype=np.int64), None)


def _read_parquet(path: Path, max_rows: int | None = None) -> RawTable:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        if max_rows is not None and pf.metadata.num_rows > max_rows:
            raise _too_many_rows(path.name, pf.metadata.num_rows, max_rows)
        table = pf.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            path.name,
            RULE_UNREADABLE,
            detail=f"not a valid Parquet file, truncated or corrupt ({str(exc).splitlines()[0]}) / "
            "Parquetファイルとして読めません（壊れているか途中で切れています）",
        ) from None
    cols = []
    for col in table.columns:
        col = col.combine_chunks()
        if pa.types.is_floating(col.type):
            # 1.0 -> '1' like the other formats (text of an integral float)
            as_int = pc.cast(col, pa.int64(), safe=False)
            integral = pc.equal(pc.cast(as_int, col.type), col)
            text = pc.if_else(integral, pc.cast(as_int, pa.string()), pc.cast(col, pa.string()))
        else:
            text = pc.cast(col, pa.string())
        cols.append(pc.fill_null(text, ""))
    return RawTable(list(table.column_names), cols, np.arange(1, table.num_rows + 1, dtype=np.int64), None)


def read_raw(
    path: Path, encoding: str | None = None, mapping: Mapping | None = None, max_rows: int | None = None
) -> RawTable:
    """Read a file as text columns; drop rows that are entirely blank (row numbers are kept).
    ``mapping`` lets an XLSX reader find the sheet and the header row that name the contract columns;
    ``max_rows`` is the row guard (CSV files are counted before they are read, in ingest_files)."""
    if path.stat().st_size == 0:
        raise DataError(path.name, RULE_EMPTY, detail="empty file (0 bytes) / 空のファイル（0バイト）")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        raw = _read_csv(path, encoding)
    elif suffix == ".xlsx":
        raw = _read_xlsx(path, mapping, max_rows)
    elif suffix == ".parquet":
        raw = _read_parquet(path, max_rows)
    else:
        raise DataError(
            path.name,
            "unsupported file type / 対応していない形式",
            detail="CSV, XLSX or Parquet / CSV・XLSX・Parquet のみ",
        )
    # Excel leaves columns without header and rows without values behind: drop them.
    keep = [i for i, h in enumerate(raw.headers) if norm(h) != "" or pc.any(pc.not_equal(raw.columns[i], "")).as_py()]
    raw.headers = [raw.headers[i] for i in keep]
    raw.columns = [raw.columns[i] for i in keep]
    if raw.columns and len(raw.columns[0]):
        blank = None
        for col in raw.columns:
            b = pc.equal(pc.utf8_trim_whitespace(col), "")
            blank = b if blank is None else pc.and_(blank, b)
        if pc.any(blank).as_py():
            mask = pc.invert(blank)
            raw.columns = [pc.filter(c, mask) for c in raw.columns]
            raw.source_row = raw.source_row[mask.to_numpy(zero_copy_only=False)]
    return raw


# --- Normalising and typing --------------------------------------------------------------------


class _Problem:
    """Per distinct value: which rule it breaks (blank, int, number, label, code)."""

    BLANK, INT, NUMBER, LABEL, CODE = "blank", "int", "number", "label", "code"


def _as_int(s: str) -> int | None:
    if _INT_RE.match(s):
        v = int(float(s)) if "." in s else int(s)
        return v if abs(v) <= _INT32 else None
    return None


def _as_float(s: str) -> float | None:
    try:
        v = float(s.replace(",", ""))
    except ValueError:
        return None
    return v if np.isfinite(v) else None


@dataclass
class _Spec:
    kind: str  # 'int' | 'code' | 'float' | 'text'
    required: bool = True  # blank -> problem (else NULL / default)
    codes: set[int] | None = None
    default: object = None


def _specs(kind: str) -> dict[str, _Spec]:
    if kind == "survey":
        specs = {c: _Spec("code", codes=schema.CODE_SETS[c]) for c in schema.CODE_SETS}
        specs.update(
            {
                "survey_id": _Spec("text"),
                "survey_year": _Spec("int"),
                "respondent_id": _Spec("text"),
                "pref_code": _Spec("code", codes=set(range(1, 48))),
                "age": _Spec("int", required=False),
                "weight": _Spec("float"),
                # present in the file: a code on every row (a blank is an error); absent: NULL (no design)
                "stratum": _Spec("text"),
                "psu": _Spec("text"),
            }
        )
        return {c: specs[c] for c in SURVEY_CONTRACT}
    return {
        "fiscal_year": _Spec("int"),
        "pref_code": _Spec("code", codes=set(range(1, 48))),
        "metric_id": _Spec("text"),
        "value": _Spec("float", required=False),
        "unit": _Spec("text"),
        "source": _Spec("text", required=False),
    }


def _convert_unique(s: str, spec: _Spec, labels: dict[str, object]) -> tuple[object, str | None]:
    """(value, problem) for one normalised distinct value."""
    if s in labels:
        s = str(labels[s])
    if s == "":
        return (None, _Problem.BLANK) if spec.required else (spec.default, None)
    if spec.kind == "text":
        return s, None
    if spec.kind == "float":
        v = _as_float(s)
        return (v, None) if v is not None else (None, _Problem.NUMBER)
    v = _as_int(s)
    if spec.kind == "int":
        return (v, None) if v is not None else (None, _Problem.INT)
    # coded column
    if v is None:
        return None, (_Problem.CODE if _as_float(s) is not None else _Problem.LABEL)
    return (v, None) if v in spec.codes else (None, _Problem.CODE)


def _codes_text(codes: set[int]) -> str:
    if codes == set(range(1, 48)):
        return "1–47"
    return ", ".join(str(c) for c in sorted(codes))


def _fast_column(raw: pa.Array, spec: _Spec, labels: dict[str, object]) -> pa.Array | None:
    """Vectorised conversion of an ASCII text/float column without labels (e.g. respondent_id,
    weight), or None when the value-by-value path is needed (non-ASCII, blanks, bad values)."""
    if spec.kind not in ("text", "float") or labels or not pc.all(pc.string_is_ascii(raw)).as_py():
        return None
    trimmed = pc.utf8_trim_whitespace(raw)
    blank = pc.equal(trimmed, "")
    if pc.any(blank).as_py():
        if spec.required:
            return None
        trimmed = pc.if_else(blank, pa.scalar(None, pa.string()), trimmed)
    if spec.kind == "text":
        return trimmed
    try:
        values = pc.cast(trimmed, pa.float64())
    except pa.ArrowInvalid:
        return None
    return values if pc.all(pc.is_finite(values)).as_py() is not False else None


def _convert_column(
    file_name: str, column: str, raw: pa.Array, rows: np.ndarray, spec: _Spec, labels: dict[str, object]
) -> pa.Array:
    """Map a text column to its typed Arrow array, working on distinct values only."""
    fast = _fast_column(raw, spec, labels)
    if fast is not None:
        return fast
    enc = raw.dictionary_encode()
    indices = enc.indices.to_numpy(zero_copy_only=False)
    uniques = enc.dictionary.to_pylist()
    converted = [_convert_unique(norm(u), spec, labels) for u in uniques]
    problems = [p for _, p in converted]
    if any(problems):
        bad_u = np.array([p is not None for p in problems])
        bad_rows = np.flatnonzero(bad_u[indices])
        first = problems[indices[bad_rows[0]]]
        same = np.array([p == first for p in problems])
        hit = np.flatnonzero(same[indices])
        seen = list(dict.fromkeys(indices[hit[:10000]].tolist()))
        examples = [uniques[i] for i in seen[:5]]
        rule, detail = {
            _Problem.BLANK: (RULE_WRONG_TYPE, DETAIL_BLANK),
            _Problem.INT: (RULE_WRONG_TYPE, DETAIL_INT),
            _Problem.NUMBER: (RULE_WRONG_TYPE, DETAIL_NUMBER),
            _Problem.LABEL: (RULE_UNMAPPED_LABEL, DETAIL_LABEL),
            _Problem.CODE: (RULE_IMPOSSIBLE_CODE, f"allowed codes / 有効なコード: {_codes_text(spec.codes or set())}"),
        }[first]
        raise DataError(
            file_name,
            rule,
            column=column,
            rows=rows[hit[:6]].tolist(),
            count=int(len(hit)),
            examples=[] if first == _Problem.BLANK else examples,
            detail=detail,
        )
    values = [v for v, _ in converted]
    if spec.kind in ("int", "code"):
        arrow_type = pa.int32()
    elif spec.kind == "float":
        arrow_type = pa.float64()
    else:
        arrow_type = pa.string()
    return pa.array(values, arrow_type).take(pa.array(indices))


# --- One file ----------------------------------------------------------------------------------


@dataclass
class PreparedFile:
    staged: StagedFile
    table: pa.Table  # contract columns (+ file_id, source_row), typed


def _map_headers(file_name: str, headers: Sequence[str], mapping: Mapping) -> list[str | None]:
    mapped: list[str | None] = []
    for h in headers:
        n = norm(h)
        if n in mapping.columns:
            mapped.append(mapping.columns[n])
        elif n.lower() in ALL_COLUMNS:
            mapped.append(n.lower())
        else:
            mapped.append(None)
    seen: dict[str, str] = {}
    for h, m in zip(headers, mapped):
        if m is None:
            continue
        if m in seen:
            raise DataError(
                file_name,
                RULE_DUPLICATE_COLUMN,
                column=m,
                examples=[seen[m], h],
                detail="two headers map to the same column / 2つの見出しが同じ列に対応しています",
            )
        seen[m] = h
    return mapped


def declared_survey(path: Path) -> str | None:
    """The survey declared by a file name such as national-2024.csv or pref11-2023.xlsx."""
    return path.stem if SURVEY_ID_RE.match(path.stem) else None


# Problems that a wrong --encoding shows up as (garbled headers and labels).
_ENCODING_SYMPTOMS = (
    RULE_UNKNOWN_KIND,
    RULE_UNKNOWN_COLUMN,
    RULE_MISSING_COLUMN,
    RULE_DUPLICATE_COLUMN,
    RULE_UNMAPPED_LABEL,
)


def prepare_file(
    path: Path, file_id: str, mapping: Mapping, encoding: str | None = None, max_rows: int | None = None
) -> PreparedFile:
    """Read, map, normalise and type one file. Raises DataError on the first problem. When --encoding
    was given and the headers or labels do not map while the file decodes as another encoding, the
    error says so (mojibake rather than a missing mapping)."""
    try:
        return _prepare_file(path, file_id, mapping, encoding, max_rows)
    except DataError as exc:
        if not (encoding and path.suffix.lower() == ".csv" and exc.rule in _ENCODING_SYMPTOMS):
            raise
        guess = _guess_encoding(path)
        if guess is None or _family(guess) == _family(encoding):
            raise
        hint = f"the file decodes as {_ENCODING_LABEL.get(guess, guess)}, not {encoding}: {DETAIL_CHECK_ENCODING}"
        raise DataError(
            exc.file,
            exc.rule,
            column=exc.column,
            rows=exc.rows,
            count=exc.count,
            examples=exc.examples,
            detail=f"{exc.detail}. {hint}" if exc.detail else hint,
        ) from None


def latest_plausible_year() -> int:
    """Fieldwork and fiscal years later than next calendar year cannot be real data (a file named
    national-2099.csv would otherwise become the latest round without a word)."""
    return datetime.now().year + 1


def _future_detail(what: str, what_ja: str, year: int) -> str:
    limit = latest_plausible_year()
    return (
        f"{what} {year} is after {limit} (next year): a typing error in the file name or the data? / "
        f"{what_ja}{year}年は来年（{limit}年）より後です。ファイル名またはデータの誤りではありませんか"
    )


def _check_declared_pref(name: str, survey_id: str) -> None:
    m = re.match(r"^pref(\d{2})-", survey_id)
    if m and not 1 <= int(m.group(1)) <= 47:
        raise DataError(
            name,
            RULE_UNKNOWN_PREF,
            column="survey_id",
            examples=[survey_id],
            detail=f"pref{m.group(1)} is not a prefecture: prefecture surveys are pref01-… to pref47-… "
            "(JIS X 0401) / 都道府県コードは01～47です",
        )


def _prepare_file(
    path: Path, file_id: str, mapping: Mapping, encoding: str | None, max_rows: int | None
) -> PreparedFile:
    name = path.name
    raw = read_raw(path, encoding, mapping=mapping, max_rows=max_rows)
    mapped = _map_headers(name, raw.headers, mapping)
    present = {m for m in mapped if m}
    unknown = [h for h, m in zip(raw.headers, mapped) if m is None]
    if "respondent_id" in present:
        kind, contract, filled = "survey", SURVEY_CONTRACT, SURVEY_FILLED
    elif "metric_id" in present:
        kind, contract, filled = "programme", schema.PROGRAMME_COLUMNS, PROGRAMME_FILLED
    else:
        raise DataError(
            name,
            RULE_UNKNOWN_KIND,
            examples=unknown,
            detail="no respondent_id (survey) or metric_id (programme) column / "
            "respondent_id（調査）も metric_id（施策）の列もありません",
        )
    wrong = [h for h, m in zip(raw.headers, mapped) if m is None or m not in contract]
    if wrong:
        raise DataError(
            name,
            RULE_UNKNOWN_COLUMN,
            column=", ".join(wrong),
            detail=f"not a {kind} column; add it to a mapping file (--mapping) / 対応表（--mapping）に追加してください",
        )
    missing = [c for c in contract if c not in present and c not in filled]
    if missing:
        raise DataError(name, RULE_MISSING_COLUMN, column=", ".join(missing))
    design = [c for c in schema.SURVEY_DESIGN_COLUMNS if c in present] if kind == "survey" else []
    if design and len(design) < len(schema.SURVEY_DESIGN_COLUMNS):
        lacking = [c for c in schema.SURVEY_DESIGN_COLUMNS if c not in present]
        raise DataError(
            name,
            RULE_DESIGN,
            column=", ".join(lacking),
            detail=f"the file has {', '.join(design)} but not {', '.join(lacking)}: give both "
            "(stratified element sample: psu = respondent_id; clusters without strata: one "
            "stratum code) or neither / 層（stratum）と第1次抽出単位（psu）は両方を指定してください",
        )
    n = len(raw.source_row)
    if n == 0:
        raise DataError(name, RULE_EMPTY)

    specs = _specs(kind)
    by_col = {m: raw.columns[i] for i, m in enumerate(mapped) if m}
    out: dict[str, pa.Array] = {}
    for col in contract:
        if col in by_col:
            out[col] = _convert_column(name, col, by_col[col], raw.source_row, specs[col], mapping.labels.get(col, {}))

    survey_id = survey_year = None
    if kind == "survey":
        survey_id = declared_survey(path)
        if survey_id is None:
            values = pc.unique(out["survey_id"]).to_pylist() if "survey_id" in out else []
            if len(values) != 1:
                raise DataError(
                    name,
                    RULE_SURVEY_ID,
                    column="survey_id",
                    examples=values,
                    detail="one survey per file, named like national-2024.csv or pref11-2023.csv, "
                    "or a survey_id column / 1ファイル1調査。ファイル名（例 national-2024.csv）か survey_id 列で指定してください",
                )
            survey_id = values[0]
            if not SURVEY_ID_RE.match(survey_id):
                raise DataError(
                    name,
                    RULE_SURVEY_ID,
                    column="survey_id",
                    examples=[survey_id],
                    detail="expected e.g. national-2024 or pref11-2023 / 例: national-2024, pref11-2023",
                )
        _check_declared_pref(name, survey_id)
        survey_year = int(SURVEY_ID_RE.match(survey_id).group(2))
        if survey_year > latest_plausible_year():
            raise DataError(
                name,
                RULE_FUTURE_YEAR,
                column="survey_id",
                examples=[survey_id],
                detail=_future_detail("survey round", "調査年", survey_year),
            )
        if "survey_id" not in out:
            out["survey_id"] = pa.repeat(pa.scalar(survey_id), n)
        if "survey_year" not in out:
            out["survey_year"] = pa.repeat(pa.scalar(survey_year, pa.int32()), n)
        if "weight" not in out:
            out["weight"] = pa.repeat(pa.scalar(1.0), n)
        for col in schema.SURVEY_DESIGN_COLUMNS:  # no design given: NULL (the default design effect)
            if col not in out:
                out[col] = pa.nulls(n, pa.string())
    else:
        future = pc.greater(out["fiscal_year"], latest_plausible_year()).to_numpy(zero_copy_only=False)
        if future.any():
            hit = np.flatnonzero(future)
            years = sorted(set(out["fiscal_year"].take(pa.array(hit)).to_pylist()))
            raise DataError(
                name,
                RULE_FUTURE_YEAR,
                column="fiscal_year",
                rows=raw.source_row[hit[:6]].tolist(),
                count=len(hit),
                examples=years[:5],
                detail=_future_detail("fiscal year", "年度", years[-1]),
            )
        if "source" not in out:
            out["source"] = pa.nulls(n, pa.string())

    out["file_id"] = pa.repeat(pa.scalar(file_id), n)
    out["source_row"] = pa.array(raw.source_row.astype(np.int32))
    table = pa.table({c: out[c] for c in [*contract, "file_id", "source_row"]})
    staged = StagedFile(
        path=path,
        file_name=name,
        file_id=file_id,
        kind=kind,
        row_count=n,
        encoding=raw.encoding,
        survey_id=survey_id,
        survey_year=survey_year,
        synthetic=(path.parent / "SYNTHETIC").exists(),
    )
    return PreparedFile(staged, table)


# --- Warehouse ---------------------------------------------------------------------------------


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for name in ("survey_responses", "staging_survey"):
        con.execute(schema.SURVEY_TABLE_DDL.format(name=name))
        for col in schema.SURVEY_DESIGN_COLUMNS:  # a warehouse made before the design columns
            con.execute(f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {col} VARCHAR")
    for name in ("programme", "staging_programme"):
        con.execute(schema.PROGRAMME_TABLE_DDL.format(name=name))
    con.execute(schema.FILES_TABLE_DDL)
    con.execute(schema.VALIDATION_TABLE_DDL)


def _stage(con: duckdb.DuckDBPyConnection, prepared: PreparedFile) -> None:
    con.register("_ingest_frame", prepared.table)
    try:
        if prepared.staged.kind == "survey":
            con.execute(f"""
                INSERT INTO staging_survey BY NAME
                SELECT *,
                       CASE WHEN survey_id LIKE 'national%' THEN 'national' ELSE 'prefecture' END
                           AS survey_kind,
                       {schema.AGE_BAND_SQL} AS age_band, {schema.UK_AGE_BAND_SQL} AS uk_age_band
                FROM _ingest_frame""")
        else:
            con.execute("INSERT INTO staging_programme BY NAME SELECT * FROM _ingest_frame")
    finally:
        con.unregister("_ingest_frame")


_WARMING: list[threading.Thread] = []


def start_validation_warm_up() -> None:
    """Import and set up Great Expectations in a background thread, once per process; the
    validation waits for it (the GX context is behind a lock). Not when the build's validation
    process (pipelines.validate.gx_process) is running: the validation happens there."""
    from pipelines.validate import gx_process as validator

    if not _WARMING and not validator.running():
        t = threading.Thread(target=_prewarm_validation, name="gx-warm-up", daemon=True)
        _WARMING.append(t)
        t.start()


def _prewarm_validation() -> None:
    try:
        from pipelines.validate.stage import warm_up

        warm_up()
    except Exception:  # the validation itself reports any problem
        log.debug("GX warm-up failed", exc_info=True)


def _validator():
    try:
        from pipelines.validate import stage as validation
    except ModuleNotFoundError as exc:
        if exc.name == "pipelines.validate.stage":
            return None
        raise
    return getattr(validation, "validate_staged", None)


def _commit_file(con: duckdb.DuckDBPyConnection, sf: StagedFile) -> bool:
    """Delete earlier versions of this file, insert from staging, record provenance.
    Returns True when an earlier version was replaced."""
    if sf.kind == "survey":
        old = con.execute(
            "SELECT file_id FROM files WHERE file_name = ? OR (kind = 'survey' AND survey_id = ?)",
            [sf.file_name, sf.survey_id],
        ).fetchall()
    else:
        old = con.execute("SELECT file_id FROM files WHERE file_name = ?", [sf.file_name]).fetchall()
    old_ids = [r[0] for r in old]
    if old_ids:
        for table in ("survey_responses", "programme"):
            con.execute(f"DELETE FROM {table} WHERE list_contains(?, file_id)", [old_ids])
        con.execute("DELETE FROM files WHERE list_contains(?, file_id)", [old_ids])
        con.execute("DELETE FROM validation_results WHERE list_contains(?, file_id)", [old_ids])
    if sf.kind == "survey":
        con.execute("DELETE FROM survey_responses WHERE survey_id = ?", [sf.survey_id])
        con.execute("INSERT INTO survey_responses BY NAME SELECT * FROM staging_survey WHERE file_id = ?", [sf.file_id])
    else:
        con.execute(
            """DELETE FROM programme p USING (
                           SELECT DISTINCT fiscal_year, pref_code, metric_id FROM staging_programme
                           WHERE file_id = ?) k
                       WHERE p.fiscal_year = k.fiscal_year AND p.pref_code = k.pref_code
                         AND p.metric_id = k.metric_id""",
            [sf.file_id],
        )
        con.execute("INSERT INTO programme SELECT * FROM staging_programme WHERE file_id = ?", [sf.file_id])
    con.execute(
        "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            sf.file_id,
            sf.file_name,
            str(sf.path),
            sf.kind,
            sf.survey_id,
            sf.survey_year,
            sf.encoding,
            sf.row_count,
            sf.synthetic,
            datetime.now(timezone.utc).replace(tzinfo=None),
        ],
    )
    return bool(old_ids)


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given; folders -> their *.csv, *.xlsx, *.parquet (sorted), other files ignored."""
    files: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError("PATH", f"'{p}' does not exist / ファイルがありません")
    unique = []
    for f in files:  # the same file given twice (or via its folder) is read once
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def _line(sf: StagedFile, verb_en: str, verb_ja: str) -> str:
    what = f"survey {sf.survey_id}" if sf.kind == "survey" else "programme"
    what_ja = f"調査 {sf.survey_id}" if sf.kind == "survey" else "施策データ"
    return printable(
        f"{sf.file_name}: {verb_en} {sf.row_count:,} rows ({what}) / {verb_ja} {sf.row_count:,}行（{what_ja}）"
    )


def ingest_files(
    paths: list[Path], warehouse: Path, encoding: str | None = None, mapping: Path | None = None, validate: bool = True
) -> IngestResult:
    """Load raw files into staging, validate, and commit them to the warehouse in one transaction."""
    files = expand_paths(paths)
    if not files:
        raise UsageError("PATH", "no CSV, XLSX or Parquet files / CSV・XLSX・Parquet ファイルがありません")
    # Guards before anything is read: size (a stat), then rows (CSV lines counted while hashing).
    for f in files:
        size = f.stat().st_size
        if size > config.MAX_INPUT_BYTES:
            raise DataError(
                f.name,
                RULE_TOO_LARGE,
                detail=f"{size:,} bytes > limit {config.MAX_INPUT_BYTES:,} bytes "
                f"(TSUNAGARI_MAX_INPUT_BYTES) / 上限 {config.MAX_INPUT_BYTES:,} バイトを超えています",
            )
    for f in files:  # XLSX: expanded size, compression ratio, shared strings (zip bombs)
        if f.suffix.lower() == ".xlsx":
            xlsx.check_archive_once(f)
    max_rows = max_input_rows()
    scanned: list[tuple[Path, str]] = []
    for f in files:
        fid, lines = scan_file(f)
        if f.suffix.lower() == ".csv" and lines - 1 > max_rows:
            raise _too_many_rows(f.name, lines - 1, max_rows, "lines after the header")
        scanned.append((f, fid))
    # The same bytes under several names (a copy dropped beside the original): one is loaded, the
    # one whose name declares the survey (national-2024.csv) rather than its copy.
    copies: dict[str, list[Path]] = {}
    for f, fid in scanned:
        copies.setdefault(fid, []).append(f)
    chosen = {
        fid: min(fs, key=lambda p: (declared_survey(p) is None, len(p.name), p.name)) for fid, fs in copies.items()
    }
    maps = load_mapping(mapping)
    result = IngestResult()
    warehouse = Path(warehouse)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = warehouse_db.connect(warehouse, write=True)
    try:
        ensure_tables(con)
        pending: list[tuple[Path, str]] = []
        names: dict[str, Path] = {}
        for f, fid in scanned:
            if f.name in names:
                raise DataError(f.name, RULE_DUPLICATE_NAME, examples=[str(names[f.name]), str(f)])
            names[f.name] = f
            known = con.execute("SELECT file_name FROM files WHERE file_id = ?", [fid]).fetchone()
            if known:
                result.skipped.append(f.name)
                extra = "" if known[0] == f.name else f" (= {known[0]})"
                result.lines.append(printable(f"{f.name}: skipped, already loaded{extra} / 読み込み済みのためスキップ"))
                continue
            if chosen[fid] is not f:
                same = chosen[fid].name
                result.skipped.append(f.name)
                result.lines.append(
                    printable(f"{f.name}: skipped, same content as {same} / {same} と同じ内容のためスキップ")
                )
                continue
            pending.append((f, fid))
        if not pending:
            return result
        if validate:
            start_validation_warm_up()  # while the files are read

        # Staging is scratch space, filled outside the transaction (autocommit): DuckDB keeps every
        # row written inside an open transaction in memory until commit, so large files staged inside
        # it would all be held in memory. Only the change to the committed tables is one transaction.
        _clear_staging(con)
        try:
            surveys: dict[str, str] = {}
            for f, fid in pending:
                t0 = time.perf_counter()
                prepared = prepare_file(f, fid, maps, encoding, max_rows)
                sf = prepared.staged
                if sf.survey_id is not None:
                    if sf.survey_id in surveys:
                        raise DataError(
                            f.name,
                            RULE_DUPLICATE_SURVEY,
                            column="survey_id",
                            examples=[sf.survey_id],
                            detail=f"also in {surveys[sf.survey_id]}",
                        )
                    surveys[sf.survey_id] = f.name
                _stage(con, prepared)
                del prepared
                result.staged.append(sf)
                log.info("staged %s: %d rows in %.1f s", printable(f.name), sf.row_count, time.perf_counter() - t0)

            check = _validator() if validate else None
            if check is not None:
                report = check(con, result.staged)
                result.validation = report
                if report.has_critical:
                    raise report.to_error()

            con.execute("BEGIN TRANSACTION")
            try:
                for sf in result.staged:
                    if _commit_file(con, sf):
                        result.replaced.append(sf.file_name)
                        result.lines.append(_line(sf, "replaced earlier version with", "旧版を置き換え"))
                    else:
                        result.loaded.append(sf.file_name)
                        result.lines.append(_line(sf, "loaded", "読み込み"))
                if result.validation is not None:  # kept with the files (quality page reuses them)
                    from pipelines.validate.stage import store_results

                    store_results(con, result.validation)
                con.execute("COMMIT")
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:  # the connection may already have aborted the transaction
                    log.exception("rollback failed")
                raise
        finally:
            # The committed tables hold the data now (or were left untouched): empty the scratch copy,
            # which would otherwise double the warehouse.
            try:
                _clear_staging(con)
            except duckdb.Error:
                log.exception("could not empty the staging tables")
    finally:
        con.close()
    return result


def _clear_staging(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM staging_survey")
    con.execute("DELETE FROM staging_programme")


def has_new_inputs(input_dir: Path, warehouse: Path) -> bool:
    """Whether `ingest_dir` would load anything: a file whose bytes are not yet in the warehouse.
    A cheap look-ahead (hashes only, reads no rows) that never raises: the build uses it to start
    the report kernels while ingest runs."""
    try:
        files = expand_paths([Path(input_dir)])
        if not Path(warehouse).exists():
            return bool(files)
        con = warehouse_db.connect(warehouse)
        try:
            known = {r[0] for r in con.execute("SELECT file_id FROM files").fetchall()}
        finally:
            con.close()
        return any(scan_file(f)[0] not in known for f in files)
    except Exception:
        return True


def ingest_dir(input_dir: Path, warehouse: Path, **kw) -> IngestResult:
    """Ingest every CSV/XLSX/Parquet file of one folder (see ingest_files)."""
    return ingest_files([Path(input_dir)], warehouse, **kw)
