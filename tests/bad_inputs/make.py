"""The bad-input corpus: small files that each break one rule (or look wrong but are fine).

Nothing here is committed as data: every case is generated on demand, deterministically, so the
corpus stays tiny in the repository and its bytes are the same on every machine. ``CASES`` maps a
case id to a writer ``f(folder) -> [paths]``; tests/test_bad_inputs.py runs each one through
``tsunagari ingest`` (and a few through ``tsunagari build``) and README.md beside this file lists the
expected outcomes.

To look at the files by hand::

    python tests/bad_inputs/make.py /tmp/bad      # one sub-folder per case
    tsunagari ingest /tmp/bad/mixed_encodings --warehouse /tmp/w.duckdb
"""

from __future__ import annotations

import csv
import io
import random
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from pipelines.domain import schema
from pipelines.ingest.sample import JA_HEADERS

N = 40  # respondents in a survey fixture


# --- Valid rows ----------------------------------------------------------------------------------


def survey_rows(n: int = N, survey_id: str = "national-2024", seed: int = 8) -> list[dict]:
    """Coded survey rows with the contract's English headers (deterministic)."""
    rng = random.Random(seed)
    year = int(survey_id[-4:])
    rows = []
    for i in range(n):
        row = {
            "survey_id": survey_id,
            "survey_year": year,
            "respondent_id": f"B{i + 1:04d}",
            "pref_code": rng.choice([1, 13, 27, 31, 47]),
            "sex": rng.choice([1, 2]),
            "age": rng.randint(16, 95),
            "household_single": rng.choice([0, 1]),
            "weight": rng.choice([0.5, 1.0, 1.5]),
        }
        for q, labels in schema.QUESTIONS.items():
            row[q] = rng.choice(sorted(labels))
        # q_support_received is asked only of those with worries (a warning rule): keep it clean
        if row["q_has_worries"] != 1:
            row["q_support_received"] = 9
        rows.append(row)
    return rows


def japanese(rows: list[dict]) -> list[dict]:
    """The same rows with Japanese headers and Japanese answer labels (non-ASCII in every row)."""
    out = []
    for r in rows:
        o = {}
        for col, v in r.items():
            if col == "sex":
                v = schema.SEX[v]
            elif col == "household_single":
                v = schema.YES_NO[v]
            elif col in schema.QUESTIONS:
                v = schema.QUESTIONS[col][v]
            o[JA_HEADERS[col]] = v
        out.append(o)
    return out


def programme_rows(year: int = 2024) -> list[dict]:
    return [
        {"fiscal_year": year, "pref_code": p, "metric_id": m, "value": v, "unit": u, "source": "合成データ"}
        for p in (13, 31)
        for m, v, u in (("consultations_phone", 1000 + p, "count"), ("platform", 1, "flag"))
    ]


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_text(rows).encode(encoding))
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list[object]]], merge: dict[str, list[str]] | None = None) -> Path:
    """An XLSX with the given sheets (rows of cells) and merged ranges per sheet."""
    import openpyxl

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
        for rng in (merge or {}).get(name, []):
            ws.merge_cells(rng)
    wb.save(path)
    return path


def table(rows: list[dict]) -> list[list[object]]:
    return [list(rows[0])] + [list(r.values()) for r in rows]


# --- The cases -----------------------------------------------------------------------------------
# Each writer puts its file(s) in `d` and returns their paths.


def empty_csv(d: Path) -> list[Path]:
    p = d / "national-2024.csv"
    p.write_bytes(b"")
    return [p]


def empty_xlsx(d: Path) -> list[Path]:
    p = d / "national-2024.xlsx"
    p.write_bytes(b"")
    return [p]


def header_only(d: Path) -> list[Path]:
    p = d / "national-2024.csv"
    p.write_text(",".join(survey_rows(1)[0]) + "\r\n", encoding="utf-8")
    return [p]


def truncated_csv(d: Path) -> list[Path]:
    """Cut in the middle of row 21 (after its 7th field): the copy stopped half-way."""
    p = d / "national-2024.csv"
    lines = csv_text(survey_rows()).split("\r\n")
    head = "\r\n".join(lines[:21]) + "\r\n"
    cut = ",".join(lines[21].split(",")[:7])
    p.write_text(head + cut, encoding="utf-8")
    return [p]


def truncated_csv_mid_character(d: Path) -> list[Path]:
    """A Japanese UTF-8 file cut inside a multi-byte character."""
    p = d / "national-2024.csv"
    data = csv_text(japanese(survey_rows())).encode("utf-8")
    cut = len(data) // 2
    while (data[cut] & 0xC0) != 0x80:  # move onto a continuation byte: mid-character
        cut += 1
    p.write_bytes(data[:cut])
    return [p]


