"""Builds shared by the tests of a session (and by its xdist workers): a real build is the most
expensive fixture there is, and most tests only read one."""

from __future__ import annotations

import shutil
from pathlib import Path

SHARED_PREFS = [0, 13, 27, 31, 36]  # national, Tokyo, Osaka (own survey), Tottori (smallest), Tokushima


def folder_config(root: Path, prefs, input_dir: Path | None = None, **kw):
    """The BuildConfig of a build folder laid out as ``shared_build``'s (``in``, ``site``,
    ``wh.duckdb``), two jobs, quiet, the built-in renderer; `input_dir` instead of ``root / "in"``,
    and any other field in `kw`."""
    from pipelines.domain.config import BuildConfig

    fields = dict(
        input_dir=root / "in" if input_dir is None else input_dir,
        out_dir=root / "site",
        warehouse=root / "wh.duckdb",
        jobs=2,
        prefs=list(prefs),
        quiet=True,
        renderer="pandoc",
    )
    return BuildConfig(**{**fields, **kw})


def shared_build(tmp_path_factory, name: str = "site", prefs=SHARED_PREFS, rows: int = 4000) -> Path:
    """A real build on the sample data (``write_sample(rows=rows)``) of `prefs`, made once per test
    session and shared by the xdist workers (``shared_folder``): the first test to ask builds it,
    the others wait for it and reuse it. Returns its folder: ``in`` (the input files),
    ``wh.duckdb``, ``site`` and the build's working folder beside it (``.site.tsunagari-work``).
    Read it only; a test that changes anything works on a copy (``copy_build``). Asking for `name`
    with other arguments (or another SOURCE_DATE_EPOCH, which the build's fingerprint holds) than
    the ones it was made with is an error, not a silent reuse."""
    import os

    made_with = repr((sorted(prefs), rows, os.environ.get("SOURCE_DATE_EPOCH")))

    def make(root: Path) -> None:
        from pipelines.build import run_build
        from pipelines.ingest.sample import write_sample

        write_sample(root / "in", rows=rows)
        summary = run_build(folder_config(root, prefs))
        assert summary.ok and summary.published, summary.text()
        (root / "BUILT").write_text(made_with, encoding="utf-8")

    root = shared_folder(tmp_path_factory, f"build-{name}", make)
    assert (root / "BUILT").read_text(encoding="utf-8") == made_with, (
        f"shared build {name!r} was made with (prefs, rows, SOURCE_DATE_EPOCH) "
        f"{(root / 'BUILT').read_text(encoding='utf-8')}, asked for with {made_with}"
    )
    return root


def copy_build(root: Path, dest: Path) -> Path:
    """A test's own copy of a shared build (its paths inside are relative: the copy builds on as the
    original would)."""
    shutil.copytree(root, dest, symlinks=True)
    (dest / "BUILT").unlink()
    return dest


def shared_folder(tmp_path_factory, name: str, make) -> Path:
    """A folder made once per test session by ``make(folder)`` and shared by the xdist workers, as
    ``shared_build`` does it: the first test to ask makes it while holding a file lock, the others
    wait for it and reuse it. Read it only; a test that changes anything works on a copy."""
    import fcntl
    import os

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, common to the workers
    root = base / f"shared-folder-{name}"
    with open(base / f"shared-folder-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / f"shared-folder-{name}.made").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            make(root)
            (base / f"shared-folder-{name}.made").write_text("", encoding="utf-8")
    return root


def shared_sample_ingest(tmp_path_factory) -> Path:
    """The bundled sample (data/sample) copied to ``input`` and ingested, validation included, into
    ``wh.duckdb``, once per session (``shared_folder``). Read it only, or copy the folder
    (``shutil.copytree(..., symlinks=True)``)."""

    def make(root: Path) -> None:
        from pipelines.domain import config
        from pipelines.ingest.stage import ingest_files

        shutil.copytree(config.SAMPLE_DIR, root / "input")
        ingest_files([root / "input"], root / "wh.duckdb")

    return shared_folder(tmp_path_factory, "sample-ingest", make)
