"""The printed reports (issue #23 item 5, "Print"), read from the PDFs a real reports run writes
(conftest.built_reports: Tokyo, Tottori and national on the fixture warehouse).

* The structure tree (StructTreeRoot) of each PDF: every Figure element has non-empty
  alternative text that says what the chart shows, every Table has a Caption child, and every image
  drawn on a page is inside a Figure (an untagged image would be an artifact no reader announces).
* The first page carries the publication date, publisher, contact and terms (pipelines/config.py).
* No page but the last ends in a hole: the blank run at the foot of each page's body, measured on
  the page drawn by pdftoppm, stays under 40% of the body.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipelines import config

pikepdf = pytest.importorskip("pikepdf", reason="pikepdf not installed (pip install -e '.[test]')")

AREAS = ["national", "prefectures/13-tokyo", "prefectures/31-tottori"]
N_CHARTS = 12        # as tests/test_reports.py: every report draws twelve charts
MAX_HOLE = 0.40      # of a page's body


@pytest.fixture(scope="module")
def pdfs(built_reports) -> dict[str, Path]:
    result, out, _ = built_reports
    assert result.ok, result.summary()
    return {a: out / f"{a}.pdf" for a in AREAS}


def _kids(elem):
    k = elem.get("/K")
    if k is None:
        return []
    return list(k) if isinstance(k, pikepdf.Array) else [k]


def struct_elements(pdf) -> list:
    """Every structure element (a dictionary with /S) of the tree, depth first."""
    out, stack = [], list(reversed(_kids(pdf.Root.StructTreeRoot)))
    while stack:
        e = stack.pop()
        if isinstance(e, pikepdf.Dictionary) and "/S" in e:
            out.append(e)
            stack.extend(reversed(_kids(e)))
    return out


def _captions(elem) -> list:
    return [k for k in _kids(elem) if isinstance(k, pikepdf.Dictionary) and str(k.get("/S")) == "/Caption"]


def _tables_under(elem) -> int:
    n, stack = 0, _kids(elem)
    while stack:
        e = stack.pop()
        if isinstance(e, pikepdf.Dictionary) and "/S" in e:
            n += str(e.S) == "/Table"
            stack.extend(_kids(e))
    return n


def table_caption(table):
    """The Caption of a Table: its own /Caption child, as Typst tags a captioned table figure; or,
    as Typst tags some of them (seen in the national report, for two tables of 9 rows), a /Caption
    child of the grouping /Div around it (one or two levels up) that holds this one table only."""
    own = _captions(table)
    if own:
        return own[0]
    e = table
    for _ in range(2):
        e = e.get("/P")
        if e is None or str(e.get("/S")) != "/Div":
            return None
        if _captions(e) and _tables_under(e) == 1:
            return _captions(e)[0]
    return None


def marked_figures_per_page(pdf) -> tuple[int, int]:
    """(images drawn, images drawn inside marked content that a Figure element owns), over all
    pages: each `Do` of an image XObject is looked up in the marked-content sequence around it."""
    figure_mcids: dict[int, set[int]] = {}
    for e in struct_elements(pdf):
        if str(e.S) != "/Figure":
            continue
        for k in _kids(e):
            page = e.get("/Pg")
            if isinstance(k, pikepdf.Dictionary):
                page, k = k.get("/Pg", page), k.get("/MCID")
            if isinstance(k, int) and page is not None:
                figure_mcids.setdefault(page.objgen, set()).add(int(k))
    drawn = tagged = 0
    for page in pdf.pages:
        xobjects = page.obj.get("/Resources", {}).get("/XObject", {})
        images = {str(n) for n in xobjects.keys() if str(xobjects[n].get("/Subtype")) == "/Image"}
        mcids = figure_mcids.get(page.obj.objgen, set())
        stack: list[int | None] = []
        for operands, op in pikepdf.parse_content_stream(page):
            op = str(op)
            if op == "BDC":
                props = operands[1]
                mcid = props.get("/MCID") if isinstance(props, pikepdf.Dictionary) else None
                stack.append(int(mcid) if mcid is not None else None)
            elif op == "BMC":
                stack.append(None)
            elif op == "EMC" and stack:
                stack.pop()
            elif op == "Do" and str(operands[0]) in images:
                drawn += 1
                if any(m in mcids for m in stack if m is not None):
                    tagged += 1
    return drawn, tagged


def test_every_figure_has_alt_text_and_every_table_a_caption(pdfs):
    for area, path in pdfs.items():
        with pikepdf.open(path) as pdf:
            elements = struct_elements(pdf)
            figures = [e for e in elements if str(e.S) == "/Figure"]
            tables = [e for e in elements if str(e.S) == "/Table"]
            assert len(figures) == N_CHARTS, (area, len(figures))
            for f in figures:
                alt = str(f.get("/Alt", "")).strip()
                # what the chart shows (the notebook's description), not a placeholder
                assert len(alt) >= 15 and alt not in ("図", "chart"), (area, alt)
                assert any(w in alt for w in ("比較", "推移", "分布", "位置", "差")), (area, alt)
            assert tables, area
            for t in tables:
                assert table_caption(t) is not None, (area, "a table without a caption")
            drawn, tagged = marked_figures_per_page(pdf)
            assert drawn >= N_CHARTS and tagged == drawn, (area, drawn, tagged)


def test_tables_captions_are_printed(pdfs):
    """The captions are on the page too (not only in the tags): the Tokyo report's survey and
    trend tables."""
    text = "".join(subprocess.run(["pdftotext", str(pdfs["prefectures/13-tokyo"]), "-"],
                                  capture_output=True, text=True, check=True).stdout.split())
    assert "主な指標（東京都、2024年、全国との比較）" in text
    assert "調査指標の推移（東京都、" in text


def test_first_page_carries_publication_date_contact_and_terms(pdfs):
    pub = config.publication()
    for area, path in pdfs.items():
        first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(path), "-"],
                               capture_output=True, text=True, check=True).stdout
        flat = "".join(first.split())
        for key in ("date", "publisher", "contact"):
            assert "".join(pub[key].split()) in flat, (area, key)
        assert "発行" in flat and "問い合わせ先" in flat and "利用条件" in flat, area
        assert "政府標準利用規約" in flat and "CC BY 4.0" in first, area


def _body_holes(path: Path, tmp: Path) -> list[float]:
    """Per page, the blank run at the foot of the body (between the running header and footer) as
    a share of the body: rows of the page at 40 dpi without a pixel darker than the watermark."""
    from PIL import Image

    subprocess.run(["pdftoppm", "-r", "40", "-gray", str(path), str(tmp / "p")], check=True)
    holes = []
    for f in sorted(tmp.glob("p-*.pgm"), key=lambda p: int(p.stem.split("-")[-1])):
        a = np.asarray(Image.open(f))
        h = a.shape[0]
        body = (a[int(h * 0.10):int(h * 0.92)] < 200).any(axis=1)
        inked = np.nonzero(body)[0]
        holes.append(1.0 if not len(inked) else (len(body) - inked[-1] - 1) / len(body))
    for f in tmp.glob("p-*.pgm"):
        f.unlink()
    return holes


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) not installed")
def test_no_page_but_the_last_ends_in_a_hole(pdfs, tmp_path):
    for area, path in pdfs.items():
        holes = _body_holes(path, tmp_path)
        assert len(holes) > 3, area
        worst = max(holes[:-1])
        assert worst < MAX_HOLE, (area, [round(x, 2) for x in holes])