def truncated_xlsx(d: Path) -> list[Path]:
    p = write_xlsx(d / "national-2024.xlsx", {"data": table(survey_rows())})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return [p]


def truncated_parquet(d: Path) -> list[Path]:
    p = d / "national-2024.parquet"
    pd.DataFrame(survey_rows()).to_parquet(p, index=False)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return [p]


def cp932_file(d: Path) -> list[Path]:
    """A Japanese CP932 (Shift_JIS) file: fine by itself, wrong with --encoding utf-8."""
    return [write_csv(d / "national-2024.csv", japanese(survey_rows()), encoding="cp932")]


def utf8_file(d: Path) -> list[Path]:
    """A Japanese UTF-8 file: fine by itself, mojibake with --encoding cp932."""
    return [write_csv(d / "national-2024.csv", japanese(survey_rows()), encoding="utf-8")]


def utf8_programme(d: Path) -> list[Path]:
    """Programme data with ASCII headers and codes: only the free-text source is Japanese, so a
    wrong --encoding cp932 would garble it silently (no header or label to fail)."""
    rows = programme_rows()
    for r in rows:
        r["source"] = "東京都調査"  # its UTF-8 bytes happen to decode as CP932: 譚ｱ莠ｬ驛ｽ隱ｿ譟ｻ
    return [write_csv(d / "programme.csv", rows, encoding="utf-8")]


def mixed_encodings(d: Path) -> list[Path]:
    """Header and rows 1-20 in UTF-8, rows 21-40 in CP932 (two exports pasted together)."""
    p = d / "national-2024.csv"
    lines = csv_text(japanese(survey_rows())).split("\r\n")
    first = "\r\n".join(lines[:21]) + "\r\n"
    second = "\r\n".join(lines[21:])
    p.write_bytes(first.encode("utf-8") + second.encode("cp932"))
    return [p]


def mixed_encodings_cp932_first(d: Path) -> list[Path]:
    """The other way round: header and rows 1-20 in CP932, rows 21-40 in UTF-8."""
    p = d / "national-2024.csv"
    lines = csv_text(japanese(survey_rows())).split("\r\n")
    first = "\r\n".join(lines[:21]) + "\r\n"
    second = "\r\n".join(lines[21:])
    p.write_bytes(first.encode("cp932") + second.encode("utf-8"))
    return [p]


def xlsx_merged_header(d: Path) -> list[Path]:
    """Two header rows: a merged group row on top (回答者の属性 over A1:H1, 設問 over I1:R1), the
    column names in row 2. Accepted: the header is the row that names the contract columns."""
    rows = japanese(survey_rows())
    width = len(rows[0])
    top = ["回答者の属性"] + [None] * 7 + ["設問"] + [None] * (width - 9)
    return [
        write_xlsx(
            d / "national-2024.xlsx", {"data": [top] + table(rows)}, merge={"data": ["A1:H1", f"I1:{_col(width)}1"]}
        )
    ]


def xlsx_notes_and_data(d: Path) -> list[Path]:
    """A notes sheet first, the data on the second sheet. Accepted: the one sheet with the
    contract columns is read."""
    notes = [["注記"], ["この調査は合成データです。"], ["作成: 2024年"]]
    return [write_xlsx(d / "national-2024.xlsx", {"注記": notes, "データ": table(japanese(survey_rows()))})]


def xlsx_two_data_sheets(d: Path) -> list[Path]:
    """Two sheets that both have the contract columns: refused (which one is the survey?)."""
    rows = table(survey_rows())
    return [write_xlsx(d / "national-2024.xlsx", {"2024年6月": rows, "2024年7月": rows})]


def xlsx_no_data_sheet(d: Path) -> list[Path]:
    """Several sheets, none with the contract columns."""
    return [
        write_xlsx(
            d / "national-2024.xlsx",
            {"表紙": [["孤独・孤立の実態把握調査"]], "集計": [["項目", "割合"], ["孤独感", 4.8]]},
        )
    ]


def duplicate_ids(d: Path) -> list[Path]:
    rows = survey_rows()
    rows[6]["respondent_id"] = rows[2]["respondent_id"]
    rows[30]["respondent_id"] = rows[2]["respondent_id"]
    return [write_csv(d / "national-2024.csv", rows)]


def code_out_of_range(d: Path) -> list[Path]:
    rows = survey_rows()
    rows[4]["q_loneliness"] = 6
    rows[11]["q_loneliness"] = 6
    return [write_csv(d / "national-2024.csv", rows)]


