"""Renderers of executed report notebooks (they never re-execute).

``get_renderer(name)`` returns an object with ``name``, ``render_html(executed, html_out, meta)``
and ``render_pdf(executed, pdf_out, meta)``. 'pandoc' is the built-in pandoc + Typst renderer;
'quarto' is provided by ``pipelines.render.quarto`` when that module exists and the Quarto CLI is
installed; 'auto' picks Quarto when available, else pandoc.
"""

from __future__ import annotations

import importlib
import os
import shutil
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from ..errors import TsunagariError, UsageError


class RenderError(TsunagariError):
    """A report could not be rendered (the message names the file)."""

    exit_code = 1


def quarto_available() -> bool:
    return bool(os.environ.get("QUARTO_PATH") or shutil.which("quarto"))


def _quarto_module() -> ModuleType | None:
    try:
        return importlib.import_module("pipelines.render.quarto")
    except ModuleNotFoundError as exc:
        if exc.name == "pipelines.render.quarto":
            return None
        raise


def get_renderer(name: str = "auto"):
    """The renderer module for 'auto' | 'pandoc' | 'quarto'."""
    from . import pandoc

    if name == "pandoc":
        return pandoc
    if name in ("auto", "quarto"):
        mod = _quarto_module() if quarto_available() else None
        if mod is not None:
            return mod
        return pandoc  # Quarto (or its renderer module) unavailable: the built-in renderer
    raise UsageError("--renderer", f"'{name}' is not one of auto, quarto, pandoc")


def pdf_font() -> tuple[str, Path]:
    """(family, font file) for PDFs: Noto Sans CJK JP when installed, else IPAexGothic
    (shipped with matplotlib-fontja, so it is always there after pip install)."""
    return _pdf_font(os.environ.get("TSUNAGARI_PDF_FONT", "").lower())


@lru_cache(maxsize=4)
def _pdf_font(choice: str) -> tuple[str, Path]:
    """Looked up once per process and choice (it may run fc-match: ~30 ms, twice per PDF)."""
    candidates = [Path(p) for p in (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Regular.otf",
    )]
    if choice != "ipaex":
        for c in candidates:
            if c.exists():
                return "Noto Sans CJK JP", c
        if shutil.which("fc-match"):
            import subprocess

            out = subprocess.run(["fc-match", "-f", "%{family}\t%{file}", "Noto Sans CJK JP"],
                                 capture_output=True, text=True).stdout
            fam, _, file = out.partition("\t")
            if "Noto Sans CJK JP" in fam and file and Path(file).exists():
                return "Noto Sans CJK JP", Path(file)
    import matplotlib_fontja

    return "IPAexGothic", Path(matplotlib_fontja.__file__).parent / "fonts" / "ipaexg.ttf"
