"""The reports stage: execute reports/report.ipynb per area with papermill, then render HTML + PDF.

One function runs and renders areas, ``run_areas`` (the build's reports stage calls it, and so does
``run_reports``, a preview into a scratch folder that is never a published site); every area it
renders is checked for disclosure. ``tsunagari reports`` is the build restricted to this stage
(pipelines/build.py): staged, checked, swapped in under the build's lock.

What the notebook itself imports (the area's data as tidy frames, Markdown tables) is
``pipelines.outputs.report_data``; the charts are ``pipelines.outputs.charts`` (docs/DESIGN.md, "Rendering").
``TSUNAGARI_REPORTS_DIR`` points the stage at a forked notebook folder.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.domain import config
from pipelines.domain.errors import UsageError, check_pref_code, check_year
from pipelines.domain.reference import area_code as _area_code
from pipelines.domain.reference import pref_name, pref_slug, prefectures
from pipelines.engine import keys

# Re-exported for the build, the disclosure check and the tests (the notebook imports report_data).
from pipelines.outputs.report_data import (  # noqa: F401
    CONTEXT,
    CONTEXT_SQL,
    MdText,
    breakdown_table,
    catalogue,
    context_rows,
    fmt_comparison,
    fmt_value,
    headline_table,
    indicator_name,
    is_synthetic,
    load_report_data,
    md_escape,
    md_table,
    row_index,
)

log = logging.getLogger("tsunagari.reports")

# What a report reads (the notebook may be a researcher's fork: every column), and what it writes.
AREA_INDICATORS = keys.Reads(
    "indicators", rows="the area's and the national rows up to the round (every area's for the national report)"
)
AREA_DISTRIBUTIONS = keys.Reads("distributions", rows="as AREA_INDICATORS")
REPORT = keys.Stage(
    "report",
    reads=(AREA_INDICATORS, AREA_DISTRIBUTIONS, CONTEXT),
    writes=(
        "prefectures/{slug}.html",
        "prefectures/{slug}.pdf",
        "national.html",
        "national.pdf",
        "executed/{slug}.ipynb",
    ),
)

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
    code: int = 0  # 0 = national
    checked: dict[str, str] = field(default_factory=dict)  # files passed by the disclosure check -> sha256
    findings: list[str] = field(default_factory=list)  # the disclosure check's findings


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
# the chart font, which the first area of each worker would pay otherwise.
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
    from pipelines.render import pandoc

    pandoc._base_font()


def render_area(renderer: str, executed: Path, html: Path, pdf: Path, meta: dict) -> list[str]:
    """Render one executed notebook to HTML and PDF (never re-executes), and write its charts' data
    files beside the HTML (``render.common.write_chart_data``). Each file is written under a
    temporary name and renamed, so a published name never holds a half-written file. Returns the
    paths written: HTML, PDF, then the data files."""
    from pipelines.render import get_renderer
    from pipelines.render.common import chart_data_dir, write_chart_data

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
    from pipelines.engine.publish import EXECUTED_DIR, ensure_work

    return ensure_work(Path(out_dir).resolve()) / EXECUTED_DIR


def report_notebook() -> Path:
    """The report notebook, read at call time: ``TSUNAGARI_REPORTS_DIR`` (a fork) may point elsewhere."""
    return Path(config.REPORTS_DIR) / "report.ipynb"


def area_files(site: Path, executed_in: Path, code: int) -> tuple[Path, Path, Path]:
    """An area's HTML and PDF in the site (national.* at the top, prefectures/{slug}.* below), and
    its executed notebook in `executed_in` (the working folder's executed/, never the site)."""
    slug = pref_slug(code)
    target = Path(site) if code == 0 else Path(site) / "prefectures"
    return target / f"{slug}.html", target / f"{slug}.pdf", Path(executed_in) / f"{slug}.ipynb"


_CONTEXT: dict = {}


def check_context(warehouse: Path, year: int):
    """The disclosure check's context (suppressed cells, respondent ids), read from the warehouse
    once per process while the warehouse file is unchanged."""
    from pipelines.disclosure.check import make_context
    from pipelines.outputs.report_data import warehouse_key

    key = (warehouse_key(Path(warehouse)), int(year))
    if _CONTEXT.get("key") != key:
        _CONTEXT.update(key=key, ctx=make_context(Path(warehouse), year=int(year)))
    return _CONTEXT["ctx"]


def check_area(site: Path, written: list[str], warehouse: Path, year: int) -> dict:
    """The disclosure check of an area's published text: its HTML and chart data files (the PDF is
    rendered from the same notebook; the executed notebook is not published). Returns
    {"checked": {site-relative path: sha256}, "findings": [text]}."""
    import hashlib

    from pipelines.disclosure.check import check_files

    site = Path(site)
    rels = [Path(p).resolve().relative_to(site.resolve()).as_posix() for p in written if not str(p).endswith(".pdf")]
    findings = check_files(site, rels, check_context(Path(warehouse), int(year)))
    return {
        "checked": {r: hashlib.sha256((site / r).read_bytes()).hexdigest() for r in rels},
        "findings": [str(f) for f in findings],
    }


def render_and_check(
    renderer: str, executed: Path, html: Path, pdf: Path, meta: dict, site: Path, warehouse: Path, year: int
) -> dict:
    """Run in a report worker after the notebook: render HTML + PDF (``render_area``), then the
    disclosure check of this area (``check_area``) while the other areas still run. Returns
    ``check_area``'s dict plus "written" (the paths rendered)."""
    t = time.perf_counter()
    written = render_area(renderer, executed, html, pdf, meta)
    seconds = time.perf_counter() - t
    return {**check_area(site, written, warehouse, year), "written": written, "render_seconds": seconds}


def run_areas(
    codes: list[int],
    year: int,
    warehouse: Path,
    site: Path,
    executed_in: Path,
    renderer: str,
    *,
    jobs: int = 1,
    pool=None,
    on_done=None,
) -> list[AreaResult]:
    """The one function that executes and renders areas, for the build's reports stage and for
    ``run_reports``: each area's notebook in a warm worker kernel (pipelines/engine/kernels.py; `pool`
    when the caller has one), rendered in the worker and its published text checked for
    disclosure there (``render_and_check``); with Quarto, one project render of every area that
    ran (``render_site_quarto``), then the same check. An area with a finding is failed, its
    findings in ``AreaResult.findings``. One area's failure does not stop the others.
    `renderer` is a resolved name ('pandoc' or 'quarto'); `on_done(outcome)` follows each notebook."""
    from pipelines.engine.kernels import Task, run_tasks

    notebook = report_notebook()
    synthetic = is_synthetic(warehouse)
    warehouse = Path(warehouse).resolve()
    # The executed notebooks (kept beside the site, not published) get the warehouse path relative
    # to the working folder (e.g. data/warehouse.duckdb), not an absolute server path.
    wh_param = os.path.relpath(warehouse)
    quarto = renderer == "quarto"
    files = {code: area_files(site, executed_in, code) for code in codes}
    tasks = []
    for code in codes:
        html, pdf, executed = files[code]
        meta = area_meta(code, year, synthetic)
        tasks.append(
            Task(
                pref_slug(code),
                notebook,
                executed,
                {"year": int(year), "pref_code": int(code), "warehouse": wh_param},
                cwd=Path.cwd(),
                after=None if quarto else render_and_check,
                after_args=() if quarto else (renderer, executed, html, pdf, meta, site, warehouse, int(year)),
            )
        )
    results = []
    for code, o in zip(codes, run_tasks(tasks, jobs=jobs, on_done=on_done, pool=pool)):
        res = AreaResult(slug=o.key, ok=o.ok, execute_seconds=o.seconds, error=o.error, code=code)
        if o.ok and isinstance(o.result, dict):
            res.outputs = [Path(p) for p in o.result.get("written", [])]
            res.checked, res.findings = o.result.get("checked", {}), o.result.get("findings", [])
            res.render_seconds = o.result.get("render_seconds", 0.0)
            res.execute_seconds = max(0.0, o.seconds - res.render_seconds)
        results.append(res)
    if quarto:
        _render_quarto([r for r in results if r.ok], files, year, synthetic, site, warehouse, jobs)
    for r in results:
        if r.ok and r.findings:
            r.ok, r.error = False, "disclosure: " + "; ".join(r.findings)
    return results


def _render_quarto(
    ok: list[AreaResult], files: dict, year: int, synthetic: bool, site: Path, warehouse: Path, jobs: int
) -> None:
    """One Quarto project render for the areas whose notebooks ran, then their disclosure check."""
    from pipelines.domain.errors import TsunagariError
    from pipelines.render.common import chart_data_dir
    from pipelines.render.quarto import render_site_quarto

    if not ok:
        return
    executed = {r.slug: files[r.code][2] for r in ok}
    areas = {r.slug: area_meta(r.code, year, synthetic) for r in ok}
    t = time.perf_counter()
    try:
        render_site_quarto(executed, site, {"year": year, "synthetic": synthetic, "areas": areas}, jobs=jobs)
    except TsunagariError as exc:
        for r in ok:
            r.ok, r.error = False, f"quarto: {exc}"
        return
    seconds = (time.perf_counter() - t) / len(ok)
    for r in ok:
        html, pdf, _ = files[r.code]
        data = chart_data_dir(html)
        r.outputs = [html, pdf] + (sorted(data.glob("*.csv")) if data.is_dir() else [])
        r.render_seconds = seconds
        check = check_area(site, [str(p) for p in r.outputs], warehouse, year)
        r.checked, r.findings = check["checked"], check["findings"]


def _is_site_folder(out: Path) -> str | None:
    """What makes `out` a folder the build publishes or works in (None: a plain folder)."""
    from pipelines.engine import publish

    out = Path(out).resolve()
    if publish.owned(out):
        return "a published site (it holds the build's marker .tsunagari-site)"
    name = out.name
    if name.startswith(publish.PREFIX) and name.endswith((publish.SUFFIX_NEW, publish.SUFFIX_OLD, publish.SUFFIX_WORK)):
        return "one of the build's own folders"
    return None


def run_reports(
    year: int, warehouse: Path, out_dir: Path, prefs: list[int] | None = None, renderer: str = "auto", jobs: int = 1
) -> ReportsResult:
    """A preview of area reports in a scratch folder (for researchers and tests): ``run_areas``
    into `out_dir`, which must not be a published site or one of the build's folders (UsageError):
    a published site is changed only by the build's staged, checked swap (``tsunagari build``, or
    ``tsunagari reports``, its reports-only view). The executed notebooks go to the working folder
    beside `out_dir` (``executed_dir``). prefs empty -> national and all 47 prefectures (JIS
    order); invalid codes raise UsageError. Each area is checked for disclosure like in the build.
    """
    year = check_year(year)  # it names output files and is bound into SQL: digits only
    codes = [0 if str(p).strip() in ("0", "00") else check_pref_code(p) for p in (prefs or [])]  # 0 = national
    if not codes:
        codes = [0] + [int(c) for c in prefectures().pref_code]
    warehouse = Path(warehouse)
    if not warehouse.exists():
        raise UsageError("--warehouse", f"'{warehouse}' does not exist / ウェアハウスがありません")
    out_dir = Path(out_dir)
    why = _is_site_folder(out_dir)
    if why:
        raise UsageError(
            "--out",
            f"'{out_dir}' is {why}; a preview never writes into it. Use `tsunagari reports "
            f"--out {out_dir}` (staged, checked and swapped in) or another folder "
            f"/ 公開フォルダには直接書き込みません",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    from pipelines.render import get_renderer

    name = get_renderer(renderer).name  # resolve 'auto' once
    result = ReportsResult()
    result.areas = run_areas(codes, int(year), warehouse, out_dir, executed_dir(out_dir), name, jobs=jobs)
    log.info(result.summary())
    return result