FULL_WIDTH = str.maketrans("0123456789.", "０１２３４５６７８９．")


def full_width_digits(d: Path) -> list[Path]:
    """Every number written with full-width digits (全角数字), as some Excel exports do."""
    rows = [
        {k: str(v).translate(FULL_WIDTH) if k not in ("survey_id", "respondent_id") else v for k, v in r.items()}
        for r in survey_rows()
    ]
    return [write_csv(d / "national-2024.csv", rows, encoding="cp932")]


def pref_by_name(d: Path) -> list[Path]:
    """Prefecture as a name: 東京都, 東京, 鳥取県, 北海道, Okinawa instead of codes."""
    rows = survey_rows()
    names = {1: "北海道", 13: "東京都", 27: "大阪府", 31: "鳥取県", 47: "Okinawa"}
    for i, r in enumerate(rows):
        r["pref_code"] = "東京" if r["pref_code"] == 13 and i % 2 else names[r["pref_code"]]
    return [write_csv(d / "national-2024.csv", rows)]


def year_contradicts_round(d: Path) -> list[Path]:
    """The file says national-2024 but its rows say survey_year 2023."""
    rows = survey_rows()
    for r in rows:
        r["survey_year"] = 2023
    return [write_csv(d / "national-2024.csv", rows)]


def unknown_pref_code(d: Path) -> list[Path]:
    rows = survey_rows()
    rows[9]["pref_code"] = 48
    return [write_csv(d / "national-2024.csv", rows)]


def unknown_pref_file(d: Path) -> list[Path]:
    """A prefecture survey for 'prefecture 48' (there are 47)."""
    rows = survey_rows(survey_id="pref48-2024")
    for r in rows:
        del r["survey_id"]
    return [write_csv(d / "pref48-2024.csv", rows)]


def programme_negative(d: Path) -> list[Path]:
    rows = programme_rows()
    rows[0]["value"] = -120
    return [write_csv(d / "programme.csv", rows)]


def programme_non_numeric(d: Path) -> list[Path]:
    rows = programme_rows()
    rows[2]["value"] = "多数"
    return [write_csv(d / "programme.csv", rows)]


def huge_sparse(d: Path) -> list[Path]:
    """A 2 GiB file that occupies no disk (sparse): refused by the size guard before it is read."""
    p = d / "national-2024.csv"
    with open(p, "wb") as fh:
        fh.write(csv_text(survey_rows(2)).encode())
        fh.truncate(2 * 1024**3)
    return [p]


def many_rows(d: Path) -> list[Path]:
    """A small file with more rows than TSUNAGARI_MAX_INPUT_ROWS allows (the test sets it to 25)."""
    return [write_csv(d / "national-2024.csv", survey_rows())]


def many_rows_xlsx(d: Path) -> list[Path]:
    return [write_xlsx(d / "national-2024.xlsx", {"data": table(survey_rows())})]


def many_rows_parquet(d: Path) -> list[Path]:
    p = d / "national-2024.parquet"
    pd.DataFrame(survey_rows()).to_parquet(p, index=False)
    return [p]


def dropped_twice(d: Path) -> list[Path]:
    """The same file twice in one folder under two names (a Windows copy): one is loaded."""
    p = write_csv(d / "national-2024.csv", survey_rows())
    q = d / "national-2024 - コピー.csv"
    q.write_bytes(p.read_bytes())
    return [p, q]


# --- Issue #15: inputs that must not exhaust the machine or corrupt silently ------------------------


def weight_1e308(d: Path) -> list[Path]:
    """One respondent weighted 1e308: (Σw)² overflows; published as 0.0% with n_eff NaN before."""
    rows = survey_rows()
    for r in rows:
        r["weight"] = 1.0
    rows[6]["weight"] = "1e308"
    return [write_csv(d / "national-2024.csv", rows)]


def weights_all_1e300(d: Path) -> list[Path]:
    """Every respondent weighted 1e300: the ratio (1) and Kish (n) rules pass, but Σw² overflows and
    every estimate came out NaN (suppressed everywhere) with no message."""
    rows = survey_rows()
    for r in rows:
        r["weight"] = "1e300"
    return [write_csv(d / "national-2024.csv", rows)]


def weight_1e9(d: Path) -> list[Path]:
    rows = survey_rows()
    for r in rows:
        r["weight"] = 1.0
    rows[6]["weight"] = 1e9
    return [write_csv(d / "national-2024.csv", rows)]


def weights_others_tiny(d: Path) -> list[Path]:
    """Every respondent but one weighted 1e-300: that one carries the whole survey."""
    rows = survey_rows()
    for r in rows:
        r["weight"] = "1e-300"
    rows[6]["weight"] = 1.0
    return [write_csv(d / "national-2024.csv", rows)]


