"""The reports stage: execute reports/report.ipynb per area with papermill, then render HTML + PDF.

What the notebook itself imports (the area's data as tidy frames, Markdown tables) is
``pipelines.report_data``; the charts are ``pipelines.charts`` (docs/DESIGN.md, "Rendering").
``TSUNAGARI_REPORTS_DIR`` points the stage at a forked notebook folder.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .errors import UsageError, check_pref_code, check_year
from .reference import area_code as _area_code
from .reference import pref_name, pref_slug, prefectures
# Re-exported for the build, the disclosure check and the tests (the notebook imports report_data).
from .report_data import (CONTEXT_SQL, MdText, breakdown_table, catalogue,  # noqa: F401
                          context_rows, fmt_comparison, fmt_value, headline_table, indicator_name, is_synthetic,
                          load_report_data, md_escape, md_table, row_index)

log = logging.getLogger("tsunagari.reports")

REPORT_NOTEBOOK = config.REPORTS_DIR / "report.ipynb"

# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


@dataclass
class AreaResult:
    slug: str
    ok: bool
    execute_seconds: float = 0.0
    render_seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None


@dataclass
class ReportsResult:
    areas: list[AreaResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.areas)

    @property
    def built(self) -> list[str]:
        return [a.slug for a in self.areas if a.ok]

    @property
    def failed(self) -> list[str]:
        return [a.slug for a in self.areas if not a.ok]

    def summary(self) -> str:
        lines = [f"reports: {len(self.built)} built, {len(self.failed)} failed"]
        for a in self.areas:
            state = "ok" if a.ok else f"FAILED: {a.error}"
            lines.append(f"  {a.slug}: execute {a.execute_seconds:.2f}s, render {a.render_seconds:.2f}s, {state}")
        return "\n".join(lines)


def _execute(src: Path, dst: Path, parameters: dict, cwd: Path) -> Path:
    try:
        from .execute import execute_notebook
    except ImportError:  # pragma: no cover - execute.py is another stage's module
        import papermill as pm

        dst.parent.mkdir(parents=True, exist_ok=True)
        pm.execute_notebook(str(src), str(dst), parameters=parameters, cwd=str(cwd), progress_bar=False)
        return dst
    return execute_notebook(src, dst, parameters, cwd=cwd)


def area_meta(pref_code: int, year: int, synthetic: bool) -> dict:
    name = pref_name(pref_code)
    return {
        "title": f"{name} 孤独・孤立の状況 {year}年",
        "area_name": name,
        "area_code": _area_code(pref_code),
        "year": int(year),
        "synthetic": bool(synthetic),
    }


# Run in each report kernel while it warms up (before the first area): the notebook's imports and
# the chart font, ~0.9 s that the first area of each worker paid before.
KERNEL_PRELOAD = """
import duckdb, pandas
from IPython.display import Markdown, display
from pipelines import charts, report_data, schema
charts.warm_up()
import gc
gc.collect()
gc.freeze()
"""


def warm_renderer() -> None:
    """Run in each report worker while it warms up: the built-in renderer's base font subset."""
    from .render import pandoc

    pandoc._base_font()


def render_area(renderer: str, executed: Path, html: Path, pdf: Path, meta: dict) -> list[str]:
    """Render one executed notebook to HTML and PDF (never re-executes), and write its charts' data
    files beside the HTML (``render.common.write_chart_data``). Each file is written under a
    temporary name and renamed, so a published name never holds a half-written file. Returns the
    paths written: HTML, PDF, then the data files."""
    from .render import get_renderer

    from .render.common import chart_data_dir, write_chart_data

    rend = get_renderer(renderer)
    html.parent.mkdir(parents=True, exist_ok=True)
    # the charts' data files beside the report (prefectures/13-tokyo-data/*.csv), linked under each chart
    data = write_chart_data(executed, chart_data_dir(html))
    for target, fn in ((html, rend.render_html), (pdf, rend.render_pdf)):
        tmp = target.with_name(target.stem + ".tmp" + target.suffix)
        fn(executed, tmp, meta)
        tmp.replace(target)
    return [str(html), str(pdf)] + [str(p) for p in data]


def executed_dir(out_dir: Path) -> Path:
    """Where the executed report notebooks of an output folder go: the build's working folder beside
    it (``.<out>.tsunagari-work/executed``, created with its marker), never the site itself."""
    from .publish import EXECUTED_DIR, ensure_work

    return ensure_work(Path(out_dir).resolve()) / EXECUTED_DIR


