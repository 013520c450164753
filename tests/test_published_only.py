"""Only the site is published (issue #23, item 7).

Real builds on a small sample: after a build every file under --out is one the allow-list names
(pages, reports, downloads, their assets, the JSON the pages link to, the marker) and none is a
notebook, a log or a state file; the build's working files (executed notebooks, the indicators
notebook, the log, the summary, the state and records) are in the private sibling
``.<out>.tsunagari-work``, which the next build reuses. A notebook or a log that gets into the site
being assembled stops the build, naming it, with nothing published. ``tsunagari reports --out`` and
``tsunagari indicators --out`` put their notebooks beside --out too.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import build as build_mod
from pipelines.build import run_build
from pipelines.domain.config import BuildConfig
from pipelines.engine import publish
from tests.shared_builds import copy_build, shared_build

ROOT = Path(__file__).resolve().parents[1]

# What a visitor needs, by suffix (the font's licence and readme are .txt under assets/fonts; the
# JSON the pages link to is named in publish.PAGE_JSON).
PUBLISHED_SUFFIXES = {".html", ".pdf", ".csv", ".xlsx", ".css", ".js", ".svg", ".png", ".woff2", ".ttf"}
WORKING = {".ipynb", ".log", ".tmp"}


def _files(d: Path) -> dict[str, str]:
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def assert_only_what_a_visitor_needs(site: Path) -> None:
    """Every file under `site` is one the allow-list names; none is a notebook, log or state."""
    assert publish.scan_site(site) == []
    for rel in _files(site):
        p = Path(rel)
        assert p.suffix not in WORKING, rel
        if rel == publish.MARKER:
            continue
        assert not any(part.startswith(".") for part in p.parts), rel  # no dot file but the marker
        assert (
            p.suffix in PUBLISHED_SUFFIXES
            or (p.suffix == ".txt" and p.parent.as_posix() == publish.FONT_DIR)
            or rel in publish.PAGE_JSON
        ), rel


@pytest.fixture(scope="module")
def tottori(tmp_path_factory) -> Path:
    """The session's shared build of the sample, Tottori only (``shared_build``: ``_cfg`` of its
    folder). Read only: each test builds on its own copy."""
    return shared_build(tmp_path_factory, "tottori", prefs=[31])


def _cfg(tmp: Path, input_dir: Path, **kw) -> BuildConfig:
    base = dict(
        input_dir=input_dir,
        out_dir=tmp / "site",
        warehouse=tmp / "wh.duckdb",
        jobs=1,
        prefs=[31],
        quiet=True,
        renderer="pandoc",
    )
    base.update(kw)
    return BuildConfig(**base)


@pytest.mark.slow
class TestOnlyTheSiteIsPublished:
    def test_a_build_publishes_only_the_allow_list_and_keeps_its_working_files_beside(
        self, tmp_path: Path, tottori: Path, monkeypatch
    ) -> None:
        # The first build: the shared build of this configuration (which asserted it ok and
        # published), copied with its working folder.
        tmp_path = copy_build(tottori, tmp_path / "b")
        monkeypatch.chdir(tmp_path)
        cfg = _cfg(tmp_path, tmp_path / "in")
        site, work = cfg.out_dir, tmp_path / ".site.tsunagari-work"
        assert_only_what_a_visitor_needs(site)
        assert {
            "index.html",
            "prefectures/31-tottori.html",
            "prefectures/31-tottori.pdf",
            "quality/results.json",
            "downloads/indicators-2024.csv",
            "downloads/data-dictionary.csv",
            "downloads/index.html",
            publish.MARKER,
        } <= set(_files(site))
        # The working files: beside the site, in a folder the build marks as its own.
        assert set(_files(work)) >= {
            publish.MARKER,
            "build.log",
            "build-summary.txt",
            "state.json",
            "checked.json",
            "xlsx-inputs.json",
            "executed/31-tottori.ipynb",
            "runs/indicators-2024.ipynb",
        }
        assert "published / 公開" in (work / "build-summary.txt").read_text(encoding="utf-8")
        assert publish.state_site(work) == publish.site_id(site)  # the state describes the published site
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".site")) == [
            ".site.tsunagari-lock",
            ".site.tsunagari-work",
        ]

        # The next build reuses the folder and its state: nothing executed, nothing rendered.
        ino = work.stat().st_ino
        published = _files(site)
        second = run_build(cfg)
        assert second.ok and second.published
        assert second.executed == [] and second.rendered == []
        assert not [b for b in second.built if not b.startswith("ingest")], second.built
        assert work.stat().st_ino == ino and publish.state_site(work) == publish.site_id(site)
        assert _files(site) == published
        assert_only_what_a_visitor_needs(site)

        # A notebook and a log in the site being assembled (one carried over from the published
        # site, one written by a stage): the publish step refuses, naming them; nothing published.
        (site / "prefectures" / "31-tottori.ipynb").write_text("{}", encoding="utf-8")
        published = _files(site)
        real_stage_site = build_mod._stage_site

        def stage_site(cfg, new, *args, **kw):
            real_stage_site(cfg, new, *args, **kw)
            (new / "debug.log").write_text("a log a stage left behind\n", encoding="utf-8")

        monkeypatch.setattr(build_mod, "_stage_site", stage_site)
        blocked = run_build(cfg)
        assert not blocked.ok and not blocked.published
        work_note = "(the build keeps its working files in .site.tsunagari-work) / 公開対象外のファイルです"
        assert blocked.failed == [
            f"publish: debug.log: a log file; only what a visitor needs is published {work_note}",
            f"publish: prefectures/31-tottori.ipynb: an executed notebook; only what a visitor needs is "
            f"published {work_note}",
        ]
        assert _files(site) == published
        assert "NOT published" in (work / "build-summary.txt").read_text(encoding="utf-8")

        # Removed from the staging folder, the next build continues from it and publishes.
        monkeypatch.setattr(build_mod, "_stage_site", real_stage_site)
        staged = publish.staging_dir(site)
        for rel in ("debug.log", "prefectures/31-tottori.ipynb"):
            (staged / rel).unlink()
        again = run_build(cfg)
        assert again.ok and again.published and again.executed == []
        assert_only_what_a_visitor_needs(site)

    def test_reports_and_indicators_commands_keep_their_notebooks_beside_out(
        self, tmp_path: Path, tottori: Path
    ) -> None:
        tmp_path = copy_build(tottori, tmp_path / "b")  # a built and published site (the shared build)
        cfg = _cfg(tmp_path, tmp_path / "in")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def cli(*args: str) -> subprocess.CompletedProcess:
            proc = subprocess.run(
                [sys.executable, "-m", "pipelines.cli", *args, "--warehouse", str(cfg.warehouse), "--quiet"],
                capture_output=True,
                text=True,
                cwd=tmp_path,
                env=env,
                timeout=600,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            return proc

        cli("reports", "--year", "2024", "--pref", "31", "--out", "reports-out", "--renderer", "pandoc")
        out = tmp_path / "reports-out"
        files = set(_files(out)) - {publish.MARKER}  # (a site of the build's: published by its swap)
        data = {f for f in files if f.startswith("prefectures/31-tottori-data/") and f.endswith(".csv")}
        assert files - data == {"prefectures/31-tottori.html", "prefectures/31-tottori.pdf"}
        assert len(data) == 12  # each chart's data file (issue #23), beside the report
        assert (tmp_path / ".reports-out.tsunagari-work" / "executed" / "31-tottori.ipynb").is_file()

        proc = cli("indicators", "--year", "2024", "--out", "ind-out")
        out = tmp_path / "ind-out"
        record = tmp_path / ".ind-out.tsunagari-work" / "runs" / "indicators-2024.ipynb"
        assert record.is_file() and str(record) in proc.stdout
        assert not (out / "runs").exists() and "downloads/indicators-2024.csv" in _files(out)
        assert_only_what_a_visitor_needs(out)

        # Into the published site: its notebooks go to the build's working folder, and the site
        # stays publishable.
        cli("reports", "--year", "2024", "--pref", "31", "--out", "site", "--renderer", "pandoc")
        assert_only_what_a_visitor_needs(cfg.out_dir)
        assert (tmp_path / ".site.tsunagari-work" / "executed" / "31-tottori.ipynb").is_file()
        # An unmarked folder under the working folder's name is refused and left alone.
        stray = tmp_path / ".other.tsunagari-work"
        stray.mkdir()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "indicators",
                "--year",
                "2024",
                "--out",
                "other",
                "--warehouse",
                str(cfg.warehouse),
                "--quiet",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=600,
        )
        assert proc.returncode == 2 and "was not created by Tsunagari" in proc.stderr, proc.stderr[-2000:]
        assert list(stray.iterdir()) == []
