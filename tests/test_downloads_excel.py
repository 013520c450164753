"""Downloads for Excel users (issue #23 item 6) on the files of a real build.

A build of a small synthetic sample (the session's shared build of Tottori's report,
tests/shared_builds.py; every round's downloads, the series of every round, the 47 prefecture
workbooks, the data dictionary, the downloads page) is checked as an Excel user and a script see it:

* every CSV and every data sheet: line / row 1 the Japanese headers, 2 the column codes, the
  synthetic flag on every data row (the sample is synthetic); UTF-8 with BOM; the notes sheets
  state it in their first row;
* LibreOffice (headless) opens each kind of file (a round's CSV, the series CSV, the dictionary,
  a round's workbook, the series workbook, a prefecture workbook) and reads the same (skipped,
  saying so, when ``soffice`` is not installed; .ci/run installs libreoffice-calc-nogui);
* the workbooks: header rows frozen, an autofilter on the code row over the data, styled headers,
  column widths, the dictionary sheet (openpyxl);
* every numeric column at its published precision;
* the downloads page lists every file in downloads/ with its size, and its data dictionary
  describes every column of every file.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from pipelines.domain import schema
from pipelines.outputs import downloads as dl
from pipelines.outputs.site import download_files, fmt_size
from tests.shared_builds import shared_build

YEAR = 2024
SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
# Decimals of each numeric column as published (None: a p-value, 3 significant digits).
PRECISION = {
    **dict.fromkeys(("year", "n_unweighted", "previous_year"), 0),
    **dict.fromkeys(
        (
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
            "n_effective",
            "reference_n_effective",
            "previous_n_effective",
        ),
        1,
    ),
    "design_effect": 2,
    "lead_cv": 3,
    "p_value": None,
    "change_p_value": None,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site of the session's shared Tottori build (test_build.py builds on copies of it): read
    only (LibreOffice opens copies of the files)."""
    return shared_build(tmp_path_factory, "tottori", prefs=[31]) / "site"


def _csv_rows(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), f"{path.name}: no BOM (Excel would not read the Japanese)"
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def _data_files(site: Path) -> list[Path]:
    """The data CSVs (every round's, the series'; not the dictionary)."""
    return sorted(p for p in (site / "downloads").glob("indicators*.csv"))


