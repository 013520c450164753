"""The validate stage. ``pipelines.validate.<name>`` is ``pipelines.validate.stage.<name>``: the stage module's
names under the package's own, as when the stage was one module (forks' notebooks import them so)."""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    return getattr(importlib.import_module(f"{__name__}.stage"), name)
