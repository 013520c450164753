"""Statistical disclosure control (issue 8, item 2) on real DuckDB files and real published files.

A tiny area: Tottori (31) has 62 national-survey respondents: 32 men, 28 women, 2 sex 9 (無回答).
Women (28 < 30) are suppressed; with the total and the men shown, the women's value would follow
by subtraction (the 2 sex-9 respondents hardly blur it), so the men are suppressed secondarily.
The men's answers vary (3 of 32 often/always lonely): an exact 0% or 100% on a base under 100 is
itself suppressed (issue 22), which is not what these tests are about.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from test_indicators import create_tables, insert_rows, varied

from pipelines.disclosure import check as disclosure
from pipelines.disclosure.check import check_published, microdata_dumps
from pipelines.domain import audit
from pipelines.indicators.stage import compute_indicators, write_indicators
from pipelines.io import xlsx
from pipelines.outputs.downloads import HEADER_JA, write_download_csv, write_indicator_downloads

IND = "lonely_often_always"


def _rows() -> list[dict]:
    rows = []
    # Tokyo: 1,500 respondents (a large area); Tottori: 32 men (3 often/always lonely, varied
    # answers), 28 women (all often/always lonely), 2 sex 9.
    rows += [dict(pref_code=13, sex=1 + i % 2, q_loneliness=2) for i in range(1500)]
    rows += [dict(pref_code=31, sex=1, **varied(i, 3)) for i in range(32)]
    rows += [dict(pref_code=31, sex=2, q_loneliness=5) for _ in range(28)]
    rows += [dict(pref_code=31, sex=9, q_loneliness=1) for _ in range(2)]
    # Shimane (32): its own survey, so its 80 national respondents are not published as a
    # prefecture: they blur the prefectures within the national figure (40 per sex >= 30).
    rows += [dict(pref_code=32, sex=1 + i % 2, q_loneliness=3) for i in range(80)]
    for i, r in enumerate(rows):
        r.update(survey_id="national-2024", survey_year=2024, respondent_id=f"N2024-{i + 1:06d}")
    own = [
        dict(
            survey_id="pref32-2024",
            survey_year=2024,
            survey_kind="prefecture",
            pref_code=32,
            respondent_id=f"P32-2024-{i + 1:05d}",
            sex=1 + i % 2,
        )
        for i in range(400)
    ]
    return rows + own


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A warehouse with the tiny area, indicators computed and written."""
    path = tmp_path_factory.mktemp("sdc") / "wh.duckdb"
    con = duckdb.connect(str(path))
    create_tables(con)
    insert_rows(con, _rows())
    ind, dist = compute_indicators(con, 2024)
    write_indicators(con, 2024, ind, dist)
    con.close()
    return path


def _site(tmp_path: Path, warehouse: Path) -> Path:
    site = tmp_path / "site"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        write_indicator_downloads(con, 2024, site / "downloads")
        write_indicator_downloads(con, 2024, site / "downloads", area_code="31")
    finally:
        con.close()
    return site


@pytest.fixture(scope="module")
def tiny_site(tiny, tmp_path_factory) -> Path:
    """``_site`` of the tiny warehouse, written once for the module: read only; a test that changes
    it works on its own copy (``_copy``)."""
    return _site(tmp_path_factory.mktemp("sdc-site"), tiny)


@pytest.fixture(scope="module")
def tiny_built_site(tiny, tiny_site, tmp_path_factory) -> Path:
    """``tiny_site`` with the whole site built on it (``build_site``: every page, the 47 prefecture
    workbooks): read only, or copied."""
    from pipelines.outputs.site import build_site

    site = shutil.copytree(tiny_site, tmp_path_factory.mktemp("sdc-built") / "site", symlinks=True)
    build_site(2024, tiny, site)
    return site


def _copy(site: Path, tmp_path: Path) -> Path:
    """A test's own copy of a module's site (as ``_site`` leaves it: ``tmp_path / "site"``)."""
    return shutil.copytree(site, tmp_path / "site", symlinks=True)


