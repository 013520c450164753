"""The disclosure stage. ``pipelines.disclosure.<name>`` is ``pipelines.disclosure.check.<name>``: the stage module's
names under the package's own, as when the stage was one module (forks' notebooks import them so)."""

from __future__ import annotations

from pipelines import stage_names

__getattr__ = stage_names(__name__, "check")
