"""Validation stage: Great Expectations suites on staged (or committed) data -> a report.

The suites are reviewable files, ``expectations/survey.json`` and ``expectations/programme.json``
(GX 1.x ExpectationSuite layout). Every expectation carries ``meta.severity``:

* ``critical`` – the run stops (exit 1) and nothing is committed;
* ``warning``  – reported (terminal, ``quality/``), the run goes on.

GX's SQL datasource does not work on DuckDB (DESIGN.md), so each file's rows are read from DuckDB
into pandas and validated through an ephemeral GX context with a pandas datasource. The context,
assets and suites are built once per process and cached.

Suite-file extensions understood here (both are plain GX underneath):

* ``{"$PARAMETER": "declared_survey_year"}`` – GX suite parameter, filled with the file's declared
  round (``StagedFile.survey_year`` / ``files.survey_year``).
* ``meta.for_each_group: [cols]`` – the expectation is run once per group of those columns present
  in the file (a GX ``row_condition`` per group) and reported as one result.
* ``{"$PARAMETER": "max_weight_ratio"}`` / ``{"$PARAMETER": "min_effective_n_fraction"}`` – the
  weight limits (``weight_limits``: TSUNAGARI_MAX_WEIGHT_RATIO, TSUNAGARI_MIN_EFFECTIVE_N_FRACTION);
  the same names in braces in ``meta.rule`` / ``meta.rule_ja`` are replaced by their values.
* ``meta.examples: "weight_extremes"`` – an aggregate expectation on the weights (GX reports no rows)
  is shown with the rows of the largest and the smallest weight.

The two weight aggregates (max/min ratio, Kish effective n as a fraction of n) are GX expectations
defined in ``pipelines.validate.gx_weights``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import re
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipelines.domain import config, schema
from pipelines.domain.errors import DataError, UsageError, printable
from pipelines.domain.formatting import json_records as records
from pipelines.domain.formatting import plain as _plain
from pipelines.engine import keys
from pipelines.io import warehouse as warehouse_db
from pipelines.io.staging import StagedFile
from pipelines.validate import gx_process as validator

log = logging.getLogger("tsunagari.validate")

SUITE_FILES = {"survey": "survey.json", "programme": "programme.json"}
STAGING_TABLES = {"survey": "staging_survey", "programme": "staging_programme"}
WAREHOUSE_TABLES = {"survey": "survey_responses", "programme": "programme"}
ROW_ID_COLUMNS = {"survey": ["source_row", "respondent_id"], "programme": ["source_row"]}
DECLARED_YEAR_PARAM = "declared_survey_year"
# Weight limits (suite parameters): the settings limits.max_weight_ratio and
# limits.min_effective_n_fraction (pipelines/domain/config.py). The defaults leave room for real
# non-response/raking weights (trimmed weights rarely span more than 1:20; a weighting design
# effect 1 + CV² above 4 means a quarter of the sample's information) and the bundled sample
# (prefecture surveys: weights 0.5-2.0, ratio 4, n_eff/n about 0.9) passes.
WEIGHT_LIMITS = ("max_weight_ratio", "min_effective_n_fraction")
MAX_EXAMPLES = 5

SEVERITIES = ("critical", "warning")
OUTCOME_LABELS = {  # outcome -> (Japanese, English, symbol)
    "pass": ("合格", "Pass", "✓"),
    "warning": ("警告", "Warning", "⚠"),
    "fail": ("不合格", "Fail", "✗"),
    "not_run": ("未実施", "Not run", "–"),
}
SEVERITY_LABELS = {"critical": ("重大", "critical"), "warning": ("警告", "warning")}


# --- Result structures ----------------------------------------------------------------------------


@dataclass
class ExpectationResult:
    """The outcome of one expectation on one input file."""

    file_name: str
    file_id: str
    suite: str
    expectation: str  # GX expectation type, e.g. expect_column_values_to_be_in_set
    column: str | None
    severity: str  # 'critical' | 'warning'
    rule: str  # plain words (English)
    rule_ja: str  # plain words (Japanese)
    success: bool | None  # None: not run
    element_count: int | None = None
    unexpected_count: int | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)  # {"value", "source_row", "respondent_id"?}
    note: str | None = None

    @property
    def outcome(self) -> str:
        if self.success is None:
            return "not_run"
        if self.success:
            return "pass"
        return "fail" if self.severity == "critical" else "warning"

    @property
    def outcome_label(self) -> str:
        ja, en, sym = OUTCOME_LABELS[self.outcome]
        return f"{sym} {ja} {en}"

    def rule_text(self) -> str:
        ja, en = SEVERITY_LABELS[self.severity]
        return f"{self.rule} / {self.rule_ja} [{en} / {ja}]"

    def examples_text(self, limit: int = 3) -> str:
        parts = []
        for ex in self.examples[:limit]:
            ids = []
            if ex.get("source_row") is not None:
                ids.append(f"row {ex['source_row']}")
            if ex.get("respondent_id") is not None:
                ids.append(f"id {ex['respondent_id']}")
            value = ex.get("value")
            shown = value if isinstance(value, str) and not ids else repr(value)
            parts.append(f"{' '.join(ids)}: {shown}" if ids else shown)
        return printable("; ".join(parts))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["outcome"] = self.outcome
        return _plain(d)


@dataclass
class FileSummary:
    file_name: str
    file_id: str
    kind: str
    rows: int
    survey_id: str | None = None
    survey_year: int | None = None


@dataclass
class ValidationReport:
    """Results of every expectation for every input file (several ingests may be merged)."""

    results: list[ExpectationResult] = field(default_factory=list)
    files: list[FileSummary] = field(default_factory=list)
    seconds: float = 0.0
    # validate_warehouse(reuse=True): the files validated now, as no stored results fitted them
    fresh: list[str] = field(default_factory=list, repr=False, compare=False)
    # the quality page (pipelines/outputs/quality.py): the design effects of the surveys and the sensitivity line
    design: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # validate_warehouse: the small-area models' diagnostics of the latest round (small_area_report)
    small_area: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def only(self, file_ids: Iterable[str]) -> ValidationReport:
        """The results and file summaries of these files."""
        keep = set(file_ids)
        return ValidationReport(
            [r for r in self.results if r.file_id in keep], [f for f in self.files if f.file_id in keep]
        )

    # -- status
    @property
    def failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if r.success is False]

    @property
    def critical_failures(self) -> list[ExpectationResult]:
        return [r for r in self.failures if r.severity == "critical"]

    @property
    def warnings(self) -> list[ExpectationResult]:
        return [r for r in self.failures if r.severity == "warning"]

    @property
    def has_critical(self) -> bool:
        return bool(self.critical_failures)

    @property
    def has_warning(self) -> bool:
        return bool(self.warnings)

    @property
    def ok(self) -> bool:
        return not self.has_critical

    def merge(self, other: ValidationReport) -> ValidationReport:
        """A new report with this report's results followed by ``other``'s."""
        return ValidationReport(
            results=[*self.results, *other.results],
            files=[*self.files, *other.files],
            seconds=self.seconds + other.seconds,
        )

    @classmethod
    def combine(cls, reports: Iterable[ValidationReport]) -> ValidationReport:
        out = cls()
        for r in reports:
            out = out.merge(r)
        return out

    # -- error
    def to_error(self) -> DataError:
        """DataError for the first critical failure (file, column, rule, count, example rows)."""
        crit = self.critical_failures
        if not crit:
            raise ValueError("no critical failure to report")
        first = crit[0]
        rows = [ex["source_row"] for ex in first.examples if ex.get("source_row") is not None]
        values = [ex.get("value") for ex in first.examples]
        details = []
        ids = [str(ex["respondent_id"]) for ex in first.examples if ex.get("respondent_id") is not None]
        if ids:
            details.append("respondent_id " + ", ".join(ids[:MAX_EXAMPLES]))
        if first.note:
            details.append(first.note)
        others = len(crit) - 1
        details.append(f"{others} other critical failure{'s' if others != 1 else ''} / ほかの重大な不合格 {others} 件")
        return DataError(
            file=first.file_name,
            column=first.column,
            rule=first.rule_text(),
            rows=rows,
            count=first.unexpected_count or 0,
            examples=values,
            detail=". ".join(details),
        )

    # -- output
    def counts(self) -> dict[str, int]:
        c = {k: 0 for k in OUTCOME_LABELS}
        for r in self.results:
            c[r.outcome] += 1
        return c

    def summary(self) -> str:
        """Terminal table: failures and warnings in full, a pass count per file."""
        c = self.counts()
        lines = [
            f"Validation / データ検証: {len(self.files)} file(s), {len(self.results)} expectation results — "
            f"合格 pass {c['pass']}, 警告 warning {c['warning']}, 不合格 fail {c['fail']}"
            + (f", 未実施 not run {c['not_run']}" if c["not_run"] else "")
        ]
        header = (
            "suite",
            "file",
            "expectation",
            "column",
            "severity",
            "outcome",
            "unexpected",
            "examples (row id: value)",
        )
        rows = []
        for r in self.results:
            if r.outcome == "pass":
                continue
            rows.append(
                (
                    r.suite,
                    printable(r.file_name),
                    r.rule,
                    r.column or "",
                    r.severity,
                    r.outcome,
                    "" if r.unexpected_count is None else str(r.unexpected_count),
                    r.examples_text() or (r.note or ""),
                )
            )
        if rows:
            widths = [min(max(len(h), *(len(row[i]) for row in rows)), 48) for i, h in enumerate(header)]
            widths[-1] = max(len(header[-1]), 10)
            fmt = lambda row: "  ".join(_clip(v, w).ljust(w) for v, w in zip(row, widths)).rstrip()  # noqa: E731
            lines.append(fmt(header))
            lines.append("  ".join("-" * w for w in widths))
            for row in rows:
                line = "  ".join(_clip(v, w).ljust(w) for v, w in zip(row[:-1], widths[:-1]))
                lines.append(f"{line}  {row[-1]}")
        for f in self.files:
            mine = [r for r in self.results if r.file_id == f.file_id]
            passed = sum(r.outcome == "pass" for r in mine)
            lines.append(f"  {printable(f.file_name)} ({f.kind}, {f.rows} rows): {passed}/{len(mine)} passed")
        if self.has_critical:
            lines.append("Critical failures: nothing is committed / 重大な不合格があるため反映しません")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        from importlib.metadata import version

        return _plain(
            {
                "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "great_expectations_version": version("great_expectations"),
                "ok": self.ok,
                "has_critical": self.has_critical,
                "has_warning": self.has_warning,
                "counts": self.counts(),
                "seconds": round(self.seconds, 3),
                "files": [asdict(f) for f in self.files],
                "results": [r.to_json() for r in self.results],
                **({"design_effects": self.design} if self.design is not None else {}),
                **(
                    {"small_area": {k: v for k, v in self.small_area.items() if k != "plots"}}
                    if self.small_area is not None
                    else {}
                ),
            }
        )

    def write(self, quality_dir: Path) -> Path:
        """Write ``results.json`` and a self-contained ``index.html``; returns the HTML path."""
        quality_dir = Path(quality_dir)
        quality_dir.mkdir(parents=True, exist_ok=True)
        data = self.to_json()
        (quality_dir / "results.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        html = render_html(self, data)
        out = quality_dir / "index.html"
        out.write_text(html, encoding="utf-8")
        return out


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# --- Settings ---------------------------------------------------------------------------------------


def weight_limits() -> dict[str, float]:
    """The weight rules' limits, read at call time: ``max_weight_ratio`` (largest / smallest weight
    of a file, > 1; TSUNAGARI_MAX_WEIGHT_RATIO, default 50) and ``min_effective_n_fraction`` (Kish
    n_eff / n of a file, in (0, 1]; TSUNAGARI_MIN_EFFECTIVE_N_FRACTION, default 0.25), from the
    settings (pipelines/domain/config.py: a bad value is a SettingsError naming the source)."""
    from pipelines.domain.config import settings

    s = settings()
    return {key: getattr(s, key) for key in WEIGHT_LIMITS}


def _limit_text(value: float) -> str:
    return f"{value:g}"


def _fill_rule(text: str, limits: dict[str, float]) -> str:
    for key, value in limits.items():
        text = text.replace("{" + key + "}", _limit_text(value))
    return text


# --- Suites and the cached GX context ---------------------------------------------------------------


def suite_path(kind: str) -> Path:
    return config.EXPECTATIONS_DIR / SUITE_FILES[kind]


def load_suite_spec(kind: str) -> dict[str, Any]:
    """The suite file as a dict; every expectation must declare a severity."""
    path = suite_path(kind)
    spec = json.loads(path.read_text(encoding="utf-8"))
    for i, exp in enumerate(spec["expectations"]):
        sev = exp.get("severity")
        if sev not in SEVERITIES:
            raise ValueError(
                f"{path}: expectation {i} ({exp.get('type')}) has no valid severity (critical|warning): {sev!r}"
            )
        exp.setdefault("meta", {})
    return spec


class _GX:
    """One ephemeral GX context per process with a pandas datasource and one asset per kind."""

    _lock = threading.Lock()
    _instance: _GX | None = None

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from pipelines.validate import gx_weights  # noqa: F401  (registers the weight expectations with GX)

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        ds = self.context.data_sources.add_pandas("tsunagari")
        self.batch_definitions = {}
        for kind in SUITE_FILES:
            asset = ds.add_dataframe_asset(kind)
            self.batch_definitions[kind] = asset.add_batch_definition_whole_dataframe(f"{kind}_file")
        self.specs = {kind: load_suite_spec(kind) for kind in SUITE_FILES}
        self._suites: dict[tuple[str, bool], Any] = {}

    @classmethod
    def get(cls) -> "_GX":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @classmethod
    def reset(cls) -> None:
        """Forget the cached context (e.g. after editing a suite file)."""
        with cls._lock:
            cls._instance = None

    def build_suite(self, name: str, expectations: Sequence[tuple[int, dict[str, Any]]]):
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        confs = []
        for idx, exp in expectations:
            exp = copy.deepcopy(exp)
            exp.setdefault("meta", {})["_idx"] = idx
            confs.append(
                ExpectationConfiguration(
                    type=exp["type"], kwargs=exp["kwargs"], meta=exp["meta"], severity=exp["severity"]
                )
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            suite = self.gx.ExpectationSuite(name=name, expectations=confs)
        if len(suite.expectations) != len(confs):  # GX logs and drops invalid configurations
            raise ValueError(f"suite {name}: {len(confs) - len(suite.expectations)} invalid expectation(s)")
        return suite

    def suite(self, kind: str, with_declared_year: bool):
        """The cached GX suite of the non-grouped expectations of ``kind``."""
        key = (kind, with_declared_year)
        if key not in self._suites:
            exps = [
                (i, e)
                for i, e in enumerate(self.specs[kind]["expectations"])
                if not e["meta"].get("for_each_group")
                and (with_declared_year or not _uses_param(e, DECLARED_YEAR_PARAM))
            ]
            self._suites[key] = self.build_suite(kind, exps)
        return self._suites[key]


def _uses_param(exp: dict[str, Any], name: str) -> bool:
    return f'"$PARAMETER": "{name}"' in json.dumps(exp)


def _declared_year(sf: StagedFile) -> int | None:
    if sf.survey_year is not None:
        return int(sf.survey_year)
    m = re.search(r"(\d{4})$", sf.survey_id or "")
    return int(m.group(1)) if m else None


# --- Running a suite on one frame -----------------------------------------------------------------


def _column_of(exp: dict[str, Any]) -> str | None:
    meta, kw = exp.get("meta", {}), exp["kwargs"]
    if meta.get("report_column"):
        return meta["report_column"]
    if "column" in kw:
        return kw["column"]
    if "column_B" in kw:
        return kw["column_B"]
    if "column_list" in kw:
        return ", ".join(kw["column_list"])
    return None


def _value_columns(exp: dict[str, Any]) -> list[str]:
    """The columns an expectation looks at (their values make an example)."""
    kw = exp["kwargs"]
    if "column_list" in kw:
        return list(kw["column_list"])
    return [kw[k] for k in ("column", "column_A", "column_B") if k in kw]


def _examples(
    result: dict[str, Any], index_cols: list[str], int_cols: set[str] = frozenset(), value_cols: Sequence[str] = ()
) -> list[dict[str, Any]]:
    def v(key: str, value: Any) -> Any:
        value = _plain(value)
        if key in int_cols and isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    out = []
    for item in (result.get("partial_unexpected_index_list") or [])[:MAX_EXAMPLES]:
        if not isinstance(item, dict):
            continue
        values = {k: x for k, x in item.items() if k in value_cols} if value_cols else {}
        if not values:
            values = {k: x for k, x in item.items() if k not in index_cols}
        ex: dict[str, Any] = {k: v(k, item.get(k)) for k in index_cols if k in item}
        if len(values) == 1:
            ex["value"] = v(*next(iter(values.items())))
        else:
            ex["value"] = ", ".join(f"{k}={v(k, x)}" for k, x in values.items())
        out.append(ex)
    if not out:
        for v in (result.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]:
            out.append({"value": _plain(v)})
    return out


def _result_from_gx(
    sf: StagedFile, kind: str, exp: dict[str, Any], r: Any, index_cols: list[str], int_cols: set[str] = frozenset()
) -> ExpectationResult:
    meta = exp["meta"]
    res = dict(r.result or {})
    exc = r.exception_info or {}
    note = None
    if exc.get("raised_exception"):
        msg = str(exc.get("exception_message") or "")
        note = (
            "could not be evaluated / 評価できません: " + msg.splitlines()[0][:200]
            if msg
            else "could not be evaluated / 評価できません"
        )
    unexpected = res.get("unexpected_count")
    return ExpectationResult(
        file_name=sf.file_name,
        file_id=sf.file_id,
        suite=kind,
        expectation=exp["type"],
        column=_column_of(exp),
        severity=exp["severity"],
        rule=meta.get("rule", exp["type"]),
        rule_ja=meta.get("rule_ja", ""),
        success=bool(r.success),
        element_count=res.get("element_count"),
        unexpected_count=int(unexpected) if unexpected is not None else None,
        examples=[] if r.success else _examples(res, index_cols, int_cols, _value_columns(exp)),
        note=note,
    )


def _result_format(index_cols: list[str]) -> dict[str, Any]:
    return {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": index_cols,
        "partial_unexpected_count": MAX_EXAMPLES,
        "return_unexpected_index_query": False,
    }


def _gx_friendly(df: pd.DataFrame) -> tuple[pd.DataFrame, set[str]]:
    """Integer columns as int64 (nullable ones as float64 with NaN).

    GX's pandas ``column_values.between`` is vectorised only for int64/float64 columns; DuckDB
    INTEGER arrives as int32/Int32, which GX checks row by row in Python (slow on large files).
    Returns the frame and the names of the integer columns (examples are shown
    as integers again).
    """
    out = {}
    int_cols = set()
    for col in df.columns:
        dt = df[col].dtype
        if pd.api.types.is_integer_dtype(dt):
            int_cols.add(col)
            if dt != "int64":
                s = df[col]
                out[col] = s.astype("float64") if s.isna().any() else s.astype("int64")
    return (df.assign(**out) if out else df), int_cols


def warm_up() -> None:
    """Import and set up Great Expectations now (once per process), so that the first
    ``validate_frame`` does not wait for it."""
    _GX.get()


def validate_frame(df: pd.DataFrame, sf: StagedFile) -> list[ExpectationResult]:
    """Run the suite for ``sf.kind`` over one file's rows; results in suite-file order."""
    g = _GX.get()
    df, int_cols = _gx_friendly(df)
    kind = sf.kind
    spec = g.specs[kind]["expectations"]
    index_cols = [c for c in ROW_ID_COLUMNS[kind] if c in df.columns]
    year = _declared_year(sf) if kind == "survey" else None
    suite = g.suite(kind, with_declared_year=year is not None or kind != "survey")
    batch = g.batch_definitions[kind].get_batch(batch_parameters={"dataframe": df})
    limits = weight_limits()
    params = dict(limits) if kind == "survey" else {}
    if year is not None:
        params[DECLARED_YEAR_PARAM] = year
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite_result = batch.validate(suite, result_format=_result_format(index_cols), expectation_parameters=params)
    by_idx: dict[int, ExpectationResult] = {}
    for r in suite_result.results:
        idx = int(r.expectation_config.meta["_idx"])
        by_idx[idx] = _result_from_gx(sf, kind, spec[idx], r, index_cols, int_cols)

    for idx, exp in enumerate(spec):
        if idx in by_idx:
            continue
        meta = exp["meta"]
        if meta.get("for_each_group"):
            by_idx[idx] = _validate_grouped(df, sf, batch, g, idx, exp, index_cols)
        else:  # parameterised expectation without a declared round
            by_idx[idx] = ExpectationResult(
                file_name=sf.file_name,
                file_id=sf.file_id,
                suite=kind,
                expectation=exp["type"],
                column=_column_of(exp),
                severity=exp["severity"],
                rule=meta.get("rule", exp["type"]),
                rule_ja=meta.get("rule_ja", ""),
                success=None,
                note="no declared survey round for this file / 調査回が不明のため未実施",
            )
    for idx, res in by_idx.items():
        res.rule, res.rule_ja = _fill_rule(res.rule, limits), _fill_rule(res.rule_ja, limits)
        if res.success is False and spec[idx]["meta"].get("examples") == "weight_extremes":
            _explain_weights(res, df, spec[idx], index_cols, limits)
    return [by_idx[i] for i in range(len(spec))]