def _table(warehouse: Path, name: str) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {name} WHERE year = 2024").df()
    finally:
        con.close()


# --- Primary and secondary suppression in the warehouse tables ------------------------------------


def test_women_primary_men_secondary_in_indicators(tiny):
    ind = _table(tiny, "indicators")
    t = ind[(ind.area_code == "31") & (ind.indicator_id == IND)].set_index("breakdown")
    assert t.loc["total", "n_unweighted"] == 62 and not t.loc["total", "suppressed"]
    assert t.loc["total", "value"] == pytest.approx(31 / 62 * 100)
    w, m = t.loc["sex=2"], t.loc["sex=1"]
    # no base is published for a suppressed row: not in n_unweighted / n_effective, not in the note
    assert pd.isna(w.n_unweighted) and pd.isna(w.n_effective)
    assert w.suppressed and pd.isna(w.value) and pd.isna(w.lower_ci95)
    assert w.note == "出典: 全国調査の当該県回答者 (30人未満); n<30 非表示"
    assert pd.isna(m.n_unweighted) and m.suppressed and pd.isna(m.value) and pd.isna(m.upper_ci95)
    assert m.note == "出典: 全国調査の当該県回答者 (回答者数は非公表); secondary suppression / 二次秘匿"
    assert m.comparison == "not_compared" and m.change_vs_previous == "not_compared"
    # Every survey indicator of Tottori: same rule (all have the whole sample as base here).
    sexes = ind[
        (ind.area_code == "31") & ind.breakdown.isin(["sex=1", "sex=2"]) & ind.note.str.startswith("出典: 全国調査")
    ]
    assert len(sexes) and sexes.suppressed.all() and sexes.value.isna().all()
    # Tokyo (750 / 750) keeps both.
    tokyo = ind[(ind.area_code == "13") & (ind.indicator_id == IND) & ind.breakdown.str.startswith("sex=")]
    assert not tokyo.suppressed.any()


def test_women_primary_men_secondary_in_distributions(tiny):
    dist = _table(tiny, "distributions")
    d = dist[(dist.area_code == "31") & (dist.question == "q_loneliness")]
    for b in ("sex=1", "sex=2"):
        cell = d[d.breakdown == b]
        assert len(cell) == 6 and cell.suppressed.all() and cell.value.isna().all(), b
    total = d[d.breakdown == "total"]
    assert not total.suppressed.any() and total.value.sum() == pytest.approx(100.0)


def test_without_secondary_suppression_the_women_are_recoverable(tiny, tmp_path, monkeypatch):
    """The attack the protection stops: total x 62 - men x 32 - (sex 9: 0..2) = women x 28: at most
    2 of the 28 women are not lonely. (The downloads round the shares to 0.1 point: the counts still
    follow, and the check still finds it.)"""
    shutil.copy(tiny, tmp_path / "wh.duckdb")
    monkeypatch.setattr(audit, "protect", lambda frame, subsample, **kw: np.zeros(len(frame), dtype=bool))
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    ind, dist = compute_indicators(con, 2024)
    write_indicators(con, 2024, ind, dist)
    con.close()
    t = ind[(ind.area_code == "31") & (ind.indicator_id == IND)].set_index("breakdown")
    assert not t.loc["sex=1", "suppressed"]
    lo = (t.loc["total", "value"] * 62 - t.loc["sex=1", "value"] * 32 - 2 * 100) / 28
    hi = (t.loc["total", "value"] * 62 - t.loc["sex=1", "value"] * 32) / 28
    assert lo >= 92.8 and hi == pytest.approx(100.0)  # the hidden 100 % to within 7 points
    # ... and the published-output check catches it, naming the cell and the derivation.
    monkeypatch.undo()
    findings = check_published(_site(tmp_path, tmp_path / "wh.duckdb"), tmp_path / "wh.duckdb")
    hits = [f for f in findings if f.rule == "suppressed cell recoverable / 差し引きで絞り込める非表示セル"]
    assert any(f.file == "downloads/indicators-2024.csv" for f in hits)
    assert any(f.file.startswith("downloads/indicators-2024-31.xlsx[") for f in hits)
    assert "31 lonely_often_always sex=2: complement in [0, 2] from total - sex=1" in hits[0].detail


