"""The `tsunagari` command line: a thin layer that parses options and calls the named stages.

Exit codes: 0 success; 1 data rejected (the message names file, column, rule, rows); 2 usage error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipelines.domain import config
from pipelines.domain.errors import TsunagariError, UsageError, check_pref_code, check_year
from pipelines.io.logs import setup_logging

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Tsunagari (つながり): annual evaluation of Japan's loneliness and isolation policy.",
)
log = logging.getLogger("tsunagari")

WarehouseOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--warehouse",
        help="DuckDB warehouse file (default paths.warehouse: data/warehouse.duckdb or $TSUNAGARI_WAREHOUSE)",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display")]
ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", help="Run-configuration file (TOML; default ./tsunagari.toml or $TSUNAGARI_CONFIG)"),
]


@app.callback()
def options(config_file: ConfigOpt = None) -> None:
    """Tsunagari (つながり): annual evaluation of Japan's loneliness and isolation policy."""
    _use_config(config_file)


def _use_config(path: Path | None) -> None:
    """Resolve the run settings (pipelines/domain/config.py) now, from `path` when given: a bad file or
    variable is a usage error before any work. The processes the command starts (validation,
    report workers, kernels, Quarto) get the resolved values through their environment."""
    import os

    from pipelines.domain import config

    os.environ.pop(config.SETTINGS_ENV, None)  # a command resolves its own, never a parent's
    if path is not None:
        if not path.is_file():
            raise config.SettingsError(
                str(path), "--config", "run-configuration file not found / 設定ファイルがありません"
            )
        os.environ[config.CONFIG_ENV] = str(path.resolve())
    os.environ.update(config.exported_environ(config.reload()))


def _check_out(out: Path, warehouse: Path | None) -> None:
    """--out of the commands that write into it directly: never the warehouse, the working folder,
    data/ or the project (pipelines.engine.publish.check_out_location)."""
    from pipelines.engine.publish import check_out_location

    check_out_location(out, warehouse=config.warehouse_path(warehouse))


def _prefs(values: list[str] | None) -> list[int]:
    """--pref values: JIS codes 1..47, or 0/00 for the national report."""
    return [0 if str(v).strip() in ("0", "00") else check_pref_code(v) for v in (values or [])]


