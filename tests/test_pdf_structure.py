"""The printed reports (issue #23 item 5, "Print"), read from the PDFs a real reports run writes
(conftest.built_reports: Tokyo, Tottori and national on the fixture warehouse).

* The structure tree (StructTreeRoot) of each PDF: every Figure element has non-empty
  alternative text that says what the chart shows, every Table has a Caption child, every Figure
  paints its chart (vector paths and text) inside its own marked content, and every image drawn on a
  page is inside a Figure (an untagged image would be an artifact no reader announces).
* The first page carries the publication date, publisher, contact and terms (pipelines/domain/config.py).
* No page but the last ends in a hole: the blank run at the foot of each page's body, measured on
  the page drawn by pdftoppm, stays under 40% of the body.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipelines.domain import config

pypdf = pytest.importorskip("pypdf", reason="pypdf not installed (pip install -e '.[test]')")
from pypdf.generic import ArrayObject, ContentStream, DictionaryObject, IndirectObject  # noqa: E402

AREAS = ["national", "prefectures/13-tokyo", "prefectures/31-tottori"]
N_CHARTS = 12  # as tests/test_reports.py: every report draws twelve charts
MAX_HOLE = 0.40  # of a page's body


@pytest.fixture(scope="module")
def pdfs(built_reports) -> dict[str, Path]:
    result, out, _ = built_reports
    assert result.ok, result.summary()
    return {a: out / f"{a}.pdf" for a in AREAS}


def _get(obj, key, default=None):
    v = obj.get(key, default) if isinstance(obj, DictionaryObject) else default
    return v.get_object() if isinstance(v, IndirectObject) else v


def _kids(elem) -> list:
    k = _get(elem, "/K")
    if k is None:
        return []
    items = list(k) if isinstance(k, ArrayObject) else [k]
    return [x.get_object() if isinstance(x, IndirectObject) else x for x in items]


def _is(elem, s: str) -> bool:
    return isinstance(elem, DictionaryObject) and str(_get(elem, "/S")) == s


def struct_elements(reader) -> list:
    """Every structure element (a dictionary with /S) of the tree, depth first."""
    out, stack = [], list(reversed(_kids(_get(reader.trailer["/Root"].get_object(), "/StructTreeRoot"))))
    while stack:
        e = stack.pop()
        if isinstance(e, DictionaryObject) and "/S" in e:
            out.append(e)
            stack.extend(reversed(_kids(e)))
    return out


def _captions(elem) -> list:
    return [k for k in _kids(elem) if _is(k, "/Caption")]


def _tables_under(elem) -> int:
    n, stack = 0, _kids(elem)
    while stack:
        e = stack.pop()
        if isinstance(e, DictionaryObject) and "/S" in e:
            n += _is(e, "/Table")
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
        e = _get(e, "/P")
        if e is None or not _is(e, "/Div"):
            return None
        if _captions(e) and _tables_under(e) == 1:
            return _captions(e)[0]
    return None


PAINT_OPS = {b"f", b"F", b"f*", b"S", b"s", b"B", b"B*", b"b", b"b*", b"Tj", b"TJ", b"'", b'"'}


def marked_figures(reader) -> tuple[int, int, int]:
    """(images drawn, images drawn inside marked content that a Figure element owns, Figures whose
    marked content paints something), over all pages: each `Do` of an image XObject is looked up in
    the marked-content sequence around it, and each painting operator (paths and text: a chart
    drawn as vector, issue #23) is credited to the Figures whose marked content encloses it."""
    figure_mcids: dict[int, dict[int, int]] = {}
    figures = 0
    for e in struct_elements(reader):
        if not _is(e, "/Figure"):
            continue
        figures += 1
        for k in _kids(e):
            page = e.get("/Pg")
            if isinstance(k, DictionaryObject):
                page, k = k.get("/Pg", page), _get(k, "/MCID")
            if isinstance(k, int) and isinstance(page, IndirectObject):
                figure_mcids.setdefault(page.idnum, {})[int(k)] = figures
    drawn = tagged = 0
    painted: set[int] = set()
    for page in reader.pages:
        xobjects = _get(_get(page, "/Resources", DictionaryObject()), "/XObject", DictionaryObject())
        images = {str(n) for n in xobjects.keys() if str(_get(xobjects, n).get("/Subtype")) == "/Image"}
        mcids = figure_mcids.get(page.indirect_reference.idnum, {})
        stack: list[int | None] = []
        for operands, op in ContentStream(page.get_contents(), reader).operations:
            if op == b"BDC":
                props = operands[1]
                mcid = props.get("/MCID") if isinstance(props, DictionaryObject) else None
                stack.append(int(mcid) if mcid is not None else None)
            elif op == b"BMC":
                stack.append(None)
            elif op == b"EMC" and stack:
                stack.pop()
            elif op == b"Do" and str(operands[0]) in images:
                drawn += 1
                if any(m in mcids for m in stack if m is not None):
                    tagged += 1
            elif op in PAINT_OPS:
                painted.update(mcids[m] for m in stack if m is not None and m in mcids)
    return drawn, tagged, len(painted)


def test_every_figure_has_alt_text_and_every_table_a_caption(pdfs):
    for area, path in pdfs.items():
        reader = pypdf.PdfReader(path)
        elements = struct_elements(reader)
        figures = [e for e in elements if _is(e, "/Figure")]
        tables = [e for e in elements if _is(e, "/Table")]
        assert len(figures) == N_CHARTS, (area, len(figures))
        for f in figures:
            alt = str(_get(f, "/Alt", "")).strip()
            # what the chart shows (the notebook's description), not a placeholder
            assert len(alt) >= 15 and alt not in ("図", "chart"), (area, alt)
            assert any(w in alt for w in ("比較", "推移", "分布", "位置", "差")), (area, alt)
        assert tables, area
        for t in tables:
            assert table_caption(t) is not None, (area, "a table without a caption")
        drawn, tagged, painted = marked_figures(reader)
        # the charts are vector (SVG): each Figure paints its chart; any raster image is in a Figure
        assert painted == N_CHARTS and tagged == drawn, (area, drawn, tagged, painted)


def test_tables_captions_are_printed(pdfs):
    """The captions are on the page too (not only in the tags): the Tokyo report's survey and
    trend tables."""
    text = "".join(
        subprocess.run(
            ["pdftotext", str(pdfs["prefectures/13-tokyo"]), "-"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "主な指標（東京都、2024年、全国との比較）" in text
    assert "調査指標の推移（東京都、" in text


def test_first_page_carries_publication_date_contact_and_terms(pdfs):
    pub = config.publication()
    for area, path in pdfs.items():
        first = subprocess.run(
            ["pdftotext", "-f", "1", "-l", "1", str(path), "-"], capture_output=True, text=True, check=True
        ).stdout
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
        body = (a[int(h * 0.10) : int(h * 0.92)] < 200).any(axis=1)
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
