"""Reference pictures of the report charts: a hash of every rendition each chart of three reports
gives (the national report, Tokyo and Tottori, from the test fixture warehouse: every chart type).

Each figure cell of reports/report.ipynb runs in this process (no kernel) and calls the real
``charts.show``, which draws the chart in its three renditions; what it displays is caught and
reduced to SHA-256 hashes of
  * the wide PNG's decoded pixels (RGB array, with its shape),
  * the phone PNG's decoded pixels (its palette image converted to RGB, with its shape),
  * the SVG's bytes.
Hashes of decoded pixels, not of PNG bytes: a change of PNG encoding (compression, chunks) that
leaves every pixel as it was is not a change of picture; a moved pixel is.

tests/test_chart_pixels.py compares the charts drawn now with tests/chart_pixels.json. Regenerate
the file ONLY for an intended change of picture (a new chart, a change of look, a new fixture) or a
new drawing environment (library versions or font: the file records them, and the test is skipped
elsewhere) -- never to make a speed-up pass: a speed-up must leave every hash as it was::

    TSUNAGARI_CHART_CACHE=0 PYTHONPATH=. python -m tests.chart_pixels --write

and say in the commit message why the pictures changed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).with_name("chart_pixels.json")
AREAS = (0, 13, 31)  # national, Tokyo, Tottori
YEAR = 2024


def environment() -> dict[str, str]:
    """What decides the pixels besides the project's code: library versions and the chart font."""
    import matplotlib
    import numpy
    import PIL
    import plotnine
    from matplotlib import font_manager

    from pipelines.outputs import charts

    family = charts.font_family()
    font = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    with open(font, "rb") as f:
        font_hash = hashlib.sha256(f.read()).hexdigest()[:16]
    return {
        "plotnine": plotnine.__version__,
        "matplotlib": matplotlib.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "freetype": matplotlib.ft2font.__freetype_version__,
        "font": f"{family} {font_hash}",
    }


def pixel_hash(png: bytes) -> str:
    import numpy as np
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    a = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    h = hashlib.sha256(f"{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _code_cells() -> list[str]:
    import nbformat

    nb = nbformat.read(ROOT / "reports" / "report.ipynb", as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]


def report_renditions(warehouse: Path, areas=AREAS, year: int = YEAR) -> dict[str, dict[str, str]]:
    """{"<area>/<k>-<data name>": {"png": hash, "phone": hash, "svg": hash}} for every chart the
    report notebook shows, in order, drawn by charts.show (chart cache off)."""
    import IPython.display

    if os.environ.get("TSUNAGARI_CHART_CACHE", "1") != "0":
        raise RuntimeError("set TSUNAGARI_CHART_CACHE=0: the reference is of drawn charts")
    cells = _code_cells()
    out: dict[str, dict[str, str]] = {}
    shown: list = []
    original = IPython.display.display

    def catch(*objs, metadata=None, raw=False, **kwargs):
        for obj in objs:
            if raw and isinstance(obj, dict) and "image/png" in obj:
                shown.append((obj, (metadata or {}).get("image/png", {})))

    IPython.display.display = catch
    try:
        for code in areas:
            shown.clear()
            ns: dict = {"year": year, "pref_code": code, "warehouse": str(warehouse)}
            for i, src in enumerate(cells):
                exec(compile(src, f"<report cell {i}>", "exec"), ns)
            for k, (bundle, meta) in enumerate(shown):
                name = meta.get("data-csv", "").removesuffix(".csv") or "unnamed"
                out[f"{code:02d}/{k:02d}-{name}"] = {
                    "png": pixel_hash(base64.b64decode(bundle["image/png"])),
                    "phone": pixel_hash(base64.b64decode(meta["data-phone"])) if "data-phone" in meta else None,
                    "svg": hashlib.sha256(meta["data-print"].encode("utf-8")).hexdigest(),
                }
    finally:
        IPython.display.display = original
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write {REFERENCE.name} (an intended change of picture)")
    args = ap.parse_args()
    os.environ["TSUNAGARI_CHART_CACHE"] = "0"
    sys.path.insert(0, str(ROOT))
    from tests.fixtures_reports import build_fixture_warehouse

    with tempfile.TemporaryDirectory() as tmp:
        wh = build_fixture_warehouse(Path(tmp) / "wh.duckdb")
        charts = report_renditions(wh)
    data = {
        "about": "tests/chart_pixels.py: regenerate only for an intended change of picture",
        "environment": environment(),
        "charts": charts,
    }
    text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if args.write:
        REFERENCE.write_text(text, encoding="utf-8")
        print(f"wrote {REFERENCE} ({len(charts)} charts)")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