def _check_table(name: str, rows: list[list], flag: object = "True") -> list[str]:
    """A data table as read back: row 1 Japanese, row 2 the codes in the dictionary's order, the
    synthetic flag on every data row. Returns the codes."""
    ja, codes = [str(v) for v in rows[0]], [str(v) for v in rows[1]]
    order = [c.code for c in dl.COLUMNS]
    assert codes == [c for c in order if c in codes], f"{name}: codes not in the dictionary's order"
    assert set(schema.INDICATOR_COLUMNS) <= set(codes), name  # every contract column, by its name
    assert ja == [dl.HEADER_JA[c] for c in codes], f"{name}: first row is not the Japanese headers"
    assert all(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", h) for h in ja), name
    assert codes[0] == "synthetic" and ja[0] == "合成データ", name
    data = rows[2:]
    assert data, f"{name}: no data rows"
    assert all(type(r[0]) is type(flag) and r[0] == flag for r in data), f"{name}: a data row without the flag"
    return codes


# --- The files as written ------------------------------------------------------------------------


def test_every_csv_has_japanese_headers_then_codes_and_the_synthetic_flag(site):
    files = _data_files(site)
    assert {p.name for p in files} >= {
        "indicators.csv",
        "indicators-2022.csv",
        "indicators-2023.csv",
        f"indicators-{YEAR}.csv",
    }
    for p in files:
        _check_table(p.name, _csv_rows(p))
    # the recipe of the downloads page and the README
    df = pd.read_csv(site / "downloads" / "indicators.csv", header=1, dtype={"area_code": str})
    assert sorted(df.year.unique()) == [2022, 2023, YEAR] and df.synthetic.all()
    assert set(df.area_code) >= {"00", "01", "31", "47"}
    # the dictionary: its own two header rows, a row for every column of the data files
    rows = _csv_rows(site / "downloads" / dl.DICTIONARY_FILE)
    assert rows[:2] == dl.dictionary_headers()
    assert [r[1] for r in rows[2:]] == [c.code for c in dl.COLUMNS]
    assert all(all(cell.strip() for cell in r) for r in rows[2:]), "a dictionary entry left empty"


def test_codes_have_a_japanese_label_column_before_them(site):
    df = pd.read_csv(site / "downloads" / f"indicators-{YEAR}.csv", header=1, dtype={"area_code": str})
    cols = list(df.columns)
    for code, label in (
        ("comparison", "comparison_ja"),
        ("change_vs_previous", "change_vs_previous_ja"),
        ("source", "source_ja"),
        ("comparison_method", "comparison_method_ja"),
        ("change_method", "change_method_ja"),
        ("estimate_method", "estimate_method_ja"),
        ("unit", "unit_ja"),
        ("breakdown", "breakdown_ja"),
        ("indicator_id", "indicator_name_ja"),
    ):
        assert cols.index(label) < cols.index(code), (label, code)
        pairs = df[[label, code]].dropna().drop_duplicates()
        assert len(pairs) and not (pairs[label] == pairs[code]).any(), f"{label} repeats the code"
        assert pairs[label].str.contains(r"[\u3040-\u30ff\u4e00-\u9fff%]").all(), label
    assert set(df.comparison_method_ja) >= {"Newcombe区間", "当該県を除く全国と比較（Newcombe区間）"}
    assert "県独自調査" in set(df.source_ja) and "全国調査の当該県回答者" in set(df.source_ja)


def test_numbers_are_rounded_as_published(site):
    """Every numeric column of the downloads at the precision the reports, the site and the quality
    page show (a numeric column without a stated precision fails)."""
    text = (site / "downloads" / "indicators.csv").read_text(encoding="utf-8-sig")
    df = pd.read_csv(io.StringIO(text), header=1, dtype=str, keep_default_na=False)
    numeric = [
        c
        for c in df.columns
        if c not in ("area_code", "synthetic", "suppressed", "source_changed")
        and pd.to_numeric(df[c].replace("", np.nan), errors="coerce").notna().sum() == df[c].ne("").sum() > 0
    ]
    assert set(numeric) == set(PRECISION), set(numeric) ^ set(PRECISION)
    for c, k in PRECISION.items():
        cells = df.loc[df[c].ne(""), c]
        if k is None:
            assert all(float(f"{float(x):.3g}") == float(x) for x in cells), c
        else:
            decimals = cells.str.partition(".")[2].str.len()
            assert decimals.max() <= k, (c, cells[decimals > k].head(3).tolist())
    # rates per 10,000 to 0.1, as the reports show them (not 0.01)
    rates = df.loc[df.unit.eq("per_10k") & df.value.ne(""), "value"]
    assert len(rates) and rates.str.fullmatch(r"-?\d+(\.\d)?").all()


def test_workbooks_have_frozen_headers_filters_and_the_flag(site):
    names = ["indicators.xlsx", f"indicators-{YEAR}.xlsx", f"31-tottori-{YEAR}.xlsx", f"13-tokyo-{YEAR}.xlsx"]
    for name in names:
        wb = load_workbook(site / "downloads" / name)
        titles = wb.sheetnames
        assert titles[-1] == dl.DICTIONARY_SHEET, (name, titles)
        data = titles[:1] if name.startswith("indicators") else titles[:2]  # prefecture, 全国
        for t in data + [dl.DICTIONARY_SHEET]:
            ws = wb[t]
            last = ws.cell(2, ws.max_column).column_letter
            assert ws.freeze_panes == "A3", (name, t)
            assert ws.auto_filter.ref == f"A2:{last}{ws.max_row}", (name, t, ws.auto_filter.ref)
            assert ws["A1"].font.b and ws["A1"].alignment.wrapText and ws["A2"].font.i, (name, t)
            widths = [ws.column_dimensions[ws.cell(1, j).column_letter].width for j in range(1, ws.max_column + 1)]
            assert all(8 <= w <= 60 for w in widths), (name, t, widths)
        for t in data:
            ws = wb[t]
            rows = [[c.value for c in r] for r in ws.iter_rows()]
            codes = _check_table(f"{name}[{t}]", rows, flag=True)
            widths = {c: ws.column_dimensions[ws.cell(1, j + 1).column_letter].width for j, c in enumerate(codes)}
            assert widths["note"] > widths["year"] and widths["indicator_name_ja"] > widths["value"]
        notes = wb[titles[len(data)]]
        assert "合成" in str(notes["A2"].value) and "合成" in str(notes["B2"].value), name  # stated first
        d = [[c.value for c in r] for r in wb[dl.DICTIONARY_SHEET].iter_rows()]
        assert d[:2] == dl.dictionary_headers() and [r[1] for r in d[2:]] == [c.code for c in dl.COLUMNS]
    # a script reads a sheet as the CSV
    xl = pd.read_excel(site / "downloads" / f"indicators-{YEAR}.xlsx", sheet_name=0, header=1, dtype={"area_code": str})
    one = pd.read_csv(site / "downloads" / f"indicators-{YEAR}.csv", header=1, dtype={"area_code": str})
    assert list(xl.columns) == list(one.columns) and len(xl) == len(one)
    assert (xl.area_code == one.area_code).all()


# --- LibreOffice ---------------------------------------------------------------------------------


def _soffice(args: list[str], out: Path, profile: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # its own profile: parallel runs (pytest -n) do not share LibreOffice's user installation
    cmd = [
        SOFFICE,
        f"-env:UserInstallation={profile.as_uri()}",
        "--headless",
        "--norestore",
        # every sheet, UTF-8, comma, quoted text
        "--convert-to",
        "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1",
        "--outdir",
        str(out),
        *args,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def _read(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


@pytest.mark.skipif(
    SOFFICE is None, reason="LibreOffice (soffice) not installed: apt-get install libreoffice-calc-nogui"
)
def test_libreoffice_opens_every_kind_of_file(site, tmp_path):
    profile = tmp_path / "lo-profile"
    csvs = ["indicators.csv", f"indicators-{YEAR}.csv", dl.DICTIONARY_FILE]
    xlsx = ["indicators.xlsx", f"indicators-{YEAR}.xlsx", f"31-tottori-{YEAR}.xlsx"]
    # copies of the published files: LibreOffice may leave lock files beside what it opens, and the
    # build is shared with other tests
    d = tmp_path / "downloads"
    d.mkdir()
    for n in csvs + xlsx:
        shutil.copy2(site / "downloads" / n, d / n)
    # CSV: opened as UTF-8 (the BOM is Excel's cue; LibreOffice is told the character set)
    _soffice(["--infilter=CSV:44,34,76,1", *(str(d / n) for n in csvs)], tmp_path / "csv", profile)
    _soffice([str(d / n) for n in xlsx], tmp_path / "xlsx", profile)
    out = {p.name: p for p in (tmp_path / "csv").iterdir()} | {p.name: p for p in (tmp_path / "xlsx").iterdir()}

    def sheet(stem: str, title: str) -> list[list[str]]:
        name = f"{stem}-{title}.csv"
        assert name in out, (name, sorted(out))
        return _read(out[name])

    for n in csvs[:2]:
        rows = sheet(n[:-4], n[:-4])
        _check_table(f"LibreOffice {n}", rows, flag="TRUE")
        assert len(rows) == len(_csv_rows(d / n))
    dictionary = sheet("data-dictionary", "data-dictionary")
    assert dictionary[:2] == dl.dictionary_headers() and len(dictionary) == len(dl.COLUMNS) + 2
    for n in xlsx:
        stem = n[:-5]
        wb = load_workbook(d / n, read_only=True)
        titles = wb.sheetnames
        wb.close()
        data = titles[:1] if n.startswith("indicators") else titles[:2]
        for t in data:
            rows = sheet(stem, t)
            _check_table(f"LibreOffice {n}[{t}]", rows, flag="TRUE")
        notes = sheet(stem, titles[len(data)])
        assert "合成" in notes[1][0] and "合成" in notes[1][1], n
        assert sheet(stem, dl.DICTIONARY_SHEET)[:2] == dl.dictionary_headers()
    # LibreOffice reads the numbers as numbers, the codes as text
    rows = sheet(f"indicators-{YEAR}", "指標 (indicators)")
    codes = rows[1]
    first = dict(zip(codes, rows[2]))
    assert first["year"] == str(YEAR) and first["area_code"] == "00" and float(first["value"]) >= 0


# --- The downloads page --------------------------------------------------------------------------


def test_the_downloads_page_lists_every_file_with_its_size_and_the_dictionary(site):
    html = (site / "downloads" / "index.html").read_text(encoding="utf-8")
    files = download_files(site)
    names = {n for n, _ in files}
    assert {"indicators.csv", "indicators.xlsx", dl.DICTIONARY_FILE, f"31-tottori-{YEAR}.xlsx"} <= names
    assert {f"indicators-{y}.{e}" for y in (2022, 2023, YEAR) for e in ("csv", "xlsx")} <= names
    assert sum(bool(re.fullmatch(r"\d{2}-[a-z]+-\d{4}\.xlsx", n)) for n in names) == 47
    listed = dict(
        re.findall(r'<a href="([^"/]+)">[^<]*</a> <span class="size" data-bytes="(\d+)">（[^）]+）</span>', html)
    )
    for name, size in files:
        assert name in listed, f"{name} is not listed"
        assert int(listed[name]) == size == (site / "downloads" / name).stat().st_size, name
        assert f'data-bytes="{size}">（{fmt_size(size)}）' in html
    assert set(listed) == names
    # the series of every round and each round are linked; how to read the files is said
    assert 'id="h-series"' in html and 'id="h-rounds"' in html and "header=1" in html
    for y in (2022, 2023, YEAR):
        assert f'<th scope="row">{y}年' in html
    # the dictionary: every column of every file, with its Japanese header, code, meaning and format
    rows = re.findall(
        r"<tr><th scope=\"row\">([^<]+)</th><td><code>([^<]+)</code></td><td>([^<]+)</td>"
        r"<td>([^<]+)</td></tr>",
        html,
    )
    assert [r[1] for r in rows] == [c.code for c in dl.COLUMNS]
    assert all(r[0] == dl.HEADER_JA[r[1]] and r[2] and r[3] for r in rows)
    used = set()
    for p in _data_files(site):
        used |= set(_csv_rows(p)[1])
    for name in ("indicators.xlsx", f"31-tottori-{YEAR}.xlsx"):
        wb = load_workbook(site / "downloads" / name, read_only=True)
        used |= {c.value for c in next(wb.worksheets[0].iter_rows(min_row=2, max_row=2))}
        wb.close()
    assert used <= {r[1] for r in rows}, used - {r[1] for r in rows}
    assert "合成データ" in html and "synthetic" in html