_WEIGHT_NOTES = {
    "expect_column_max_to_min_ratio_to_be_between": (
        "largest weight {hi:g} / smallest {lo:g} = {ratio:.4g} > limit {max_weight_ratio:g} "
        "(TSUNAGARI_MAX_WEIGHT_RATIO): a few respondents would carry the estimates / "
        "最大ウェイトが最小の{ratio:.4g}倍です（上限{max_weight_ratio:g}倍）。少数の回答者が結果を左右します"
    ),
    "expect_column_kish_effective_fraction_to_be_between": (
        "Kish effective n (Σw)²/Σw² = {neff:.1f}, {frac:.2%} of n = {n:,} < {min_effective_n_fraction:.0%} "
        "(TSUNAGARI_MIN_EFFECTIVE_N_FRACTION) / 有効標本サイズ {neff:.1f}（n={n:,} の{frac:.2%}）が"
        "下限{min_effective_n_fraction:.0%}未満です。ウェイトの偏りが大きすぎます"
    ),
}


def _explain_weights(
    res: ExpectationResult, df: pd.DataFrame, exp: dict[str, Any], index_cols: list[str], limits: dict[str, float]
) -> None:
    """Example rows (largest, then smallest weight) and a note with the observed value and the limit
    for a failed aggregate weight rule (GX names no rows for an aggregate)."""
    import numpy as np

    from pipelines.validate.gx_weights import kish_effective_fraction, max_to_min_ratio

    col = exp["kwargs"]["column"]
    if col not in df.columns:
        return
    w = pd.to_numeric(df[col], errors="coerce")
    valid = w.dropna()
    if valid.empty:
        return
    picks = list(dict.fromkeys([valid.idxmax(), valid.idxmin()]))
    res.examples = [{**{k: _plain(df.at[i, k]) for k in index_cols}, "value": _plain(w.at[i])} for i in picks]
    arr = valid.to_numpy(dtype=float)
    if not (np.all(np.isfinite(arr)) and arr.min() > 0):
        res.note = (
            "weights not all positive and finite: see the rule 'weight positive and at most "
            "1,000,000,000' / 正の有限値でないウェイトがあります"
        )
        return
    frac = kish_effective_fraction(arr)
    values = {
        "hi": float(arr.max()),
        "lo": float(arr.min()),
        "ratio": max_to_min_ratio(arr),
        "frac": frac,
        "neff": frac * arr.size,
        "n": int(arr.size),
        **limits,
    }
    template = _WEIGHT_NOTES.get(exp["type"])
    if template:
        res.note = template.format(**values)


