"""Two Great Expectations (1.x) column-aggregate expectations for survey weights, used by
``expectations/survey.json``: importing this module registers them with GX (its expectation and
metric registries are filled when the classes are defined). Imported by ``pipelines.validate.stage``
before the suites are built, in whichever process validates.

* ``expect_column_max_to_min_ratio_to_be_between`` – metric ``column.max_to_min_ratio``:
  max(w) / min(w) over the non-missing values (NaN when a value is <= 0 or not finite: that is
  the "positive and finite" rule's failure, and the ratio fails too rather than passing).
* ``expect_column_kish_effective_fraction_to_be_between`` – metric ``column.kish_effective_fraction``:
  Kish's effective sample size n_eff = (Σw)² / Σw² divided by n. Computed on w / max(w), which
  leaves the ratio unchanged and cannot overflow (a weight of 1e308 squared is inf in float64, and
  inf / inf gave n_eff NaN before).

Both compare the metric with ``min_value`` / ``max_value`` as GX's own aggregate expectations do
(``_validate_metric_value_between``); the suite file gives the limits as suite parameters, filled
by ``pipelines.validate.stage`` from the settings (``weight_limits``).
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnAggregateExpectation
from great_expectations.expectations.metrics.column_aggregate_metric_provider import (
    ColumnAggregateMetricProvider,
    column_aggregate_value,
)


def _weights(column) -> np.ndarray:
    return np.asarray(column.dropna(), dtype=float)


def max_to_min_ratio(w: np.ndarray) -> float | None:
    """max(w) / min(w); NaN when any weight is <= 0 or not finite; None for no weights."""
    if w.size == 0:
        return None
    if not np.all(np.isfinite(w)) or np.min(w) <= 0:
        return float("nan")
    with np.errstate(over="ignore"):
        return float(np.max(w) / np.min(w))  # 1e308 / 1e-300 -> inf: fails any limit, as it should


def kish_effective_fraction(w: np.ndarray) -> float | None:
    """(Σw)² / Σw² / n, computed on w / max(w) (no overflow); NaN for a weight <= 0 or not finite."""
    if w.size == 0:
        return None
    if not np.all(np.isfinite(w)) or np.min(w) <= 0:
        return float("nan")
    s = w / np.max(w)
    return float(s.sum() ** 2 / np.dot(s, s) / w.size)


class ColumnMaxToMinRatio(ColumnAggregateMetricProvider):
    metric_name = "column.max_to_min_ratio"

    @column_aggregate_value(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):
        return max_to_min_ratio(_weights(column))


class ColumnKishEffectiveFraction(ColumnAggregateMetricProvider):
    metric_name = "column.kish_effective_fraction"

    @column_aggregate_value(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):
        return kish_effective_fraction(_weights(column))


class _Between(ColumnAggregateExpectation):
    min_value: Optional[Union[float, SuiteParameterDict]] = None
    max_value: Optional[Union[float, SuiteParameterDict]] = None
    strict_min: bool = False
    strict_max: bool = False

    success_keys = ("min_value", "strict_min", "max_value", "strict_max")
    args_keys = ("column", "min_value", "max_value", "strict_min", "strict_max")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        name = self.metric_dependencies[0]
        value = metrics.get(name)
        if value is not None and value != value:  # NaN: a non-positive or non-finite weight
            return {"success": False, "result": {"observed_value": None}}
        return self._validate_metric_value_between(
            metric_name=name,
            metrics=metrics,
            runtime_configuration=runtime_configuration,
            execution_engine=execution_engine,
        )


class ExpectColumnMaxToMinRatioToBeBetween(_Between):
    """The largest value of the column is at most ``max_value`` times its smallest one."""

    metric_dependencies = ("column.max_to_min_ratio",)


class ExpectColumnKishEffectiveFractionToBeBetween(_Between):
    """Kish's effective sample size (Σw)²/Σw² of the column, as a fraction of n, is within bounds."""

    metric_dependencies = ("column.kish_effective_fraction",)
