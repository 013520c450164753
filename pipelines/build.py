"""`tsunagari build`: ingest -> validate -> indicators -> reports -> site, then publish.

One BuildConfig, logging to stderr and to ``build.log`` in the build's working folder
``.<out>.tsunagari-work`` beside the site (config logged at the start), and named stages. Each
artefact has a content hash of its inputs (its slice of the warehouse and the fingerprint of code,
templates, reference data, settings and libraries, pipelines/engine/fingerprint.py); an artefact whose hash
is unchanged, and whose files in the site are still the bytes it wrote (the state records their
sha256), is not rebuilt: a published file changed by hand is built again. The new site is assembled in ``.<out>.tsunagari-new`` and swapped in
only when every stage succeeded and the publish scan (an allow-list) passed (pipelines/engine/publish.py);
a failure leaves the published site untouched and the exit code non-zero. Only the site is
published: the executed notebooks, the indicators notebook (the audit record), the log, the
summary and the build's records stay in the working folder.

``tsunagari reports`` and ``tsunagari indicators`` are views of this build (``BuildConfig.stages``):
only their stage runs, through the same staging, publish scan, disclosure gate, swap and lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import duckdb

from pipelines.domain import config
from pipelines.domain.config import BuildConfig
from pipelines.domain.errors import UsageError, printable
from pipelines.domain.reference import pref_slug, prefectures
from pipelines.engine import fingerprint, interrupt, keys, publish
from pipelines.engine.publish import BuildState, digest
from pipelines.ingest.stage import has_new_inputs, start_validation_warm_up
from pipelines.io import logs
from pipelines.io import warehouse as warehouse_db
from pipelines.io.logs import display_path
from pipelines.validate import gx_process as validator

if TYPE_CHECKING:
    from pipelines.validate.stage import ValidationReport

log = logging.getLogger("tsunagari.build")


@dataclass
class BuildSummary:
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)  # notebooks actually executed this run
    rendered: list[str] = field(default_factory=list)  # areas actually rendered this run
    published: bool = False
    out_dir: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        lines = [
            f"build {'OK' if self.ok else 'FAILED'} in {self.seconds:.1f} s / ビルド{'完了' if self.ok else '失敗'}"
        ]
        lines.append(
            f"  built / 作成: {len(self.built)}"
            + (f" ({', '.join(self.built[:8])}{' …' if len(self.built) > 8 else ''})" if self.built else "")
        )
        lines.append(f"  up to date / 更新不要: {len(self.skipped)}")
        if self.failed:
            lines.append(f"  failed / 失敗: {len(self.failed)}")
            lines += [f"    - {f}" for f in self.failed]
        if self.published:
            lines.append(f"  published / 公開: {display_path(self.out_dir)}")
        else:
            lines.append(
                f"  NOT published: the previous site in {display_path(self.out_dir)} is unchanged "
                "/ 公開サイトは変更していません"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Progress display
# ---------------------------------------------------------------------------------------------


class Progress:
    """A rich progress display per stage and per area; silent with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._p = None
        if not quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._p = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> "Progress":
        if self._p:
            self._p.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._p:
            self._p.stop()

    def add(self, description: str, total: int) -> int | None:
        return self._p.add_task(description, total=total) if self._p else None

    def advance(self, task: int | None, n: int = 1) -> None:
        if self._p and task is not None:
            self._p.advance(task, n)

    @contextmanager
    def stage(self, description: str) -> Iterator[None]:
        t = self.add(description, 1)
        start = time.perf_counter()
        yield
        self.advance(t)
        log.info("%s done in %.2f s", description, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Input hashes
# ---------------------------------------------------------------------------------------------


def _code_hash() -> str:
    """Everything but the data that can change an artefact: the whole package, the report folder,
    reference data, suites, settings and library versions (pipelines/engine/fingerprint.py), computed once
    per build. No hand-kept list of files: changing any constant rebuilds what depends on it."""
    return fingerprint.current()


def files_hash(con: duckdb.DuckDBPyConnection) -> str:
    """The digest of the committed files (``keys.FILES``); 'none' when there are none."""
    return keys.row_digests(con, keys.FILES).get("all", "none")


def latest_year(con: duckdb.DuckDBPyConnection) -> int:
    if not warehouse_db.has_table(con, "survey_responses"):
        raise UsageError("--year", "the warehouse has no survey data / 調査データがありません")
    row = con.execute("SELECT max(survey_year) FROM survey_responses WHERE survey_kind = 'national'").fetchone()
    if row[0] is None:
        raise UsageError("--year", "the warehouse has no national survey round / 全国調査のデータがありません")
    limit = time.localtime().tm_year + 1  # issue #15: ingest refuses such rounds; a warehouse may predate that
    if int(row[0]) > limit:
        raise UsageError(
            "--year",
            f"the latest national round in the warehouse, {int(row[0])}, is after next year "
            f"({limit}); give --year explicitly / 最新の全国調査 {int(row[0])}年が来年より後です。"
            "--year を指定してください",
        )
    return int(row[0])


def report_hashes(
    con: duckdb.DuckDBPyConnection, year: int, codes: list[int], renderer: str, synthetic: bool
) -> dict[int, str]:
    """The input hash of each area's report (``reports.REPORT``'s key).

    A prefecture report shows its own rows (every round up to `year`), the national rows, and as
    context (spine chart, programme chart) the prefectures estimated from the national survey plus
    every prefecture's programme figures; see pipelines.outputs.reports.context_rows, the same rule. A
    correction to one prefecture's own survey therefore rebuilds that prefecture, the national
    report and the index only. The national report depends on every area.
    """
    from pipelines.outputs.reports import AREA_DISTRIBUTIONS, AREA_INDICATORS, CONTEXT, CONTEXT_SQL, REPORT

    own_i = keys.row_digests(con, AREA_INDICATORS, "year <= ?", [year], by="area_code")
    own_d = keys.row_digests(con, AREA_DISTRIBUTIONS, "year <= ?", [year], by="area_code")
    ctx = keys.row_digests(con, CONTEXT, params=[year], source=CONTEXT_SQL).get("all", "")
    every = {AREA_INDICATORS: digest(sorted(own_i.items())), AREA_DISTRIBUTIONS: digest(sorted(own_d.items()))}
    code, version = _code_hash(), _renderer_version(renderer)
    out = {}
    for c in codes:
        ac = f"{c:02d}"
        mine = (
            every
            if c == 0
            else {
                AREA_INDICATORS: digest(own_i.get(ac, ""), own_i.get("00", "")),
                AREA_DISTRIBUTIONS: digest(own_d.get(ac, ""), own_d.get("00", "")),
            }
        )
        out[c] = keys.key(REPORT, {**mine, CONTEXT: ctx}, code, ac, year, renderer, version, synthetic)
    return out


def _quality_key(fhash: str) -> str:
    from pipelines.validate.stage import QUALITY

    return keys.key(QUALITY, {keys.FILES: fhash}, _code_hash())


def _indicators_key(fhash: str, year: int) -> str:
    from pipelines.indicators.stage import INDICATORS

    return keys.key(INDICATORS, {keys.FILES: fhash}, _code_hash(), year, sorted(config.design_effects().items()))


def _downloads_keys(con: duckdb.DuckDBPyConnection, rows_out: dict[str, str] | None = None) -> dict[str, str]:
    """{'downloads': key of the all-rounds files, 'downloads:Y': key of round Y's files, ...}.
    `rows_out` receives the digest of each round's rows ({"2024": ...}: the workbooks read them too)."""
    from pipelines.outputs.downloads import DOWNLOAD_ROWS, DOWNLOADS, NOTED_FILES

    rows = keys.row_digests(con, DOWNLOAD_ROWS, by="year")
    if rows_out is not None:
        rows_out.update(rows)
    years = sorted(int(y) for y in rows)
    synthetic = warehouse_db.has_table(con, "files") and bool(  # every round's rows carry the warehouse's flag
        con.execute("SELECT coalesce(bool_or(synthetic), false) FROM files").fetchone()[0]
    )
    code = _code_hash()
    out = {
        "downloads": keys.key(
            DOWNLOADS,
            {
                DOWNLOAD_ROWS: digest(sorted(rows.items())),
                NOTED_FILES: keys.row_digests(con, NOTED_FILES).get("all", ""),
            },
            code,
            "all",
            years,
            synthetic,
        )
    }
    for y in years:  # the notes sheet lists the programme files and the survey files up to round y
        noted = keys.row_digests(con, NOTED_FILES, "survey_year IS NULL OR survey_year <= ?", [y]).get("all", "")
        out[f"downloads:{y}"] = keys.key(
            DOWNLOADS, {DOWNLOAD_ROWS: rows[str(y)], NOTED_FILES: noted}, code, y, synthetic
        )
    return out


def _workbooks_key(warehouse: Path, year: int, fhash: str, round_rows: dict[str, str] | None = None) -> str:
    """``site.WORKBOOKS``'s key: the round's rows (the columns of the downloads; `round_rows`: their
    digests as ``_downloads_keys`` made them, else read now), the files."""
    from pipelines.outputs.downloads import DOWNLOAD_ROWS
    from pipelines.outputs.site import WORKBOOKS

    if round_rows is not None and str(year) in round_rows:
        rows = round_rows[str(year)]
    else:
        con = warehouse_db.connect(warehouse)
        try:
            rows = keys.row_digests(con, DOWNLOAD_ROWS, "year = ?", [year]).get("all", "")
        finally:
            con.close()
    return keys.key(WORKBOOKS, {DOWNLOAD_ROWS: rows, keys.FILES: fhash}, _code_hash(), year)


def _site_key(con: duckdb.DuckDBPyConnection, year: int, linked: list[str]) -> str:
    from pipelines.outputs.site import SITE, SITE_INDICATORS

    rows = keys.row_digests(con, SITE_INDICATORS, "year = ?", [year]).get("all", "")
    return keys.key(SITE, {SITE_INDICATORS: rows, keys.FILES: files_hash(con)}, _code_hash(), year, linked)


def input_keys(warehouse: Path, year: int, codes: list[int], renderer: str, site_dir: Path) -> dict[str, str]:
    """The key of every artefact of round `year` as the build would compute it now (the areas
    `codes`; `site_dir`: the site whose files the pages link to), by the names of the build state."""
    from pipelines.outputs.reports import is_synthetic

    synthetic = is_synthetic(warehouse)
    con = warehouse_db.connect(warehouse)
    try:
        fh = files_hash(con)
        out = {
            f"report:{year}:{pref_slug(c)}": k for c, k in report_hashes(con, year, codes, renderer, synthetic).items()
        }
        out.update(_downloads_keys(con))
        out[f"site:{year}"] = _site_key(con, year, _linked_files(Path(site_dir), year))
    finally:
        con.close()
    out[f"workbooks:{year}"] = _workbooks_key(warehouse, year, fh)
    out["quality"] = _quality_key(fh)
    out[f"indicators:{year}"] = _indicators_key(fh, year)
    return out


def _renderer_version(renderer: str) -> str:
    try:
        if renderer == "quarto":
            from pipelines.render import quarto

            return f"quarto {quarto.quarto_version()} {digest(quarto.PROJECT_FILE)}"
        import pypandoc
        import typst

        return f"pandoc {pypandoc.get_pandoc_version()} typst-py {getattr(typst, '__version__', '?')}"
    except Exception:
        return "?"


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


def _stage_ingest(cfg: BuildConfig, summary: BuildSummary) -> None:
    from pipelines.ingest.stage import ingest_dir

    if not Path(cfg.input_dir).is_dir():
        raise UsageError("--input", f"'{cfg.input_dir}' is not a folder / フォルダではありません")
    result = ingest_dir(Path(cfg.input_dir), cfg.warehouse)
    for name in result.committed:  # names escaped: a newline in a file name must not forge summary lines
        summary.built.append(f"ingest:{printable(name)}")
    for name in result.skipped:
        summary.skipped.append(f"ingest:{printable(name)}")
    for line in result.summary().splitlines():
        log.info("%s", line)


def _incremental(
    cfg: BuildConfig, state: BuildState, summary: BuildSummary, key: str, d: str, outputs: list[Path], build
) -> bool:
    """Run `build()` unless artefact `key` is up to date (same input hash, outputs present and
    still the bytes recorded, no --force). The key is invalidated first, so a killed build never
    leaves it marked done. The state records the sha256 of `outputs` and of the files `build()`
    returns (a list of paths), so that a published file changed by hand is built again."""
    if not cfg.force and state.up_to_date(key, d, outputs):
        summary.skipped.append(key)
        return False
    for changed in state.changed_files(key):  # changed by hand: removed, so that build() writes it
        log.warning(
            "%s: %s was changed since the build wrote it; building it again",
            key,
            changed.relative_to(state.site_dir).as_posix(),
        )
        changed.unlink(missing_ok=True)
    state.invalidate(key)
    written = build()
    extra = [Path(p) for p in written] if isinstance(written, (list, tuple)) else []
    state.record(key, d, list(outputs) + extra)
    summary.built.append(key)
    return True


def quality_design(warehouse: Path) -> dict | None:
    """The quality page's design-effect section (``indicators.design_report``)."""
    from pipelines.indicators.stage import design_report

    con = warehouse_db.connect(warehouse)
    try:
        return design_report(con)
    finally:
        con.close()


def _stage_quality(cfg: BuildConfig, new: Path, state: BuildState, fhash: str, summary: BuildSummary):
    """The quality page, from the validation results stored at ingest where they still fit. Returns
    the results of the files that had to be validated again (e.g. after an upgrade changed the
    suites or validate.py), for `_store_fresh_results`; None when there were none."""
    from pipelines.outputs.quality import write_quality_page

    d = _quality_key(fhash)
    made = []

    def build() -> None:
        report = write_quality_page(cfg.warehouse, new / "quality", reuse=True, design=quality_design(cfg.warehouse))
        made.append(report)
        return sorted(p for p in (new / "quality").rglob("*") if p.is_file())

    _incremental(cfg, state, summary, "quality", d, [new / "quality" / "index.html"], build)
    return made[0].only(made[0].fresh) if made and made[0].fresh else None


def _store_fresh_results(cfg: BuildConfig, fresh) -> None:
    """Store results the quality page had to compute, so that the next build reuses them instead of
    validating every file again. Called when the workers are done: the warehouse is opened for
    writing, which DuckDB refuses while another process reads it. A failure only costs the next
    build the same work, so it is logged, not raised."""
    from pipelines.validate.stage import store_results

    try:
        con = warehouse_db.connect(cfg.warehouse, write=True)
        try:
            con.execute("BEGIN TRANSACTION")
            store_results(con, fresh)
            con.execute("COMMIT")
        finally:
            con.close()
        log.info("stored the validation results of %d file(s) validated for the quality page", len(fresh.files))
    except Exception as exc:  # e.g. the warehouse is locked by a notebook open elsewhere
        log.warning("validation results not stored (%s); the next build validates again", exc)


def _stage_indicators(
    cfg: BuildConfig, new: Path, state: BuildState, year: int, fhash: str, summary: BuildSummary, pool=None
) -> None:
    """Execute the indicators notebook (in a warm worker kernel when the pool is up): it brings every
    round of the indicators tables up to date, recomputing only the rounds whose inputs changed."""
    key = f"indicators:{year}"
    d = _indicators_key(fhash, year)
    con = warehouse_db.connect(cfg.warehouse)
    try:
        have_rows = (
            warehouse_db.has_table(con, "indicators")
            and con.execute("SELECT count(*) FROM indicators WHERE year = ?", [year]).fetchone()[0] > 0
        )
    finally:
        con.close()
    if not have_rows:
        state.invalidate(key)  # the table was emptied behind the build's back: recompute
    from pipelines.indicators.stage import run_indicators

    # The executed notebook, the audit record, is kept in the working folder (runs/), not published.
    outputs = [state.work / publish.RUNS_DIR / f"indicators-{year}.ipynb"]
    if _incremental(
        cfg, state, summary, key, d, outputs, lambda: run_indicators(year, cfg.warehouse, state.work, pool=pool)
    ):
        summary.executed.append(f"indicators-{year}")


def _stage_downloads(
    cfg: BuildConfig, new: Path, state: BuildState, year: int, summary: BuildSummary, round_rows: dict[str, str]
) -> None:
    """indicators.csv|xlsx (every round) and indicators-{y}.csv|xlsx per round, each an artefact of
    its own (``downloads.DOWNLOADS``'s key): a round's files are rewritten only when that round's
    rows (the columns the downloads hold) or the source files its notes list changed."""
    from pipelines.outputs.downloads import DICTIONARY_FILE, write_downloads

    con = warehouse_db.connect(cfg.warehouse)
    try:
        d = _downloads_keys(con, round_rows)
    finally:
        con.close()

    def outputs(stem: str) -> list[Path]:
        return [new / "downloads" / f"{stem}.{ext}" for ext in ("csv", "xlsx")]

    _incremental(
        cfg,
        state,
        summary,
        "downloads",
        d.pop("downloads"),
        outputs("indicators") + [new / "downloads" / DICTIONARY_FILE],
        lambda: write_downloads(year, cfg.warehouse, new, years=[]),
    )
    for key, k in d.items():
        y = int(key.split(":")[1])
        _incremental(
            cfg,
            state,
            summary,
            key,
            k,
            outputs(f"indicators-{y}"),
            lambda y=y: write_downloads(year, cfg.warehouse, new, years=[y], combined=False),
        )


def _check_context(warehouse: Path, year: int):
    from pipelines.outputs.reports import check_context

    return check_context(warehouse, year)


def _stage_reports(
    cfg: BuildConfig,
    new: Path,
    state: BuildState,
    year: int,
    renderer: str,
    progress: Progress,
    summary: BuildSummary,
    pool=None,
    checked: dict[str, str] | None = None,
) -> None:
    """Execute and render the areas whose inputs changed or whose published files differ from the
    ones recorded (``reports.run_areas``, which also checks each area for disclosure). `checked`
    collects the files the check passed (path -> sha256)."""
    from pipelines.outputs.reports import area_files, is_synthetic, run_areas
    from pipelines.render.common import chart_data_dir

    checked = {} if checked is None else checked
    codes = [0] + [int(c) for c in prefectures().pref_code] if not cfg.prefs else list(cfg.prefs)
    synthetic = is_synthetic(cfg.warehouse)
    con = warehouse_db.connect(cfg.warehouse)
    try:
        hashes = report_hashes(con, year, codes, renderer, synthetic)
    finally:
        con.close()
    executed_in = state.work / publish.EXECUTED_DIR

    def key(code: int) -> str:
        return f"report:{year}:{pref_slug(code)}"

    todo = []
    for code in codes:
        html, pdf, executed = area_files(new, executed_in, code)
        if not cfg.force and state.up_to_date(key(code), hashes[code], [html, pdf, executed]):
            summary.skipped.append(key(code))
            continue
        state.invalidate(key(code))
        todo.append(code)
    if not todo:
        return
    bar = progress.add(f"reports {year} ({len(todo)} areas, {cfg.jobs} jobs)", len(todo))

    def done(outcome) -> None:
        progress.advance(bar)
        log.info(
            "%s: %s in %.2f s%s",
            outcome.key,
            "ok" if outcome.ok else "FAILED",
            outcome.seconds,
            "" if outcome.ok else f": {outcome.error}",
        )

    results = run_areas(
        todo, year, Path(cfg.warehouse), new, executed_in, renderer, jobs=cfg.jobs, pool=pool, on_done=done
    )
    for r in results:
        summary.executed.append(r.slug)
        if r.findings:
            summary.failed += [f"disclosure: {f}" for f in r.findings]
        elif not r.ok and str(r.error).startswith("quarto: "):  # one project render: said once
            if r.error not in summary.failed:
                summary.failed.append(r.error)
        elif not r.ok:
            summary.failed.append(f"{key(r.code)}: {r.error}")
        else:
            checked.update(r.checked)
            html, pdf, _ = area_files(new, executed_in, r.code)
            data = chart_data_dir(html)
            state.record(key(r.code), hashes[r.code], [html, pdf] + (sorted(data.iterdir()) if data.is_dir() else []))
            summary.built.append(key(r.code))
            summary.rendered.append(r.slug)


def _linked_files(new: Path, year: int) -> list[str]:
    """The files the site pages link to only when they exist (reports, quality page), and every
    download with its size (the downloads page lists them)."""
    names = [f"prefectures/{pref_slug(int(c))}.{ext}" for c in prefectures().pref_code for ext in ("html", "pdf")]
    names += ["national.html", "national.pdf", "quality/index.html"]
    linked = [n for n in names if (new / n).exists()]  # (a report being written is a .tmp. file)
    # the downloads page lists every download with its size
    from pipelines.outputs.site import download_files

    return linked + [f"downloads/{name} {size}" for name, size in download_files(new)]


def _stage_site(
    cfg: BuildConfig, new: Path, state: BuildState, year: int, summary: BuildSummary, again: bool = False
) -> None:
    """The site pages. The build calls it while the reports run (when they all exist already, as
    after a correction, that is the final version) and again after them, which rewrites the
    pages only if the set of report files they link to changed (a first build)."""
    from pipelines.outputs.site import build_site

    key = f"site:{year}"
    con = warehouse_db.connect(cfg.warehouse)
    try:
        d = _site_key(con, year, _linked_files(new, year))
    finally:
        con.close()
    outputs = [new / "index.html", new / "methodology.html"]
    if again and state.up_to_date(key, d, outputs):
        return  # the pages written during the reports are final
    if again and key in summary.built:
        summary.built.remove(key)
    # The workbooks were written (and checked) in the downloads stage of this build.
    _incremental(cfg, state, summary, key, d, outputs, lambda: build_site(year, cfg.warehouse, new, workbooks=False))


def _file_hashes(site: Path, under: tuple[str, ...] = ("",)) -> dict[str, str]:
    """sha256 of every published file (the marker excluded) whose site-relative path starts with
    one of `under`."""
    out = {}
    for p in site.rglob("*"):
        rel = p.relative_to(site).as_posix()
        if rel.startswith(under) and p.is_file() and rel != publish.MARKER:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _stage_disclosure(
    cfg: BuildConfig, new: Path, work: Path, year: int, summary: BuildSummary, checked_now: dict[str, str] | None = None
) -> None:
    """Scan the assembled site (downloads, pages, report tables) for disclosive cells:
    every file that differs from the last checked version (all files with --force), except those
    checked earlier in this build (by the report workers, or the downloads while the reports ran)
    and unchanged since (`checked_now`)."""
    from pipelines.disclosure.check import check_files

    record = work / publish.CHECKED_FILE  # (a record of the build: kept in the working folder)
    checked = _last_checked(cfg, record)
    current = _file_hashes(new)
    todo = {rel for rel, h in current.items() if checked.get(rel) != h}
    early = {rel for rel in todo if (checked_now or {}).get(rel) == current[rel]}
    todo -= early
    if not todo:
        if early:
            _write_checked(record, current)
            summary.built.append(f"disclosure ({len(early)} files checked while the reports ran)")
        else:
            summary.skipped.append("disclosure")
        return
    findings = check_files(new, sorted(todo), _check_context(Path(cfg.warehouse), year))
    if findings:
        summary.failed += [f"disclosure: {f}" for f in findings]
        return
    _write_checked(record, current)
    summary.built.append(
        f"disclosure ({len(todo) + len(early)} files checked"
        + (f", {len(early)} of them while the reports ran)" if early else ")")
    )


EARLY_CHECK = ("downloads/", "quality/results.json")


def _check_early(
    cfg: BuildConfig, new: Path, work: Path, year: int, summary: BuildSummary, checked_now: dict[str, str]
) -> None:
    """While the reports run: the disclosure check of the downloads and the validation results,
    which are final by now (what changes later is checked again: the final
    check skips only files whose hash is the one checked here)."""
    from pipelines.disclosure.check import check_files

    before = _last_checked(cfg, work / publish.CHECKED_FILE)
    todo = {rel: h for rel, h in sorted(_file_hashes(new, EARLY_CHECK).items()) if before.get(rel) != h}
    if not todo:
        return
    # a data file under a checked name (e.g. Parquet as .csv) is refused as such, before reading it
    refused = [f for f in publish.scan_site(new) if f.split(":", 1)[0] in todo]
    if refused:
        summary.failed += [f"publish: {f}" for f in refused]
        return
    findings = check_files(new, list(todo), _check_context(Path(cfg.warehouse), year))
    if findings:
        summary.failed += [f"disclosure: {f}" for f in findings]
        return
    checked_now.update(todo)


CHECKER_KEY = ""  # the record's entry for the fingerprint of the code that did the checking


def _last_checked(cfg: BuildConfig, record: Path) -> dict[str, str]:
    """The files (path -> sha256) an earlier build checked for disclosure; none with --force, and
    none when the checker (or anything else in the package) changed since."""
    try:
        data = {} if cfg.force else json.loads(record.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if data.pop(CHECKER_KEY, None) == _checker_key() else {}


def _checker_key() -> str:
    from pipelines.disclosure.check import RECORD

    return keys.key(RECORD, {}, _code_hash())


def _write_checked(record: Path, current: dict[str, str]) -> None:
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({**current, CHECKER_KEY: _checker_key()}, indent=0, sort_keys=True), encoding="utf-8")
    tmp.replace(record)


# ---------------------------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------------------------


def resolve_renderer(name: str) -> str:
    from pipelines.render import get_renderer, quarto_available

    if name == "quarto" and not quarto_available():
        raise UsageError(
            "--renderer",
            "quarto is not installed (not on PATH, QUARTO_PATH unset) / Quarto がインストールされていません",
        )
    return get_renderer(name).name


def _start_pool(cfg: BuildConfig, renderer: str):
    """New data (or --force) means reports will run: start their warm kernels now, while ingest
    runs on the other core. None when nothing new came in (a pool starts later if needed). No more
    workers (each with a kernel) than --jobs, nor than reports the build can run (--pref 31: one)."""
    new_data = _runs(cfg, "ingest") and has_new_inputs(Path(cfg.input_dir), Path(cfg.warehouse))
    pool = None
    if (cfg.force or new_data) and _runs(cfg, "reports"):
        from pipelines.engine.kernels import WarmPool
        from pipelines.outputs.reports import KERNEL_PRELOAD, warm_renderer

        areas = len(set(cfg.prefs)) if cfg.prefs else 1 + len(prefectures())
        pool = WarmPool(
            min(cfg.jobs, areas), warm=warm_renderer if renderer == "pandoc" else None, preload=KERNEL_PRELOAD
        )
    if new_data:
        start_validation_warm_up()  # GX is slow to import: begin before ingest needs it
    else:
        validator.stop()  # nothing to validate: the CLI's early GX process is not needed
    return pool


STAGES = ("ingest", "indicators", "reports", "site")  # the views a BuildConfig.stages may name


def _runs(cfg: BuildConfig, stage: str) -> bool:
    """Whether the build runs `stage`: every stage, or those of a view (``cfg.stages``)."""
    return not cfg.stages or stage in cfg.stages


def _run_stages(
    cfg: BuildConfig,
    new: Path,
    state: BuildState,
    renderer: str,
    progress: Progress,
    summary: BuildSummary,
    pool,
    checked_now: dict[str, str],
) -> tuple[int, ValidationReport | None]:
    """ingest -> indicators -> reports on the workers, and meanwhile in this process what does not
    depend on them (quality page, downloads, workbooks, their disclosure check). A view runs only
    its stages: ``indicators`` (the indicators and the downloads written from them), ``reports``
    (the areas of ``cfg.prefs``). Returns the round and the results validated again (``_stage_quality``)."""
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.outputs.site import write_pref_workbooks

    if _runs(cfg, "ingest"):
        with progress.stage("ingest + validate / 取り込み・検証"):
            _stage_ingest(cfg, summary)
    validator.stop()
    con = warehouse_db.connect(cfg.warehouse)
    try:
        year = cfg.year or latest_year(con)
        fhash = files_hash(con)
        have = (
            warehouse_db.has_table(con, "indicators")
            and con.execute("SELECT count(*) FROM indicators WHERE year = ?", [year]).fetchone()[0] > 0
        )
    finally:
        con.close()
    log.info("round / 調査年: %s", year)
    if _runs(cfg, "indicators"):
        with progress.stage(f"indicators {year} / 指標"):
            _stage_indicators(cfg, new, state, year, fhash, summary, pool=pool)
    elif not have:
        raise UsageError(
            "--year",
            f"the warehouse has no indicators for {year}; run `tsunagari build` (or "
            f"`tsunagari indicators --year {year}`) first / {year}年の指標がありません",
        )
    fresh = None
    with ThreadPoolExecutor(1, thread_name_prefix="reports") as bg:
        reports = (
            bg.submit(_stage_reports, cfg, new, state, year, renderer, progress, summary, pool, checked_now)
            if _runs(cfg, "reports")
            else None
        )
        try:
            if not cfg.stages:
                with progress.stage("quality page / データ品質"):
                    fresh = _stage_quality(cfg, new, state, fhash, summary)
            if _runs(cfg, "indicators"):
                with progress.stage(f"downloads {year} / ダウンロード"):
                    round_rows: dict[str, str] = {}
                    _stage_downloads(cfg, new, state, year, summary, round_rows)
                    if not cfg.stages:
                        workbooks = [
                            new / "downloads" / f"{pref_slug(int(c))}-{year}.xlsx" for c in prefectures().pref_code
                        ]
                        _incremental(
                            cfg,
                            state,
                            summary,
                            f"workbooks:{year}",
                            _workbooks_key(cfg.warehouse, year, fhash, round_rows),
                            workbooks,
                            lambda: _pref_workbooks(write_pref_workbooks, year, cfg, new, state.work),
                        )
                with progress.stage("disclosure check of the downloads / 秘匿の確認（ダウンロード）"):
                    _check_early(cfg, new, state.work, year, summary, checked_now)
            if _runs(cfg, "site"):
                with progress.stage("site / サイト"):
                    _stage_site(cfg, new, state, year, summary)
        finally:
            if reports is not None:
                reports.result()
    return year, fresh


WORKBOOK_DIGESTS_IN_SITE = Path("downloads") / ".xlsx-inputs.json"  # where site.write_pref_workbooks keeps them


def _pref_workbooks(write, year: int, cfg: BuildConfig, new: Path, work: Path) -> list[Path]:
    """The per-prefecture workbooks. Their writer keeps its input digests beside them
    (downloads/.xlsx-inputs.json); a record of the build is not published: it is moved in from the
    working folder for the call and back out after it (a copy left in the site by a killed build is
    the most recent one, kept until then)."""
    inside, kept = new / WORKBOOK_DIGESTS_IN_SITE, work / publish.WORKBOOK_DIGESTS
    if kept.is_file():
        inside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(kept, inside)
    try:
        return write(year, cfg.warehouse, new)
    finally:
        if inside.is_file():
            os.replace(inside, kept)


def _disk_full(exc: BaseException | str) -> bool:
    import errno

    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc)


