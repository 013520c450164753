"""What both renderers share: their error, the Quarto look-up and the PDF font."""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path

from ..errors import TsunagariError


class RenderError(TsunagariError):
    """A report could not be rendered (the message names the file)."""

    exit_code = 1


def quarto_available() -> bool:
    return bool(os.environ.get("QUARTO_PATH") or shutil.which("quarto"))


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