def test_an_exact_base_of_a_suppressed_row_is_found(tiny, tiny_site, tmp_path):
    site = _copy(tiny_site, tmp_path)
    path = site / "downloads" / "indicators-2024.csv"
    csv = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", header=1)
    k = csv.index[(csv.area_code == "31") & (csv.indicator_id == IND) & (csv.breakdown == "sex=2")][0]
    csv.loc[k, "n_unweighted"] = "28"
    write_download_csv(csv, path)
    findings = check_published(site, tiny)
    assert [(f.file, f.rule) for f in findings] == [
        ("downloads/indicators-2024.csv", "base of a suppressed cell / 非表示セルの回答者数")
    ]
    assert f"file rows {k + 3}" in findings[0].detail  # two header lines: data row k is file line k + 3


# --- Published downloads ----------------------------------------------------------------------------


def test_downloads_do_not_carry_the_hidden_values(tiny, tiny_site, tmp_path):
    site = _copy(tiny_site, tmp_path)
    assert check_published(site, tiny) == []
    csv = pd.read_csv(
        site / "downloads" / "indicators-2024.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig", header=1
    )
    rows = csv[(csv.area_code == "31") & csv.breakdown.isin(["sex=1", "sex=2"]) & (csv.note != "")]
    assert len(rows) > 0
    assert (rows[["value", "lower_ci95", "upper_ci95", "n_unweighted", "n_effective"]] == "").all().all()
    assert "respondent_id" not in csv.columns
    xl = pd.read_excel(site / "downloads" / "indicators-2024-31.xlsx", sheet_name=0, dtype=str, header=1)
    xl = xl[xl["breakdown"].isin(["sex=1", "sex=2"]) & xl["note"].str.startswith("出典: 全国", na=False)]
    assert len(xl) > 0 and xl["value"].isna().all() and xl["n_unweighted"].isna().all()


def test_a_value_on_a_small_base_in_a_download_is_found(tiny, tiny_site, tmp_path):
    site = _copy(tiny_site, tmp_path)
    path = site / "downloads" / "indicators-2024.csv"
    csv = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", header=1)
    k = csv.index[(csv.area_code == "31") & (csv.indicator_id == IND) & (csv.breakdown == "sex=2")][0]
    csv.loc[k, "value"] = "100.0"
    write_download_csv(csv, path)
    findings = check_published(site, tiny)
    assert [(f.file, f.rule) for f in findings] == [
        ("downloads/indicators-2024.csv", "value on a base < 30 or suppressed / 非表示の値")
    ]
    assert f"file rows {k + 3}" in findings[0].detail
    # The same row found whatever the header: codes only (one header line), or Japanese headers
    # only (the row of codes lost, e.g. deleted in Excel and saved again).
    csv.to_csv(path, index=False, encoding="utf-8-sig")
    findings = check_published(site, tiny)
    assert [f.rule for f in findings] == ["value on a base < 30 or suppressed / 非表示の値"]
    assert f"file rows {k + 2}" in findings[0].detail
    csv.rename(columns=HEADER_JA).to_csv(path, index=False, encoding="utf-8-sig")
    findings = check_published(site, tiny)
    assert [f.rule for f in findings] == ["value on a base < 30 or suppressed / 非表示の値"]
    assert f"file rows {k + 2}" in findings[0].detail


