"""Renderers of executed report notebooks (they never re-execute).

``get_renderer(name)`` returns an object with ``name``, ``render_html(executed, html_out, meta)``
and ``render_pdf(executed, pdf_out, meta)``. 'pandoc' is the built-in pandoc + Typst renderer;
'quarto' is provided by ``pipelines.render.quarto`` when that module exists and the Quarto CLI is
installed; 'auto' picks Quarto when available, else pandoc.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pipelines.domain.errors import UsageError
from pipelines.render.common import RenderError, pdf_font, quarto_available  # noqa: F401 (the package's face)


def _quarto_module() -> ModuleType | None:
    try:
        return importlib.import_module("pipelines.render.quarto")
    except ModuleNotFoundError as exc:
        if exc.name == "pipelines.render.quarto":
            return None
        raise


def get_renderer(name: str = "auto"):
    """The renderer module for 'auto' | 'pandoc' | 'quarto'."""
    from pipelines.render import pandoc

    if name == "pandoc":
        return pandoc
    if name in ("auto", "quarto"):
        mod = _quarto_module() if quarto_available() else None
        if mod is not None:
            return mod
        return pandoc  # Quarto (or its renderer module) unavailable: the built-in renderer
    raise UsageError("--renderer", f"'{name}' is not one of auto, quarto, pandoc")