def _log_settings() -> None:
    """The run settings in use, each with where it came from (default, file, env), in the log."""

    s = config.settings()
    log.info("settings file / 設定ファイル: %s", s.file if s.file is not None else "none / なし")
    for line in config.describe(s):
        log.info("setting %s", line)


def run_build(cfg: BuildConfig) -> BuildSummary:
    start = time.perf_counter()
    logs.setup_logging(None, quiet=cfg.quiet)
    # Guards first: --out a folder the build may own; then, holding its lock (so that a second build
    # of the same site is told so), the warehouse must be ours (or new).
    out = publish.check_out(cfg.out_dir, warehouse=cfg.warehouse, input_dir=cfg.input_dir, force_out=cfg.force_out)
    fingerprint.current(refresh=True)  # code, templates, settings, libraries: once per build
    logs.add_root(out.parent)  # the published log names the staging folder, not its path
    summary = BuildSummary(out_dir=Path(cfg.out_dir))
    renderer = resolve_renderer(cfg.renderer)
    with publish.build_lock(out):
        warehouse_db.check(cfg.warehouse)
        try:
            _build_locked(cfg, out, renderer, summary, start)
        except Exception as exc:
            if not _disk_full(exc):
                raise
            publish.discard_staging(out)  # a half-built copy would only keep the disk full
            raise publish.disk_full(out.parent) from None
        if summary.failed and any(_disk_full(f) for f in summary.failed):
            publish.discard_staging(out)
            summary.failed.append(str(publish.disk_full(out.parent)))
    if not cfg.quiet or summary.failed:
        import sys

        print(summary.text(), file=sys.stderr if summary.failed else sys.stdout)
    return summary