def _validate_grouped(
    df: pd.DataFrame, sf: StagedFile, batch: Any, g: _GX, idx: int, exp: dict[str, Any], index_cols: list[str]
) -> ExpectationResult:
    """Run a ``for_each_group`` expectation once per group (GX row_condition) and fold the results.

    Used for 'every prefecture present per fiscal year and metric': expect_column_distinct_values_
    to_contain_set on pref_code with row_condition fiscal_year == Y AND metric_id == M.
    unexpected_count is the number of missing (group, value) pairs; examples name them. For an
    aggregate without a missing list (e.g. 'at least 2 PSUs per stratum': expect_column_unique_value_
    count_to_be_between on psu per stratum) unexpected_count is the number of failing groups and an
    example names each with its observed value. Groups are the non-missing key combinations: a file
    whose keys are all NULL (no sample design) has no group and passes.
    """
    from great_expectations.expectations.row_conditions import Column

    meta = exp["meta"]
    keys: list[str] = meta["for_each_group"]
    missing_cols = [k for k in keys + [exp["kwargs"].get("column")] if k not in df.columns]
    template = ExpectationResult(
        file_name=sf.file_name,
        file_id=sf.file_id,
        suite=sf.kind,
        expectation=exp["type"],
        column=_column_of(exp),
        severity=exp["severity"],
        rule=meta.get("rule", exp["type"]),
        rule_ja=meta.get("rule_ja", ""),
        success=True,
        element_count=len(df),
        unexpected_count=0,
    )
    if missing_cols:
        template.success = False
        template.unexpected_count = None
        template.note = f"could not be evaluated / 評価できません: missing column(s) {', '.join(missing_cols)}"
        return template
    groups = df[keys].drop_duplicates().dropna().sort_values(keys).itertuples(index=False, name=None)
    expanded = []
    labels = {}
    for n, values in enumerate(groups):
        cond = None
        for k, v in zip(keys, values):
            v = _plain(v)
            c = Column(k) == v
            cond = c if cond is None else cond & c
        e = copy.deepcopy({k: v for k, v in exp.items()})
        e["kwargs"]["row_condition"] = cond.dict()
        e["meta"] = {**e["meta"], "for_each_group": None}
        expanded.append((n, e))
        labels[n] = dict(zip(keys, (_plain(v) for v in values)))
    if not expanded:
        return template
    suite = g.build_suite(f"{sf.kind}-grouped-{idx}", expanded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = batch.validate(suite, result_format={"result_format": "SUMMARY"})
    missing_total = failed_groups = 0
    examples = []
    for r in res.results:
        if r.success:
            continue
        n = int(r.expectation_config.meta["_idx"])
        res_dict = r.result or {}
        group = ", ".join(f"{k}={v}" for k, v in labels[n].items())
        if "partial_missing_list" not in res_dict and "missing_count" not in res_dict:
            failed_groups += 1  # an aggregate: the group fails as a whole
            if len(examples) < MAX_EXAMPLES:
                examples.append(
                    {"value": f"{group}: {exp['kwargs']['column']} observed {_plain(res_dict.get('observed_value'))}"}
                )
            continue
        missing = sorted(_plain(res_dict.get("partial_missing_list") or []))
        missing_total += int(res_dict.get("missing_count") or len(missing))
        shown = ", ".join(map(str, missing[:10])) + (" …" if int(res_dict.get("missing_count") or 0) > 10 else "")
        if len(examples) < MAX_EXAMPLES:
            examples.append({"value": f"{group}: missing {exp['kwargs']['column']} {shown}"})
    template.unexpected_count = missing_total + failed_groups
    template.success = missing_total + failed_groups == 0
    template.examples = examples
    if missing_total:
        template.note = f"{missing_total} missing (group, {exp['kwargs']['column']}) combinations / 欠けている組み合わせ {missing_total} 件"
    elif failed_groups:
        named = ", ".join(keys)
        template.note = f"{failed_groups} group(s) of {named} fail / 条件を満たさない {named} が {failed_groups} 件"
    return template


# --- Public stage functions -----------------------------------------------------------------------


def _read_file_rows(con: duckdb.DuckDBPyConnection, table: str, kind: str, file_id: str) -> pd.DataFrame:
    """One file's rows as pandas: only the columns the suite looks at (plus row ids), to save memory."""
    present = [r[0] for r in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
    wanted = set(
        schema.SURVEY_COLUMNS + schema.SURVEY_DESIGN_COLUMNS if kind == "survey" else schema.PROGRAMME_COLUMNS
    ) | {"source_row"}
    cols = ", ".join(f'"{c}"' for c in present if c in wanted)
    order = " ORDER BY source_row" if "source_row" in present else ""
    return con.execute(f"SELECT {cols} FROM {table} WHERE file_id = ?{order}", [file_id]).df()


def validate_staged(con: duckdb.DuckDBPyConnection, staged: list[StagedFile]) -> ValidationReport:
    """Validate each staged file's rows (staging_survey / staging_programme, by file_id).

    Never raises on bad data: the caller checks ``report.has_critical`` and raises ``report.to_error()``.
    """
    import time

    t0 = time.perf_counter()
    report = ValidationReport()
    for sf in staged:
        table = STAGING_TABLES[sf.kind]
        df = _read_file_rows(con, table, sf.kind, sf.file_id)
        report.results.extend(
            validator.validate_frame(df, sf, local=validate_frame)
        )  # in the build's GX process if any
        report.files.append(FileSummary(sf.file_name, sf.file_id, sf.kind, len(df), sf.survey_id, sf.survey_year))
    report.seconds = time.perf_counter() - t0
    log.info(
        "validated %d file(s) in %.2f s%s",
        len(staged),
        report.seconds,
        " (in the build's validation process)" if validator.running() else "",
    )
    return report


# The stored results of a file (``validation_results``): its rows (file_id, the sha256 of the file,
# stands for them) and the suites. Their code is this module and the weight rules, not the whole
# package: a change elsewhere does not validate every file again.
SUITES = keys.Input("expectation suites")
VALIDATION = keys.Stage("validation", reads=(SUITES,), writes=("validation_results",))
# The quality page: the results of the committed files; its check of the national figures against
# the published series reads the rounds these files and the code made.
QUALITY = keys.Stage(
    "quality page",
    reads=(keys.FILES,),
    writes=("quality/index.html", "quality/results.json", "quality/published-national.csv"),
)


def suite_digest() -> str:
    """Identifies what produced a set of results: the suite files, this module, the GX version and
    the weight limits (settings)."""
    from importlib.metadata import version

    here = Path(__file__)
    return keys.key(
        VALIDATION,
        {SUITES: keys.file_digest(sorted(config.EXPECTATIONS_DIR.glob("*.json")))},
        keys.file_digest([here, here.with_name("gx_weights.py")]),
        version("great_expectations"),
        weight_limits(),
    )


def store_results(con: duckdb.DuckDBPyConnection, report: ValidationReport) -> int:
    """Record each file's results in ``validation_results`` (the caller's transaction)."""
    con.execute(schema.VALIDATION_TABLE_DDL)
    d = suite_digest()
    for f in report.files:
        mine = [r.to_json() for r in report.results if r.file_id == f.file_id]
        con.execute(
            "INSERT OR REPLACE INTO validation_results VALUES (?, ?, ?, ?)",
            [f.file_id, d, f.rows, json.dumps(mine, ensure_ascii=False)],
        )
    return len(report.files)


_RESULT_FIELDS = {f for f in ExpectationResult.__dataclass_fields__}


def _stored_results(con: duckdb.DuckDBPyConnection, tables: set[str]) -> dict[str, tuple[int, list]]:
    """file_id -> (row count, results) stored by the same suites and code; {} when none."""
    if "validation_results" not in tables:
        return {}
    out, current = {}, suite_digest()
    for file_id, digest_, n, text in con.execute(
        "SELECT file_id, suite_digest, row_count, results FROM validation_results"
    ).fetchall():
        if digest_ == current:
            out[file_id] = (
                int(n),
                [ExpectationResult(**{k: v for k, v in r.items() if k in _RESULT_FIELDS}) for r in json.loads(text)],
            )
    return out


def validate_warehouse(warehouse: Path, reuse: bool = False) -> ValidationReport:
    """Run the same suites over what is committed, per file (joined to the ``files`` table).

    reuse=True (the build's quality page): a file whose results were stored at ingest by the same
    suites and code, computed on exactly the rows it still has in the warehouse, is not validated
    again. A file that lost rows since (a later programme file replaced some of its keys) or was
    validated by other suites is validated again. `tsunagari validate` always validates everything."""
    warehouse = Path(warehouse)
    if not warehouse.exists():
        raise UsageError(
            "--warehouse", f"'{warehouse}' does not exist; run `tsunagari ingest` first / データベースがありません"
        )
    con = warehouse_db.connect(warehouse)
    try:
        tables = warehouse_db.tables(con)
        if "files" not in tables:
            return ValidationReport()
        rows = con.execute(
            "SELECT file_id, file_name, path, kind, survey_id, survey_year, encoding, row_count, synthetic "
            "FROM files ORDER BY kind DESC, file_name"
        ).fetchall()
        stored = _stored_results(con, tables) if reuse else {}
        import time

        t0 = time.perf_counter()
        report = ValidationReport()
        reused = 0
        for file_id, name, path, kind, survey_id, year, enc, n, synth in rows:
            table = WAREHOUSE_TABLES.get(kind)
            if table not in tables:
                continue
            if file_id in stored:
                have = con.execute(f"SELECT count(*) FROM {table} WHERE file_id = ?", [file_id]).fetchone()[0]
                if have == stored[file_id][0]:
                    report.results.extend(stored[file_id][1])
                    report.files.append(FileSummary(name, file_id, kind, int(have), survey_id, year))
                    reused += 1
                    continue
            sf = StagedFile(
                path=Path(path),
                file_name=name,
                file_id=file_id,
                kind=kind,
                row_count=n,
                encoding=enc,
                survey_id=survey_id,
                survey_year=year,
                synthetic=bool(synth),
            )
            df = _read_file_rows(con, table, kind, file_id)
            report.results.extend(validate_frame(df, sf))
            report.files.append(FileSummary(name, file_id, kind, len(df), survey_id, year))
            report.fresh.append(file_id)
        report.seconds = time.perf_counter() - t0
        if reuse:
            log.info(
                "quality: %d file(s), %d with the results stored at ingest, %d validated now",
                len(report.files),
                reused,
                len(report.files) - reused,
            )
        report.small_area = small_area_report(con)
        return report
    finally:
        con.close()


def small_area_report(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The quality page's small-area section (issue #24) for the latest national round, from the
    warehouse tables the indicators stage wrote (``small_area``, ``small_area_fits``,
    ``indicators``): every fit's coefficients and area variance A; per prefecture and headline
    indicator the direct value (published cells only), the model-based value, the shrinkage factor
    γ = A / (A + D) and the standardised residual; a direct-vs-model plot per headline indicator
    (inline SVG, published direct values only); how many prefecture cells have a published value.
    None when the warehouse has no such tables (or no round)."""
    from pipelines.domain.catalogue import load_catalogue

    have = all(warehouse_db.has_table(con, t) for t in ("small_area", "small_area_fits", "indicators"))
    if not have or not warehouse_db.national_years(con):
        return None
    year = max(warehouse_db.national_years(con))
    try:
        fits = con.execute(
            "SELECT * FROM small_area_fits WHERE year = ? ORDER BY indicator_id, fit_scope, term", [year]
        ).df()
        cat = [i for i in load_catalogue() if i.source == "survey"]
        names = {i.id: i.name_ja for i in cat}
        order = {i.id: k for k, i in enumerate(cat)}
        head = [i.id for i in cat if i.headline] or [cat[0].id]
        areas = con.execute(
            "SELECT i.area_code, i.area_name, i.indicator_id, CASE WHEN i.suppressed THEN NULL ELSE i.value END AS direct, "
            "i.estimate_method AS lead_method, s.value AS model, s.lower_ci95, s.upper_ci95, s.cv, s.shrinkage, "
            "s.std_residual, s.estimate_method AS model_kind FROM indicators i LEFT JOIN small_area s ON "
            "s.year = i.year AND s.area_code = i.area_code AND s.indicator_id = i.indicator_id AND "
            "s.breakdown = i.breakdown AND s.estimate_method IN ('model', 'synthetic') "
            "WHERE i.year = ? AND i.breakdown = 'total' AND i.area_code <> '00' AND i.source IN "
            "('national_subsample', 'own_survey') ORDER BY i.area_code",
            [year],
        ).df()
        cells = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE suppressed), count(*) FILTER (WHERE estimate_method IS NULL), "
            "count(*) FILTER (WHERE estimate_method = 'pooled'), count(*) FILTER (WHERE estimate_method = 'model') "
            "FROM indicators WHERE year = ? AND area_code <> '00' AND source IN ('national_subsample', 'own_survey')",
            [year],
        ).fetchone()
    except duckdb.Error as exc:  # an older warehouse layout: no section
        log.warning("small-area diagnostics for the quality page failed: %s", exc)
        return None
    models = []
    for (ind, scope), g in fits.groupby(["indicator_id", "fit_scope"], sort=False):
        terms = {str(t): (float(c), float(se)) for t, c, se in zip(g.term, g.coefficient, g.std_error)}
        first = g.iloc[0]
        models.append(
            {
                "indicator_id": ind,
                "indicator": names.get(ind, ind),
                "scope": scope,
                "terms": terms,
                "A": float(first.area_variance),
                "n_in_sample": int(first.n_in_sample),
                "n_areas": int(first.n_areas),
                "algorithm": str(first.algorithm),
                "benchmark_factor": None if pd.isna(first.benchmark_factor) else float(first.benchmark_factor),
            }
        )
    scope_order = {"total": 0, "sex": 1, "age": 2, "uk_age": 3, "household_single": 4, "breakdowns": 5}
    models.sort(key=lambda m: (order.get(m["indicator_id"], 99), scope_order.get(m["scope"], 9)))
    per_area = {}
    plots = []
    for ind in head:
        a = areas[areas.indicator_id == ind]
        per_area[ind] = records(a.drop(columns=["indicator_id"]))
        plots.append(
            {"indicator_id": ind, "indicator": names.get(ind, ind), "svg": _direct_vs_model_svg(a, names.get(ind, ind))}
        )
    total, suppressed, blank, pooled, model = (int(x) for x in cells)
    return {
        "year": year,
        "models": models,
        "headline": [{"indicator_id": i, "indicator": names.get(i, i)} for i in head],
        "areas": per_area,
        "plots": plots,
        "cv_max": config.LEAD_CV_MAX,
        "cells": {"total": total, "no_direct": suppressed, "no_value": blank, "pooled": pooled, "model": model},
    }


def _direct_vs_model_svg(a: pd.DataFrame, title: str, size: int = 300) -> str:
    """Direct (x) vs model-based (y) estimates of the prefectures (percent) as an inline SVG: the
    published direct values only (a suppressed cell has no point), the 45° line, points sized by
    the shrinkage factor (small = pulled towards the model's synthetic part)."""
    import html as _html

    d = a.dropna(subset=["direct", "model"])
    pad, w = 40, size
    if d.empty:
        return ""
    lo = float(np.floor(min(d.direct.min(), d.model.min())))
    hi = float(np.ceil(max(d.direct.max(), d.model.max())))
    hi = hi if hi > lo else lo + 1

    def sx(v: float) -> float:
        return pad + (v - lo) / (hi - lo) * (w - pad - 10)

    def sy(v: float) -> float:
        return w - pad - (v - lo) / (hi - lo) * (w - pad - 10)

    label = f"{title}：直接推計（横軸）とモデル推計（縦軸）、{len(d)}都道府県"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{w}" viewBox="0 0 {w} {w}" role="img" '
        f'style="background-color:#ffffff" aria-label="{_html.escape(label)}"><title>{_html.escape(label)}</title>',
        f'<rect x="0" y="0" width="{w}" height="{w}" fill="#ffffff"/>',
        f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" stroke="#999999" '
        'stroke-dasharray="4 3"/>',
        f'<line x1="{pad}" y1="{w - pad}" x2="{w - 10}" y2="{w - pad}" stroke="#333333"/>',
        f'<line x1="{pad}" y1="{w - pad}" x2="{pad}" y2="10" stroke="#333333"/>',
    ]
    for v in np.linspace(lo, hi, 5):
        parts.append(f'<text x="{sx(v):.1f}" y="{w - pad + 14}" font-size="10" text-anchor="middle">{v:.1f}</text>')
        parts.append(f'<text x="{pad - 4}" y="{sy(v) + 3:.1f}" font-size="10" text-anchor="end">{v:.1f}</text>')
    parts.append(f'<text x="{(w + pad) / 2:.0f}" y="{w - 6}" font-size="11" text-anchor="middle">直接推計（%）</text>')
    parts.append(
        f'<text x="12" y="{(w - pad) / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(w - pad) / 2:.0f})">モデル推計（%）</text>'
    )
    for r in d.itertuples():
        g = 0.0 if pd.isna(r.shrinkage) else float(r.shrinkage)
        parts.append(
            f'<circle cx="{sx(r.direct):.1f}" cy="{sy(r.model):.1f}" r="{2.5 + 4 * g:.1f}" fill="#0072B2" '
            f'fill-opacity="0.55" stroke="#004d7a"><title>{_html.escape(str(r.area_name))}: '
            f"{r.direct:.1f} → {r.model:.1f} (γ={g:.2f})</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


# --- HTML -----------------------------------------------------------------------------------------

TEMPLATE = config.TEMPLATES_DIR / "quality.html.j2"


def render_html(report: ValidationReport, data: dict[str, Any] | None = None) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    env.globals["level"] = config.confidence_percent()  # the intervals' level, e.g. 95
    data = data or report.to_json()
    sections = []
    for kind in SUITE_FILES:
        files = [f for f in report.files if f.kind == kind]
        spec = load_suite_spec(kind)
        sections.append(
            {
                "kind": kind,
                "title_ja": "調査個票" if kind == "survey" else "事業データ",
                "title_en": "Survey microdata" if kind == "survey" else "Programme data",
                "suite_file": f"expectations/{SUITE_FILES[kind]}",
                "n_expectations": len(spec["expectations"]),
                "files": [
                    {"info": f, "results": [r for r in report.results if r.file_id == f.file_id and r.suite == kind]}
                    for f in files
                ],
            }
        )
    return env.get_template(TEMPLATE.name).render(
        report=report,
        data=data,
        sections=sections,
        counts=report.counts(),
        outcome_labels=OUTCOME_LABELS,
        severity_labels=SEVERITY_LABELS,
        design=report.design,
        sae=report.small_area,
    )