# A minimal XLSX written member by member: shared strings (openpyxl writes inline strings only),
# formulas with or without a stored result, and members given as ready deflate streams (a bomb).
_CT = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WB = (
    '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
    '<sheet name="{name}" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WB_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>"
)
_SST_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sheet_xml(rows: list[list[object]], strings: dict[str, int], formulas: dict[str, tuple[str, str | None]]) -> bytes:
    out = [
        '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    ]
    for i, row in enumerate(rows, start=1):
        out.append(f'<row r="{i}">')
        for j, v in enumerate(row, start=1):
            ref = f"{_col(j)}{i}"
            if ref in formulas:
                f, cached = formulas[ref]
                out.append(
                    f'<c r="{ref}"><f>{_esc(f)}</f>' + (f"<v>{cached}</v>" if cached is not None else "") + "</c>"
                )
            elif isinstance(v, str):
                out.append(f'<c r="{ref}" t="s"><v>{strings.setdefault(v, len(strings))}</v></c>')
            else:
                out.append(f'<c r="{ref}"><v>{v}</v></c>')
        out.append("</row>")
    out.append("</sheetData></worksheet>")
    return "".join(out).encode()


def _deflated(data: bytes) -> tuple[bytes, int, int]:
    import zlib

    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(), len(data), zlib.crc32(data)


def write_zip(path: Path, members: list[tuple[str, tuple[bytes, int, int]]]) -> Path:
    """A zip of (name, (raw deflate stream, uncompressed size, crc32)) members, written by hand so a
    member can be a deflate stream made without holding its expanded bytes (sizes < 4 GiB)."""
    import struct

    path.parent.mkdir(parents=True, exist_ok=True)
    central, offset = [], 0
    with open(path, "wb") as fh:
        for name, (comp, size, crc) in members:
            n = name.encode()
            head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(comp), size, len(n), 0)
            fh.write(head + n + comp)
            central.append(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    20,
                    20,
                    0,
                    8,
                    0,
                    0x21,
                    crc,
                    len(comp),
                    size,
                    len(n),
                    0,
                    0,
                    0,
                    0,
                    0,
                    offset,
                )
                + n
            )
            offset += len(head) + len(n) + len(comp)
        cd = b"".join(central)
        fh.write(cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), offset, 0))
    return path


def write_raw_xlsx(
    path: Path,
    rows: list[list[object]],
    sheet: str = "data",
    formulas: dict[str, tuple[str, str | None]] | None = None,
    shared_strings: tuple[bytes, int, int] | None = None,
) -> Path:
    strings: dict[str, int] = {}
    sheet_xml = _sheet_xml(rows, strings, formulas or {})
    if shared_strings is None:
        body = "".join(f"<si><t>{_esc(t)}</t></si>" for t in strings)
        shared_strings = _deflated(_SST_HEAD + body.encode() + b"</sst>")
    return write_zip(
        path,
        [
            ("[Content_Types].xml", _deflated(_CT.encode())),
            ("_rels/.rels", _deflated(_RELS.encode())),
            ("xl/workbook.xml", _deflated(_WB.format(name=sheet).encode())),
            ("xl/_rels/workbook.xml.rels", _deflated(_WB_RELS.encode())),
            ("xl/worksheets/sheet1.xml", _deflated(sheet_xml)),
            ("xl/sharedStrings.xml", shared_strings),
        ],
    )


def bomb_stream(total: int, chunk: bytes, head: bytes = _SST_HEAD, tail: bytes = b"</sst>") -> tuple[bytes, int, int]:
    """A deflate stream of head + chunk repeated to about ``total`` bytes + tail, made by repeating one
    compressed chunk (full flush: each copy stands alone), without expanding it: (stream, size, crc)."""
    import zlib

    def part(data: bytes, final: bool) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)

    k = total // len(chunk)
    crc = zlib.crc32(head)
    for _ in range(k):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(tail, crc)
    stream = part(head, False) + part(chunk, False) * k + part(tail, True)
    return stream, len(head) + k * len(chunk) + len(tail), crc