def _build_locked(cfg: BuildConfig, out: Path, renderer: str, summary: BuildSummary, start: float) -> None:
    if cfg.force_out:
        publish.take_over(out)
    publish.recover(out)
    new = publish.prepare_staging(out)  # (and the working folder beside it)
    work = publish.work_dir(out)
    logs.setup_logging(work / publish.LOG_FILE, quiet=cfg.quiet)
    log.info("build config: %s (renderer resolved: %s)", logs.display_config(cfg), renderer)
    _log_settings()
    state = BuildState(work, new)
    checked_now: dict[str, str] = {}  # files already checked for disclosure in this build
    pool = _start_pool(cfg, renderer)
    log.info(
        "set up in %.2f s (workers %s)",
        time.perf_counter() - start,
        "starting" if pool is not None else "not needed yet",
    )
    fresh = None
    try:
        with Progress(cfg.quiet) as progress:
            year, fresh = _run_stages(cfg, new, state, renderer, progress, summary, pool, checked_now)
            if pool is not None:
                pool.close(wait=False)  # the kernels shut down while the site is written
            if not summary.failed and _runs(cfg, "site"):
                with progress.stage("site, after the reports / サイト（レポート後）"):
                    _stage_site(cfg, new, state, year, summary, again=True)
        if not summary.failed:  # only the file types the build writes; no data file under any name
            summary.failed += [f"publish: {f}" for f in publish.scan_site(new)]
        if not summary.failed:  # disclosure control: a site with a finding is not published
            start_d = time.perf_counter()
            _stage_disclosure(cfg, new, work, year, summary, checked_now)
            log.info("disclosure check / 秘匿の確認 done in %.2f s", time.perf_counter() - start_d)
        if summary.failed:
            log.error("%d area(s) failed; the new site stays in %s and is not published", len(summary.failed), new.name)
        else:
            with interrupt.deferred():  # a stop signal now takes effect after the two renames
                publish.swap_in(out)
                summary.published = True
        summary.seconds = time.perf_counter() - start
        (work / publish.SUMMARY_FILE).write_text(summary.text() + "\n", encoding="utf-8")
    finally:
        validator.stop()
        if pool is not None:
            pool.close()
    if fresh is not None:  # the workers are gone: the warehouse can be opened for writing
        _store_fresh_results(cfg, fresh)
    if pool is not None:  # reports ran: keep the chart cache under its size
        from pipelines.outputs.chart_cache import prune

        prune()