def test_the_two_header_rows_are_read_in_every_download(tiny, tiny_site, tmp_path):
    """The check reads the row of codes as the header of every table that has one (CSV, the data
    sheets, the dictionary); a sheet without one (the notes) keeps its first row; and a tampered
    workbook sheet is found in its sheet rows (row 1 Japanese, row 2 codes, data from row 3)."""
    from pipelines.disclosure.check import _frame
    from pipelines.io.xlsx import read_sheets

    site = _copy(tiny_site, tmp_path)
    assert check_published(site, tiny) == []
    sheets = {t: _frame(rows) for t, rows, _ in read_sheets(site / "downloads" / "indicators-2024.xlsx")}
    data, notes, dictionary = sheets.values()
    assert "year" in data.columns and "value" in data.columns and data.attrs["first_line"] == 3
    assert data.attrs["above"] == [" ".join(HEADER_JA[c] for c in data.columns)]
    assert list(dictionary.columns) == ["header_ja", "code", "meaning", "format", "meaning_en"]
    assert list(notes.columns) == ["項目 (item)", "内容 (text)"] and notes.attrs["first_line"] == 2
    # a value in a suppressed row of the data sheet: found, named by its sheet row
    path = site / "downloads" / "indicators-2024.xlsx"
    k = data.index[(data.area_code == "31") & (data.indicator_id == IND) & (data.breakdown == "sex=2")][0]
    from pipelines.io.xlsx import write_workbook
    from pipelines.outputs.downloads import frame_sheet

    table = data.copy()
    table.loc[k, "value"] = "100.0"
    write_workbook(path, [("指標 (indicators)", *frame_sheet(table))], bold=True)
    findings = check_published(site, tiny, only={"downloads/indicators-2024.xlsx"})
    assert [f.rule for f in findings] == ["value on a base < 30 or suppressed / 非表示の値"]
    assert f"file rows {k + 3}" in findings[0].detail


