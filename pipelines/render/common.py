"""What both renderers share: their error, the Quarto look-up and the PDF font."""

from __future__ import annotations

import json
import os
import re
import shutil
from functools import lru_cache
from pathlib import Path

from pipelines.domain.errors import TsunagariError


class RenderError(TsunagariError):
    """A report could not be rendered (the message names the file)."""

    exit_code = 1


def quarto_available() -> bool:
    return bool(os.environ.get("QUARTO_PATH") or shutil.which("quarto"))


def pdf_font() -> tuple[str, Path]:
    """(family, font file) for PDFs: Noto Sans CJK JP when installed, else IPAexGothic
    (shipped with matplotlib-fontja, so it is always there after pip install); the setting
    run.pdf_font (``$TSUNAGARI_PDF_FONT``) ``ipaex`` chooses IPAexGothic."""
    from pipelines.domain.config import settings

    return _pdf_font(settings().pdf_font)


@lru_cache(maxsize=4)
def _pdf_font(choice: str) -> tuple[str, Path]:
    """Looked up once per process and choice (it may run fc-match, twice per PDF)."""
    candidates = [
        Path(p)
        for p in (
            "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
            "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
            "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
            "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Regular.otf",
        )
    ]
    if choice != "ipaex":
        for c in candidates:
            if c.exists():
                return "Noto Sans CJK JP", c
        if shutil.which("fc-match"):
            import subprocess

            out = subprocess.run(
                ["fc-match", "-f", "%{family}\t%{file}", "Noto Sans CJK JP"], capture_output=True, text=True
            ).stdout
            fam, _, file = out.partition("\t")
            if "Noto Sans CJK JP" in fam and file and Path(file).exists():
                return "Noto Sans CJK JP", Path(file)
    import matplotlib_fontja

    return "IPAexGothic", Path(matplotlib_fontja.__file__).parent / "fonts" / "ipaexg.ttf"


# --- Markdown cells of one kind of report -----------------------------------------------------------

# A Markdown cell of the report notebook tagged "national" or "prefecture" is text of that kind of
# report only (a heading or a fixed paragraph); reports/report.lua applies the same rule.


def shown_cells(nb: dict) -> list[dict]:
    """The cells of an executed notebook that its report shows: a Markdown cell tagged for the other
    kind of report is left out. The kind is the papermill parameter pref_code (0 = national) recorded
    in the notebook; without it every cell is kept."""
    code = ((nb.get("metadata") or {}).get("papermill") or {}).get("parameters", {}).get("pref_code")
    cells = nb.get("cells", [])
    if code is None:
        return list(cells)
    other = "prefecture" if int(code) == 0 else "national"
    return [
        c
        for c in cells
        if not (c.get("cell_type") == "markdown" and other in (c.get("metadata") or {}).get("tags", []))
    ]


# --- The charts' data files (issue #23) ------------------------------------------------------------

CHART_DATA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,80}\.csv")


def chart_data_dir(report: Path) -> Path:
    """The folder of a report's chart data files, beside it: prefectures/13-tokyo-data/ for
    prefectures/13-tokyo.html (the link under each chart is relative: 13-tokyo-data/NAME.csv)."""
    report = Path(report)
    return report.with_name(f"{report.stem}-data")


def chart_data(executed: Path) -> list[tuple[str, str]]:
    """(file name, CSV text) of every chart of an executed notebook that carries its data
    (``charts.show(..., name=...)``: a text/csv output beside the image, its name in the image's
    metadata ``data-csv``), in the order of the report."""
    nb = json.loads(Path(executed).read_text(encoding="utf-8"))
    out = []
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []) or []:
            data, meta = o.get("data") or {}, o.get("metadata") or {}
            name = (meta.get("image/png") or {}).get("data-csv")
            if "text/csv" in data and isinstance(name, str):
                if not CHART_DATA_NAME.fullmatch(name):
                    raise RenderError(f"{executed}: chart data file name {name!r} refused")
                text = data["text/csv"]
                out.append((name, "".join(text) if isinstance(text, list) else str(text)))
    return out


def write_chart_data(executed: Path, folder: Path) -> list[Path]:
    """Write the chart data files of an executed notebook into `folder` (UTF-8 with BOM, as the
    downloads), each under a temporary name first; files of an earlier build that the notebook no
    longer has are removed (and the folder when none is left). Returns the files written."""
    folder = Path(folder)
    files = chart_data(executed)
    names = [n for n, _ in files]
    if len(set(names)) != len(names):
        raise RenderError(f"{executed}: two charts with the same data file name")
    written = []
    if files:
        folder.mkdir(parents=True, exist_ok=True)
    for name, text in files:
        target = folder / name
        tmp = folder / f"{target.stem}.tmp.csv"
        tmp.write_bytes(("\ufeff" + text).encode("utf-8"))
        tmp.replace(target)
        written.append(target)
    if folder.is_dir():
        for old in folder.glob("*.csv"):
            if old.name not in names:
                old.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()
    return written