def build_area(pref_code: int, year: int, warehouse: Path, out_dir: Path, renderer: str = "pandoc",
               synthetic: bool | None = None, executed_in: Path | None = None) -> AreaResult:
    """Execute and render one area; never raises (the error is in the result). The executed
    notebook goes to `executed_in` (default: ``executed_dir(out_dir)``)."""
    from .render import get_renderer

    slug = pref_slug(pref_code)
    res = AreaResult(slug=slug, ok=False)
    executed = Path(executed_in or executed_dir(out_dir)) / f"{slug}.ipynb"
    target_dir = out_dir if pref_code == 0 else out_dir / "prefectures"
    try:
        if synthetic is None:
            synthetic = is_synthetic(warehouse)
        t0 = time.perf_counter()
        _execute(REPORT_NOTEBOOK, executed,
                 {"year": int(year), "pref_code": int(pref_code), "warehouse": os.path.relpath(warehouse)},
                 cwd=Path.cwd())   # the record may be shared: a path relative to the working folder
        res.execute_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        html, pdf = target_dir / f"{slug}.html", target_dir / f"{slug}.pdf"
        render_area(renderer, executed, html, pdf, area_meta(pref_code, year, synthetic))
        res.render_seconds = time.perf_counter() - t1
        res.outputs = [html, pdf]
        res.ok = True
    except Exception as exc:  # one area's failure must not stop the others
        if hasattr(exc, "ename") and hasattr(exc, "evalue"):  # PapermillExecutionError
            res.error = f"{executed}: cell {getattr(exc, 'exec_count', '?')}: {exc.ename}: {exc.evalue}"[:500]
        else:
            msg = [x for x in str(exc).strip().splitlines() if x.strip()]
            res.error = f"{type(exc).__name__}: {msg[0] if msg else ''}"[:500]
        log.error("report %s failed: %s", slug, res.error)
    return res


def _build_area_star(args: tuple) -> AreaResult:
    return build_area(*args)


def run_reports(year: int, warehouse: Path, out_dir: Path, prefs: list[int] | None = None,
                renderer: str = "auto", jobs: int = 1) -> ReportsResult:
    """Execute reports/report.ipynb per area and render HTML + PDF.

    prefs empty -> national and all 47 prefectures (JIS order). Invalid codes raise UsageError.
    Writes out_dir/prefectures/{slug}.html|pdf and out_dir/national.html|pdf; the executed notebooks
    go to the working folder beside out_dir (``executed_dir``: ``.<out>.tsunagari-work/executed/``),
    not into it. One area's failure is recorded and the others continue.
    """
    year = check_year(year)  # it names output files and is bound into SQL: digits only
    codes = [0 if str(p).strip() in ("0", "00") else check_pref_code(p) for p in (prefs or [])]  # 0 = national
    if not codes:
        codes = [0] + [int(c) for c in prefectures().pref_code]
    warehouse = Path(warehouse)
    if not warehouse.exists():
        raise UsageError("--warehouse", f"'{warehouse}' does not exist / ウェアハウスがありません")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed_in = executed_dir(out_dir)
    from .render import get_renderer

    name = get_renderer(renderer).name  # resolve 'auto' once
    synthetic = is_synthetic(warehouse)
    args = [(c, int(year), warehouse, out_dir, name, synthetic, executed_in) for c in codes]
    result = ReportsResult()
    if jobs <= 1 or len(args) == 1:
        for a in args:
            r = build_area(*a)
            log.info("%s: execute %.2fs render %.2fs %s", r.slug, r.execute_seconds, r.render_seconds,
                     "ok" if r.ok else r.error)
            result.areas.append(r)
    else:
        # Parallel: one warm kernel per worker (pipelines/executor.py), rendering in the worker.
        from .executor import Task, run_tasks

        tasks = []
        for code, *_ in args:
            slug = pref_slug(code)
            executed = executed_in / f"{slug}.ipynb"
            target_dir = out_dir if code == 0 else out_dir / "prefectures"
            tasks.append(Task(slug, REPORT_NOTEBOOK, executed,
                              {"year": int(year), "pref_code": int(code), "warehouse": os.path.relpath(warehouse)},
                              cwd=Path.cwd(), after=render_area,
                              after_args=(name, executed, target_dir / f"{slug}.html", target_dir / f"{slug}.pdf",
                                          area_meta(code, year, synthetic))))
        for o in run_tasks(tasks, jobs=jobs):
            result.areas.append(AreaResult(slug=o.key, ok=o.ok, execute_seconds=o.seconds,
                                           outputs=[Path(p) for p in (o.result or [])], error=o.error))
    log.info(result.summary())
    return result
