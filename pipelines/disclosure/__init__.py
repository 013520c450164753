"""The disclosure stage. ``pipelines.disclosure.<name>`` is ``pipelines.disclosure.check.<name>``: the stage module's
names under the package's own, as when the stage was one module (forks' notebooks import them so)."""

from __future__ import annotations

import importlib
import importlib.util


def __getattr__(name: str):
    # a submodule's name is not looked up in the stage module (`from pipelines.disclosure import x` asks
    # the package for x before importing pipelines.disclosure.x: that must not import the stage module)
    if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.check"), name)