def test_respondent_rows_in_a_download_are_found(tiny, tiny_site, tmp_path):
    site = _copy(tiny_site, tmp_path)
    con = duckdb.connect(str(tiny), read_only=True)
    micro = con.execute(
        "SELECT respondent_id, pref_code, sex, age, q_loneliness FROM survey_responses ORDER BY respondent_id"
    ).df()
    con.close()
    micro.to_csv(site / "downloads" / "extra.csv", index=False)
    found = {f.rule: f for f in check_published(site, tiny) if f.file == "downloads/extra.csv"}
    assert set(found) == {"respondent_id column / 回答者ID列", "respondent ids / 回答者ID"}
    assert found["respondent ids / 回答者ID"].detail.startswith(
        f"{len(micro)} respondent id(s) of the warehouse appear (N2024-000001, N2024-000002, N2024-000003 ...)"
    )
    # More rows than the indicators table: not aggregates.
    n_ind = len(_table(tiny, "indicators"))
    pd.concat([micro[["pref_code", "sex"]]] * (n_ind // len(micro) + 1)).to_csv(
        site / "downloads" / "extra.csv", index=False
    )
    found = [f for f in check_published(site, tiny) if f.file == "downloads/extra.csv"]
    assert [f.rule for f in found] == ["more rows than the indicators table / 指標表より行が多い"]


# --- Executed notebooks -----------------------------------------------------------------------------


def _notebook(path: Path, outputs: list[dict]) -> None:
    nb = {
        "cells": [{"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "df", "outputs": outputs}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb), encoding="utf-8")


def test_an_executed_notebook_with_a_microdata_dump_is_caught(tiny, tiny_site, tmp_path):
    site = _copy(tiny_site, tmp_path)
    con = duckdb.connect(str(tiny), read_only=True)
    micro = con.execute(
        "SELECT respondent_id, age, sex, q_loneliness FROM survey_responses "
        "WHERE pref_code = 31 ORDER BY respondent_id LIMIT 8"
    ).df()
    con.close()
    # Aggregates only: fine.
    agg = micro.groupby("sex").size().rename("n").reset_index()
    _notebook(
        site / ".work" / "executed" / "31-tottori.ipynb",
        [
            {
                "output_type": "execute_result",
                "execution_count": 1,
                "metadata": {},
                "data": {"text/html": agg.to_html(), "text/plain": repr(agg)},
            }
        ],
    )
    assert check_published(site, tiny) == []
    # A dump of respondent rows (HTML and text repr, as Jupyter shows a DataFrame).
    _notebook(
        site / ".work" / "executed" / "31-tottori.ipynb",
        [
            {
                "output_type": "execute_result",
                "execution_count": 1,
                "metadata": {},
                "data": {"text/html": micro.to_html(), "text/plain": repr(micro)},
            }
        ],
    )
    findings = check_published(site, tiny)
    assert {(f.file, f.rule) for f in findings} == {
        (".work/executed/31-tottori.ipynb", "microdata / 個票データ"),
        (".work/executed/31-tottori.ipynb", "respondent ids / 回答者ID"),
    }
    ids = next(f for f in findings if f.rule.startswith("respondent ids"))
    assert ids.detail.startswith("8 respondent id(s) of the warehouse appear (N2024-001501, N2024-001502, ")
    # The same dump without the id column, printed to stdout in runs/: still microdata.
    (site / ".work" / "executed" / "31-tottori.ipynb").unlink()
    _notebook(
        site / "runs" / "indicators-2024.ipynb",
        [{"output_type": "stream", "name": "stdout", "text": repr(micro.drop(columns="respondent_id"))}],
    )
    findings = check_published(site, tiny)
    assert [(f.file, f.rule) for f in findings] == [("runs/indicators-2024.ipynb", "microdata / 個票データ")]
    assert "a text dump of 8 row(s) with respondent-level columns age, q_loneliness, sex" in findings[0].detail


def test_microdata_dump_detection_rules():
    micro = pd.DataFrame({"age": [30, 41], "sex": [1, 2], "q_loneliness": [5, 1]})
    assert microdata_dumps(html=micro.to_html()) == [
        "a table of 2 row(s) with respondent-level columns age, q_loneliness, sex"
    ]
    assert microdata_dumps(plain=repr(micro)) == [
        "a text dump of 2 row(s) with respondent-level columns age, q_loneliness, sex"
    ]
    # Two respondent-level columns (a cross-tabulation key) are not a dump.
    assert microdata_dumps(html=micro[["sex", "q_loneliness"]].assign(n=[10, 20]).to_html()) == []


# --- Report pages: the suppressed cells show 'x' ----------------------------------------------------


def _pandoc() -> str:
    import pypandoc

    return pypandoc.get_pandoc_path()


def _report_html(warehouse: Path, path: Path, tamper: bool = False) -> None:
    """The breakdown table of the report notebook (reports.breakdown_table), rendered by pandoc."""
    from pipelines.domain import schema
    from pipelines.outputs.reports import breakdown_table, headline_table, load_report_data

    R = load_report_data(warehouse, 2024, 31)
    md = (
        headline_table(R)
        + "\n\n"
        + breakdown_table(R, IND, "sex", {"1": "男性", "2": "女性"})
        + "\n\n"
        + breakdown_table(R, IND, "age", schema.AGE_BAND_LABELS)
    )
    if tamper:  # a report that printed the men's value instead of 'x'
        md = md.replace("| 男性 | x |", "| 男性 | 0.0 |", 1)
    html = subprocess.run(
        [_pandoc(), "-f", "markdown", "-t", "html"], input=md, capture_output=True, text=True, check=True
    ).stdout
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")


def _tottori_page(tiny: Path, tiny_site: Path, tmp_path: Path) -> tuple[Path, Path, str, list[list[str]]]:
    """A site with Tottori's report tables; (site, page, its HTML, its sex breakdown table)."""
    site = _copy(tiny_site, tmp_path)
    page = site / "prefectures" / "31-tottori.html"
    _report_html(tiny, page)
    html = page.read_text(encoding="utf-8")
    return site, page, html, [t for t in disclosure.html_tables(html) if t[0][0] == "区分"][0]


def test_report_tables_show_x_for_suppressed_cells(tiny, tiny_site, tmp_path):
    site, page, _, rows = _tottori_page(tiny, tiny_site, tmp_path)
    assert rows[1][:2] == ["男性", "x"] and rows[2][:2] == ["女性", "x"]
    assert check_published(site, tiny) == []
    _report_html(tiny, page, tamper=True)
    findings = check_published(site, tiny)
    assert [(f.file, f.rule) for f in findings] == [
        ("prefectures/31-tottori.html", "suppressed cell shown / 非表示セルに数値")
    ]
    assert f"{IND} 31 sex=1 shows '0.0'" in findings[0].detail


def test_an_interval_shown_for_a_suppressed_row_is_caught(tiny, tiny_site, tmp_path):
    """The 95% interval of a suppressed cell gives its value away as surely as the value."""
    site, page, text, rows = _tottori_page(tiny, tiny_site, tmp_path)
    assert rows[1][:3] == ["男性", "x", "x"]
    # the men's row: value stays 'x', the interval cell (the second 'x' of the row) becomes numbers
    start = text.index("男性")
    first = text.index(">x<", start)
    second = text.index(">x<", first + 1)
    page.write_text(text[:second] + ">2.1～9.8<" + text[second + 3 :], encoding="utf-8")
    findings = check_published(site, tiny)
    assert [(f.file, f.rule) for f in findings] == [
        ("prefectures/31-tottori.html", "suppressed cell shown / 非表示セルに数値")
    ]
    assert f"{IND} 31 sex=1 interval shows '2.1～9.8'" in findings[0].detail


def test_the_audit_is_used_by_the_check(tiny, tiny_site, tmp_path, monkeypatch):
    """The published-output check runs the same LP audit the suppression is chosen by."""
    site = _copy(tiny_site, tmp_path)
    calls = []
    real = audit.intervals

    def spy(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(audit, "intervals", spy)
    assert check_published(site, tiny) == []
    assert calls


def test_a_tampered_uk_age_table_is_caught(tiny, tiny_site, tmp_path):
    """Only the UK-comparable indicators have uk_age rows: the table's indicator is found among
    those (an indicator without the rows no longer matches the table vacuously)."""
    from pipelines.domain import schema
    from pipelines.outputs.reports import breakdown_table, load_report_data

    site = _copy(tiny_site, tmp_path)
    R = load_report_data(tiny, 2024, 31)
    labels = {b: (b + "歳" if b != "75+" else "75歳以上") for b in schema.UK_AGE_BANDS}
    md = breakdown_table(R, IND, "uk_age", labels)
    assert "| x |" in md
    page = site / "prefectures" / "31-tottori.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    for tamper, expected in ((False, []), (True, ["suppressed cell shown / 非表示セルに数値"])):
        text = md.replace("| x |", "| 0.0 |", 1) if tamper else md
        html = subprocess.run(
            [_pandoc(), "-f", "markdown", "-t", "html"], input=text, capture_output=True, text=True, check=True
        ).stdout
        page.write_text(html, encoding="utf-8")
        assert [f.rule for f in check_published(site, tiny)] == expected


# --- The fast paths give the same answers -----------------------------------------------------------


def _xlsx(path: Path, sheet: str, shared: str | None = None) -> Path:
    """A minimal workbook with one worksheet XML (and shared strings)."""
    import zipfile

    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "xl/workbook.xml",
            f'<workbook {ns} xmlns:r="{rel}"><sheets><sheet name="s" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/'
            f'2006/relationships"><Relationship Id="rId1" Type="{rel}/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>',
        )
        z.writestr("xl/worksheets/sheet1.xml", sheet)
        if shared is not None:
            z.writestr("xl/sharedStrings.xml", f"<sst {ns}>{shared}</sst>")
    return path


SHEETS = {
    # openpyxl's form, with entities, CR/LF, xml:space, an empty cell, a boolean, an error, a gap
    "plain": '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    '<row r="1"><c r="A1" t="inlineStr"><is><t>respondent_id</t></is></c><c r="C1" s="1" t="inlineStr">'
    '<is><t xml:space="preserve"> a &amp; b &lt;c&gt; &#13;&#x41;\r\nz </t></is></c></row>'
    '<row r="2"><c r="A2" t="n"><v>1.5</v></c><c r="B2" t="inlineStr" /><c r="C2" t="b"><v>1</v></c>'
    '<c r="AB2" t="e"><v>#N/A</v></c></row><row r="3" />'
    # cells from A without a gap: the one-comprehension path
    '<row r="4"><c r="A4" t="inlineStr"><is><t>x &amp; y&#13;</t></is></c><c r="B4" t="n"><v>2</v></c>'
    '<c r="C4" t="n"><v /></c><c r="D4" t="inlineStr" /><c r="E4" s="1" t="b"><v>0</v></c>'
    '<c r="F4" t="e"><v>#N/A</v></c><c r="G4" t="inlineStr"><is><t xml:space="preserve"> p </t></is></c>'
    '<c r="H4" t="n"><v>1e-3</v></c></row></sheetData></worksheet>',
    # other writers: shared strings, rich text, no r, single quotes, attributes in another order
    "shared": "<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n<worksheet "
    'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="x"><sheetData>'
    "<row r='1' spans='1:3'><c t='s' r='B1'><v>0</v></c><c t=\"s\"><v>1</v></c><c><v>7</v></c>"
    '<c r="E1" t="inlineStr"><is><r><rPr><b/></rPr><t>N2024-</t></r><r><t>000001</t></r>'
    '<rPh sb="0" eb="1"><t>ﾌ</t></rPh></is></c></row></sheetData></worksheet>',
    # namespace prefixes / CDATA / a comment: the ElementTree path
    "prefixed": '<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><x:sheetData>'
    '<x:row><x:c t="inlineStr"><x:is><x:t>a</x:t></x:is></x:c></x:row></x:sheetData></x:worksheet>',
    "cdata": '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><!-- <row>'
    '</row> --><row><c t="inlineStr"><is><t><![CDATA[<b>&]]></t></is></c></row></sheetData></worksheet>',
}


@pytest.mark.parametrize("name", sorted(SHEETS))
def test_fast_xlsx_reader_reads_what_elementtree_reads(tmp_path, name):
    shared = "<si><t>x &amp; y</t></si><si><r><t>N2024-</t></r><r><t>000002</t></r></si>"
    path = _xlsx(tmp_path / f"{name}.xlsx", SHEETS[name], shared if name == "shared" else None)
    fast = xlsx.read_sheets(path)
    assert fast == xlsx.read_sheets(path, fast=False)
    assert fast[0][1]  # rows were read
    shared_list = ["x & y", "N2024-000002"] if name == "shared" else []
    taken = xlsx.sheet_rows_fast(SHEETS[name].encode(), shared_list) is not None
    assert taken == (name in ("plain", "shared"))  # which path read it


def test_fast_xlsx_reader_on_published_workbooks_and_malformed_xml(tiny_built_site, tmp_path):
    import xml.etree.ElementTree as ET

    site = tiny_built_site
    books = sorted(site.glob("downloads/*.xlsx"))
    assert len(books) >= 47
    for path in books:
        assert xlsx.read_sheets(path) == xlsx.read_sheets(path, fast=False), path
    bad = _xlsx(tmp_path / "bad.xlsx", SHEETS["plain"].replace("</row>", "", 1))
    with pytest.raises(ET.ParseError):  # not well formed: ElementTree's error, an 'unreadable' finding
        xlsx.read_sheets(bad)
    empty_v = _xlsx(tmp_path / "v.xlsx", SHEETS["plain"].replace('t="b"><v>1</v></c>', 't="s" />'))
    assert xlsx.read_sheets(empty_v) == xlsx.read_sheets(empty_v, fast=False)


def test_check_files_is_check_published_with_a_picklable_context(tiny, tiny_built_site, tmp_path):
    import pickle

    site = _copy(tiny_built_site, tmp_path)
    _report_html(tiny, site / "prefectures" / "31-tottori.html", tamper=True)
    con = duckdb.connect(str(tiny), read_only=True)
    micro = con.execute("SELECT respondent_id, age, sex FROM survey_responses LIMIT 3").df()
    con.close()
    micro.to_csv(site / "downloads" / "extra.csv", index=False)
    rels = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    expected = check_published(site, tiny)
    assert {f.file for f in expected} == {"prefectures/31-tottori.html", "downloads/extra.csv"}
    ctx = pickle.loads(pickle.dumps(disclosure.make_context(tiny, site)))
    assert disclosure.check_files(site, rels, ctx) == expected
    assert disclosure.check_files(site, [site / "downloads" / "extra.csv"], ctx) == [
        f for f in expected if f.file == "downloads/extra.csv"
    ]
    assert [f.rule for f in disclosure.check_files(site, ["missing.csv"], ctx)] == ["unreadable / 読み込めません"]


def test_embedded_images_and_fonts_are_skipped_readable_data_uris_are_checked(tiny, tiny_site, tmp_path):
    """base64 PNG/font payloads cannot show a suppressed value as text: skipped. Text next to them,
    and data URIs of readable types (SVG, CSV, HTML), are checked."""
    import base64

    site = _copy(tiny_site, tmp_path)
    con = duckdb.connect(str(tiny), read_only=True)
    micro = con.execute(
        "SELECT respondent_id, age, sex, q_loneliness FROM survey_responses ORDER BY respondent_id LIMIT 4"
    ).df()
    con.close()
    ids = list(micro.respondent_id)
    png = "data:image/png;base64," + base64.b64encode(bytes(range(256)) * 50).decode()
    font = "data:font/ttf;base64," + base64.b64encode(b"\0\1\0\0" * 300).decode()
    svg = "data:image/svg+xml;base64," + base64.b64encode(f"<svg><text>{ids[1]}</text></svg>".encode()).decode()
    csv = "data:text/csv;base64," + base64.b64encode(micro.to_csv(index=False).encode()).decode()
    page = site / "index.html"
    ID, MICRO = "respondent ids / 回答者ID", "microdata / 個票データ"
    cases = [
        (f'<style>@font-face{{src:url({font})}}</style><img src="{png}"><p>ok</p>', {}),
        (f'<img src="{png}"><p>{ids[0]}</p>', {ID: f"1 respondent id(s) of the warehouse appear ({ids[0]})"}),
        (f'<img src="{png}">{micro.to_html()}<img src="{png}">', {ID: "4 respondent id(s)", MICRO: "1 output(s)"}),
        (f'<img src="{svg}">', {ID: f"1 respondent id(s) of the warehouse appear ({ids[1]})"}),
        (f'<a href="{csv}" download>csv</a>', {ID: "4 respondent id(s)"}),
        (f'<a href="data:text/csv,{ids[2]}%2C41">csv</a>', {ID: f"({ids[2]})"}),
    ]
    for body, want in cases:
        page.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")
        found = {f.rule: f.detail for f in check_published(site, tiny, only={"index.html"})}
        assert set(found) == set(want), (body[:80], found)
        for rule, text in want.items():
            assert text in found[rule], (body[:80], found)


class TestEveryRoundDownload:
    """downloads/indicators.csv holds every round: the recoverability check runs round by round
    (cells add up to a total within a round only)."""

    def _two_rounds(self, tiny: Path, tmp_path: Path, unprotect_2023: bool) -> Path:
        wh = tmp_path / "wh.duckdb"
        shutil.copy(tiny, wh)
        con = duckdb.connect(str(wh))
        con.execute("INSERT INTO indicators SELECT * REPLACE (2023 AS year) FROM indicators WHERE year = 2024")
        if unprotect_2023:  # the men of Tottori published in 2023: the women recoverable
            con.execute(
                "UPDATE indicators SET suppressed = FALSE, value = 0.0 WHERE year = 2023 "
                "AND area_code = '31' AND breakdown = 'sex=1'"
            )
        site = tmp_path / "site"
        write_indicator_downloads(con, None, site / "downloads")
        con.close()
        return site

    def test_two_safe_rounds_pass(self, tiny, tmp_path):
        site = self._two_rounds(tiny, tmp_path, unprotect_2023=False)
        findings = check_published(site, tmp_path / "wh.duckdb")
        assert [f for f in findings if "recoverable" in f.rule] == []
        df = pd.read_csv(site / "downloads" / "indicators.csv", encoding="utf-8-sig", header=1)
        assert sorted(df.year.unique()) == [2023, 2024]