def _string_chunk(size: int = 1 << 20) -> bytes:
    one = b"<si><t>" + b"A" * 1000 + b"</t></si>"
    return one * (size // len(one))


def xlsx_zip_bomb(d: Path) -> list[Path]:
    """A 2 MB XLSX whose shared strings expand to 2 GiB (read past 5.4 GB of memory before)."""
    return [
        write_raw_xlsx(
            d / "national-2024.xlsx", table(survey_rows()), shared_strings=bomb_stream(2 * 1024**3, _string_chunk())
        )
    ]


def xlsx_high_ratio(d: Path) -> list[Path]:
    """Shared strings of 64 MiB compressed about 1000:1 (under the size limit, over the ratio limit)."""
    return [
        write_raw_xlsx(
            d / "national-2024.xlsx", table(survey_rows()), shared_strings=bomb_stream(64 * 1024**2, _string_chunk())
        )
    ]


def xlsx_shared_strings(d: Path) -> list[Path]:
    """A normal XLSX with shared strings (respondent ids, survey id): the test sets the limit to 30."""
    return [write_raw_xlsx(d / "national-2024.xlsx", table(survey_rows()))]


def xlsx_formula_uncached(d: Path) -> list[Path]:
    """Weights as formulas saved without their results (as a program writes them, e.g. openpyxl):
    read as blank, the good values became NULL silently."""
    rows = table(survey_rows())
    formulas = {f"H{i}": (f"{rows[i - 1][7]}*1", None) for i in (5, 9)}
    formulas["I12"] = ("1+1", None)
    return [write_raw_xlsx(d / "national-2024.xlsx", rows, sheet="データ", formulas=formulas)]


def xlsx_formula_cached(d: Path) -> list[Path]:
    """Formulas saved with their results (as Excel does): the stored results are read."""
    rows = table(survey_rows())
    formulas = {f"H{i}": (f"{rows[i - 1][7]}*1", str(rows[i - 1][7])) for i in range(2, len(rows) + 1)}
    return [write_raw_xlsx(d / "national-2024.xlsx", rows, sheet="データ", formulas=formulas)]


def _with_mapping(d: Path, text: str) -> list[Path]:
    p = write_csv(d / "national-2024.csv", survey_rows())
    m = d / "mapping.yml"
    m.write_text(text, encoding="utf-8")
    return [p, m]


def mapping_billion_laughs(d: Path) -> list[Path]:
    """A 0.6 KB mapping whose aliases expand to 9⁹ values (3.7 GB, then MemoryError, before)."""
    text = "x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, 10):
        text += f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]\n"
    return _with_mapping(d, text + "columns:\n  孤独感: *x9\n")


def mapping_wrong_shape(d: Path) -> list[Path]:
    """Codes given as a list (a traceback before)."""
    return _with_mapping(d, "labels:\n  sex:\n    男性: [1, 2]\n")


def newline_in_name(d: Path) -> list[Path]:
    """A file name with a newline and a forged log line in it, and a bad code inside."""
    rows = survey_rows()
    rows[4]["q_loneliness"] = 6
    return [write_csv(d / "national-2024\n2026-01-01 00:00:00 INFO build OK.csv", rows)]


def future_round(d: Path) -> list[Path]:
    """national-2099.csv (survey_year 2099): became the latest round without a word."""
    return [write_csv(d / "national-2099.csv", survey_rows(survey_id="national-2099"))]


def future_fiscal_year(d: Path) -> list[Path]:
    rows = programme_rows()
    rows[1]["fiscal_year"] = 2099
    return [write_csv(d / "programme.csv", rows)]


def _col(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


CASES: dict[str, Callable[[Path], list[Path]]] = {
    f.__name__: f
    for f in (
        empty_csv,
        empty_xlsx,
        header_only,
        truncated_csv,
        truncated_csv_mid_character,
        truncated_xlsx,
        truncated_parquet,
        cp932_file,
        utf8_file,
        utf8_programme,
        mixed_encodings,
        mixed_encodings_cp932_first,
        xlsx_merged_header,
        xlsx_notes_and_data,
        xlsx_two_data_sheets,
        xlsx_no_data_sheet,
        duplicate_ids,
        code_out_of_range,
        full_width_digits,
        pref_by_name,
        year_contradicts_round,
        unknown_pref_code,
        unknown_pref_file,
        programme_negative,
        programme_non_numeric,
        huge_sparse,
        many_rows,
        many_rows_xlsx,
        many_rows_parquet,
        dropped_twice,
        weight_1e308,
        weights_all_1e300,
        weight_1e9,
        weights_others_tiny,
        xlsx_zip_bomb,
        xlsx_high_ratio,
        xlsx_shared_strings,
        xlsx_formula_uncached,
        xlsx_formula_cached,
        mapping_billion_laughs,
        mapping_wrong_shape,
        newline_in_name,
        future_round,
        future_fiscal_year,
    )
}


def make(case: str, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return CASES[case](folder)


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "bad-inputs")
    for name in CASES:
        for p in make(name, root / name):
            print(p)