@app.command()
def build(
    year: Annotated[Optional[str], typer.Option(help="Survey round (default: latest in the data)")] = None,
    input: Annotated[
        Optional[Path], typer.Option("--input", help="Folder of raw files (default: bundled sample data)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output site folder")] = config.DEFAULT_OUT,
    renderer: Annotated[str, typer.Option(help="auto | quarto | pandoc")] = "auto",
    jobs: Annotated[Optional[int], typer.Option(help="Parallel report workers (default: cores)")] = None,
    pref: Annotated[Optional[list[str]], typer.Option("--pref", help="Only these prefecture codes")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild everything")] = False,
    force_out: Annotated[
        bool, typer.Option("--force-out", help="Take over a non-empty --out folder that Tsunagari did not create")
    ] = False,
    warehouse: WarehouseOpt = None,
    quiet: QuietOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Run every stage: ingest -> validate -> indicators -> reports -> site."""
    from pipelines.engine import interrupt
    from pipelines.validate import gx_process as validator

    if config_file is not None:
        _use_config(config_file)

    # Great Expectations imports on the other core while the build starts. The process ignores
    # Ctrl-C (the build stops it) and is stopped when a stop signal arrives.
    with interrupt.children_ignore_interrupts():
        validator.start()
    interrupt.on_stop(validator.stop, order=10)  # after the report workers (executor.WarmPool)
    interrupt.on_stop(interrupt.kill_children, order=20)  # anything else the build started
    from pipelines.build import run_build

    if renderer not in ("auto", "quarto", "pandoc"):
        raise UsageError("--renderer", f"'{renderer}' is not one of auto, quarto, pandoc")
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs", f"'{jobs}' must be 1 or more")
    cfg = config.BuildConfig(
        year=check_year(year) if year is not None else None,
        input_dir=input or config.SAMPLE_DIR,
        out_dir=out,
        warehouse=config.warehouse_path(warehouse),
        renderer=renderer,
        jobs=jobs or (__import__("os").cpu_count() or 1),
        prefs=_prefs(pref),
        force=force,
        force_out=force_out,
        quiet=quiet,
    )
    summary = run_build(cfg)
    raise typer.Exit(0 if summary.ok else 1)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Raw files or folders (CSV, XLSX, Parquet)")],
    encoding: Annotated[Optional[str], typer.Option(help="CSV encoding (default: detect UTF-8/CP932)")] = None,
    mapping: Annotated[Optional[Path], typer.Option(help="Extra header/label mapping YAML")] = None,
    warehouse: WarehouseOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Load raw files into staging, validate, and commit to the warehouse in one transaction."""
    from pipelines.ingest.stage import ingest_files

    setup_logging(quiet=quiet)
    result = ingest_files(paths, config.warehouse_path(warehouse), encoding=encoding, mapping=mapping)
    typer.echo(result.summary())


@app.command()
def validate(
    warehouse: WarehouseOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write quality/ here")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the expectation suites on what is committed and print a summary."""
    from pipelines.outputs.quality import write_quality_page
    from pipelines.validate.stage import validate_warehouse

    setup_logging(quiet=quiet)
    if out is not None:
        _check_out(out, warehouse)
        from pipelines.build import quality_design

        report = write_quality_page(
            config.warehouse_path(warehouse), out / "quality", design=quality_design(config.warehouse_path(warehouse))
        )
    else:
        report = validate_warehouse(config.warehouse_path(warehouse))
    typer.echo(report.summary())
    raise typer.Exit(1 if report.has_critical else 0)


def _run_view(
    stages: tuple[str, ...],
    year: str,
    out: Path,
    warehouse: Path | None,
    renderer: str = "auto",
    jobs: int | None = None,
    prefs: list[str] | None = None,
    force_out: bool = False,
    quiet: bool = False,
) -> None:
    """A stage command as a view of the build (pipelines/build.py, ``BuildConfig.stages``): only
    `stages` run, into the staging folder beside --out, and the result is swapped in only after
    the publish scan and the disclosure check passed, under the build's lock. A published site
    is never rewritten in place."""
    from pipelines.build import run_build
    from pipelines.engine import interrupt

    if renderer not in ("auto", "quarto", "pandoc"):
        raise UsageError("--renderer", f"'{renderer}' is not one of auto, quarto, pandoc")
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs", f"'{jobs}' must be 1 or more")
    interrupt.on_stop(interrupt.kill_children, order=20)
    cfg = config.BuildConfig(
        year=check_year(year),
        out_dir=out,
        warehouse=config.warehouse_path(warehouse),
        renderer=renderer,
        jobs=jobs or (__import__("os").cpu_count() or 1),
        prefs=_prefs(prefs),
        force_out=force_out,
        quiet=quiet,
        stages=stages,
    )
    if not cfg.warehouse.exists():
        raise UsageError("--warehouse", f"'{cfg.warehouse}' does not exist / ウェアハウスがありません")
    summary = run_build(cfg)
    if summary.ok and "indicators" in stages:
        from pipelines.engine.publish import RUNS_DIR, resolve_out, work_dir

        record = work_dir(resolve_out(out)) / RUNS_DIR / f"indicators-{cfg.year}.ipynb"
        typer.echo(f"audit record / 監査記録: {record}")
    raise typer.Exit(0 if summary.ok else 1)


ForceOutOpt = Annotated[
    bool, typer.Option("--force-out", help="Take over a non-empty --out folder that Tsunagari did not create")
]


@app.command()
def indicators(
    year: Annotated[str, typer.Option(help="Survey round, e.g. 2024")],
    warehouse: WarehouseOpt = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Site folder the downloads are published into (staged, checked and swapped in like the build; the executed notebook goes to runs/ in the working folder beside it)",
        ),
    ] = config.DEFAULT_OUT,
    force_out: ForceOutOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the indicators notebook with papermill and publish the downloads written from its
    tables: the build restricted to the indicators stage (staging, disclosure check, swap, lock).
    The executed notebook (the audit record) goes to runs/ in the working folder beside --out
    (.<out>.tsunagari-work), never into the folder a site is published from."""
    _run_view(("indicators",), year, out, warehouse, force_out=force_out, quiet=quiet)


@app.command()
def reports(
    year: Annotated[str, typer.Option(help="Survey round, e.g. 2024")],
    pref: Annotated[
        Optional[list[str]], typer.Option("--pref", help="Prefecture codes (default: all 47 and national)")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Site folder the reports are published into (staged, checked and swapped in like the build)"
        ),
    ] = config.DEFAULT_OUT,
    renderer: Annotated[str, typer.Option(help="auto | quarto | pandoc")] = "auto",
    jobs: Annotated[Optional[int], typer.Option(help="Parallel workers")] = None,
    warehouse: WarehouseOpt = None,
    force_out: ForceOutOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Execute and render the area reports (HTML + PDF): the build restricted to the reports stage
    and the given areas (staging, disclosure check, swap, lock)."""
    _run_view(
        ("reports",), year, out, warehouse, renderer=renderer, jobs=jobs, prefs=pref, force_out=force_out, quiet=quiet
    )


@app.command("rebuild-warehouse")
def rebuild_warehouse(
    warehouse: WarehouseOpt = None,
    mapping: Annotated[
        Optional[Path], typer.Option(help="The extra mapping YAML used when the files were loaded")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Rebuild the warehouse from the raw files recorded in its provenance (sha256-checked)."""
    from pipelines.ingest.provenance import rebuild_warehouse as rebuild

    setup_logging(quiet=quiet)
    typer.echo(rebuild(config.warehouse_path(warehouse), mapping=mapping).summary())


@app.command("sample-data")
def sample_data(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the synthetic files to")],
    seed: Annotated[int, typer.Option(help="Random seed")] = 20240611,
    rows: Annotated[Optional[int], typer.Option(help="Respondents per national round (default ~11,000)")] = None,
) -> None:
    """Write synthetic (合成) input files: national rounds, prefecture surveys, programme data."""
    from pipelines.ingest.sample import write_sample

    paths = write_sample(out, seed=seed, rows=rows)
    for p in paths:
        typer.echo(str(p))


def _run() -> int:
    """Run the command; our errors become exit codes 1 (data) and 2 (usage); a stop signal (Ctrl-C,
    SIGTERM, SIGHUP: pipelines/engine/interrupt.py) exit code 130 with one line on stderr."""
    from pipelines.engine import interrupt

    try:
        # With standalone_mode=False click returns the code of `raise typer.Exit(n)` instead of exiting.
        rc = app(standalone_mode=False)
        rc = rc if isinstance(rc, int) else 0
    except (TsunagariError, config.SettingsError) as exc:
        if interrupt.signalled():
            return _interrupted()
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        rc = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted()
    except OSError as exc:
        # A full disk or a refused permission outside the stages that name it: a message, exit 1.
        import errno

        if interrupt.signalled():
            return _interrupted()
        if exc.errno not in (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        what = {errno.ENOSPC: "disk full / 空き容量不足"}.get(exc.errno, f"{exc.strerror} / アクセスできません")
        from pipelines.io.logs import display_path

        typer.echo(f"error: {what}: {display_path(exc.filename) if exc.filename else ''}", err=True)
        return 1
    except Exception as exc:  # click usage errors arrive as click exceptions
        if interrupt.signalled():  # e.g. a worker pool killed under the command's feet
            return _interrupted()
        import click

        if "No space left on device" in str(exc):  # e.g. DuckDB writing the warehouse: nothing committed
            typer.echo(
                "error: disk full / 空き容量不足: "
                + str(exc).splitlines()[0].split(": ", 1)[-1]
                + "; nothing was committed or published / 変更はありません",
                err=True,
            )
            return 1

        # typer >= 0.29 raises the exceptions of its own copy of click (typer._click).
        names = {c.__name__ for c in type(exc).__mro__}
        if isinstance(exc, click.exceptions.UsageError) or "UsageError" in names:
            exc.show()
            return 2
        if isinstance(exc, click.exceptions.ClickException) or "ClickException" in names:
            exc.show()
            return getattr(exc, "exit_code", 1)
        raise
    if rc == interrupt.EXIT_CODE or (interrupt.signalled() and rc != 0):
        return _interrupted()  # typer turns a KeyboardInterrupt into Exit(130)
    return rc


def _interrupted() -> int:
    from pipelines.engine import interrupt

    interrupt.announce()
    return interrupt.EXIT_CODE


def _leave(code: int) -> None:
    """Exit without tearing the interpreter down module by module (slow once Great Expectations is
    loaded): the project's exit actions run (temporary folders removed; the build has already
    stopped its workers), log files and the streams are flushed, then the process ends with `code`.
    Other libraries' atexit handlers do not run."""
    import logging

    from pipelines.engine import interrupt
    from pipelines.engine.kernels import exit_now

    try:
        interrupt.run_exit_actions()
        logging.shutdown()
    finally:
        exit_now(code)


def main() -> None:
    """Entry point (`tsunagari`). An unexpected error propagates with its traceback as usual."""
    from pipelines.engine import interrupt

    interrupt.install()
    code = _run()
    interrupt.finishing()  # a signal from here on does not raise: the process is ending
    _leave(code)


if __name__ == "__main__":
    main()
