"""The indicators stage. ``pipelines.indicators.<name>`` is ``pipelines.indicators.stage.<name>``: the stage module's
names under the package's own, as when the stage was one module (forks' notebooks import them so)."""

from __future__ import annotations

from pipelines import stage_names

__getattr__ = stage_names(__name__, "stage")
