"""The output folder: the build owns only --out (once marked as its own) and its private siblings.

Fast tests call the guards and the publish scan on real folders and files; the end-to-end tests run
real builds on a small sample and hash the user's files before and after.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.build import run_build
from pipelines.domain import config
from pipelines.domain.config import BuildConfig
from pipelines.domain.errors import UsageError
from pipelines.engine import fingerprint, publish
from pipelines.engine.publish import PublishError
from pipelines.io.logs import SafeFormatter, display_path, escape_control
from tests.shared_builds import shared_build

ROOT = Path(__file__).resolve().parents[1]


def tree(d: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `d` (symlinks as their target text)."""
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A working folder with data/warehouse.duckdb and an input folder; the test runs inside it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "warehouse.duckdb").write_bytes(b"")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "programme.csv").write_text("a\n", encoding="utf-8")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def check(out, project: Path, **kw) -> Path:
    return publish.check_out(Path(out), warehouse=project / "data" / "warehouse.duckdb", input_dir=project / "in", **kw)


class TestCheckOut:
    def test_the_working_folder_is_refused(self, project: Path) -> None:
        with pytest.raises(UsageError) as err:
            check(".", project)
        assert str(err.value) == (
            f"--out: '.' is the working folder ({project / 'work'}); the build replaces --out "
            "as a whole, so choose a folder of its own, e.g. _site / 出力先が作業フォルダを含んでいます"
        )

    def test_a_parent_of_the_working_folder_is_refused(self, project: Path) -> None:
        with pytest.raises(UsageError, match=r"^--out: '\.\.' contains the working folder"):
            check("..", project)
        with pytest.raises(UsageError, match=r"^--out: '/' contains the working folder"):
            check("/", project)

    def test_the_folder_of_the_warehouse_is_refused(self, project: Path) -> None:
        with pytest.raises(UsageError) as err:
            check(project / "data", project)
        assert str(err.value).startswith(
            f"--out: '{project / 'data'}' contains the warehouse ({project / 'data' / 'warehouse.duckdb'})"
        )

    def test_data_under_the_working_folder_is_refused(self, project: Path) -> None:
        (project / "work" / "data").mkdir()
        with pytest.raises(UsageError, match=r"^--out: 'data' is data/ "):
            check("data", project)

    def test_the_input_folder_and_a_folder_inside_it_are_refused(self, project: Path) -> None:
        with pytest.raises(UsageError, match=r"is the input folder"):
            check(project / "in", project)
        with pytest.raises(UsageError, match=r"is inside the input folder .*; the site would be read as input"):
            check(project / "in" / "site", project)

    def test_the_project_is_refused(self, project: Path, monkeypatch) -> None:
        monkeypatch.setattr(config, "REPO_ROOT", project / "repo")
        (project / "repo" / "pipelines").mkdir(parents=True)
        with pytest.raises(UsageError, match=r"^--out: '.*repo' is the Tsunagari project"):
            check(project / "repo", project)

    def test_a_file_is_refused(self, project: Path) -> None:
        (project / "f").write_text("x", encoding="utf-8")
        with pytest.raises(UsageError, match=r"is a file, not a folder"):
            check(project / "f", project)

    def test_a_non_empty_folder_the_build_did_not_create_needs_force_out(self, project: Path) -> None:
        mine = project / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("mine", encoding="utf-8")
        with pytest.raises(UsageError) as err:
            check(mine, project)
        assert str(err.value) == (
            f"--out: '{mine}' is a folder that Tsunagari did not create and is not empty "
            "(no .tsunagari-site file); the build would replace it. Choose a new folder, or "
            "pass --force-out to take it over / Tsunagari が作成していない空でないフォルダです"
        )
        assert check(mine, project, force_out=True) == mine.resolve()
        assert tree(mine) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}  # checking changes nothing

    def test_an_empty_folder_and_a_site_of_ours_are_accepted(self, project: Path) -> None:
        (project / "empty").mkdir()
        assert check(project / "empty", project) == (project / "empty").resolve()
        site = project / "site"
        site.mkdir()
        (site / "index.html").write_text("<p>", encoding="utf-8")
        (site / publish.MARKER).write_text(publish.MARKER_TEXT, encoding="utf-8")
        assert check(site, project) == site.resolve()
        legacy = project / "legacy"  # a site of an earlier version: its state file marks it
        legacy.mkdir()
        (legacy / "index.html").write_text("<p>", encoding="utf-8")
        (legacy / publish.LEGACY_STATE_FILE).write_text("{}", encoding="utf-8")
        assert check(legacy, project) == legacy.resolve()

    def test_a_symlinked_out_is_followed_to_its_target(self, project: Path) -> None:
        (project / "www" / "html").mkdir(parents=True)
        (project / "current").symlink_to(project / "www" / "html")
        assert check(project / "current", project) == (project / "www" / "html").resolve()

    def test_private_siblings_without_the_marker_are_not_touched(self, project: Path) -> None:
        for suffix in (publish.SUFFIX_NEW, publish.SUFFIX_OLD, publish.SUFFIX_WORK):
            stray = project / f".site{suffix}"
            stray.mkdir()
            (stray / "x.txt").write_text("someone's", encoding="utf-8")
            with pytest.raises(UsageError) as err:
                check(project / "site", project)
            assert str(err.value).startswith(f"--out: '{stray.resolve()}' exists but was not created by Tsunagari")
            assert tree(stray) == {"x.txt": hashlib.sha256(b"someone's").hexdigest()}
            shutil.rmtree(stray)
        lock = project / ".other.tsunagari-lock"
        lock.write_text("a long text that is not a process id of a build", encoding="utf-8")
        with pytest.raises(UsageError, match="is not a lock file of Tsunagari"):
            check(project / "other", project)


class TestStagingAndSwap:
    def _site(self, root: Path) -> Path:
        site = root / "site"
        (site / "prefectures").mkdir(parents=True)
        (site / "index.html").write_text("<p>old</p>", encoding="utf-8")
        (site / "prefectures" / "13-tokyo.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(4096))
        (site / publish.MARKER).write_text(publish.MARKER_TEXT, encoding="utf-8")
        return site

    def test_a_build_leaves_the_users_old_new_and_lock_byte_identical(self, tmp_path: Path) -> None:
        site = self._site(tmp_path)
        for name in ("site.old", "site.new"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "keep.txt").write_text(name, encoding="utf-8")
        (tmp_path / "site.lock").write_text("my lock notes", encoding="utf-8")
        before = tree(tmp_path)
        with publish.build_lock(site):
            publish.recover(site)
            new = publish.prepare_staging(site)
            (new / "index.html").write_text("<p>new</p>", encoding="utf-8")
            publish.swap_in(site)
        after = tree(tmp_path)
        assert (site / "index.html").read_text(encoding="utf-8") == "<p>new</p>"
        for rel in ("site.old/keep.txt", "site.new/keep.txt", "site.lock"):
            assert after[rel] == before[rel]
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            ".site.tsunagari-lock",
            ".site.tsunagari-work",
            "site",
            "site.lock",
            "site.new",
            "site.old",
        ]

    def test_no_free_space_for_the_copy_is_refused_before_copying(self, tmp_path: Path, monkeypatch) -> None:
        site = self._site(tmp_path)
        before = tree(site)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
        with pytest.raises(PublishError) as err:
            publish.prepare_staging(site)
        assert "disk full / 空き容量不足" in str(err.value) and "MB needed" in str(err.value)
        assert not publish.staging_dir(site).exists()
        assert tree(site) == before

    def test_a_disk_that_fills_up_during_the_copy(self, tmp_path: Path, monkeypatch) -> None:
        """A real ENOSPC: the site on a small tmpfs (root only), the free-space check told there is
        room; the partial copy is removed and the error is a message."""
        mnt = tmp_path / "small"
        mnt.mkdir()
        if (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True
            ).returncode
            != 0
        ):
            pytest.skip("cannot mount a small tmpfs here")
        try:
            site = mnt / "site"
            site.mkdir()
            (site / publish.MARKER).write_text(publish.MARKER_TEXT, encoding="utf-8")
            (site / "national.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(300 * 1024))
            before = tree(site)
            monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 0, 10**12))
            with pytest.raises(PublishError) as err:
                publish.prepare_staging(site)
            assert "disk full / 空き容量不足" in str(err.value)
            assert not publish.staging_dir(site).exists()
            assert tree(site) == before
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)

    def test_a_refused_rename_at_the_swap_keeps_the_published_site(self, tmp_path: Path, monkeypatch) -> None:
        site = self._site(tmp_path)
        before = tree(site)
        new = publish.prepare_staging(site)
        (new / "index.html").write_text("<p>new</p>", encoding="utf-8")
        real_rename = Path.rename

        def rename(self, target):  # the second rename (staging -> site) is refused by the system
            if self == new:
                raise PermissionError(13, "Permission denied", str(self))
            return real_rename(self, target)

        monkeypatch.setattr(Path, "rename", rename)
        with pytest.raises(PublishError) as err:
            publish.swap_in(site)
        assert str(err.value) == (
            f"--out: cannot replace {site}: permission denied / アクセス権がありません; the previous site is unchanged"
        )
        assert tree(site) == before


NOT_NEEDED = (
    "; only what a visitor needs is published (the build keeps its working files in "
    ".site.tsunagari-work) / 公開対象外のファイルです"
)


class TestWorkingFolder:
    """The build's working files live in .<out>.tsunagari-work, tied to the site they describe."""

    def _site(self, root: Path) -> Path:
        return TestStagingAndSwap._site(None, root)

    def test_created_with_the_marker_reused_and_removed_only_with_it(self, tmp_path: Path) -> None:
        site = self._site(tmp_path)
        work = publish.ensure_work(site)
        assert work == tmp_path / ".site.tsunagari-work" and (work / publish.MARKER).is_file()
        (work / "build.log").write_text("kept\n", encoding="utf-8")
        assert publish.ensure_work(site) == work and (work / "build.log").read_text(encoding="utf-8") == "kept\n"
        publish.discard_staging(site)  # (after a full disk) ours: removed
        assert not work.exists() and (site / "index.html").is_file()
        # Someone else's folder under that name: refused, never written or removed.
        work.mkdir()
        (work / "mine.txt").write_text("mine", encoding="utf-8")
        before = tree(work)
        with pytest.raises(
            UsageError, match=r"^--out: '.*\.site\.tsunagari-work' exists but was not created by Tsunagari"
        ):
            publish.ensure_work(site)
        with pytest.raises(UsageError):
            publish.prepare_staging(site)
        publish.discard_staging(site)
        assert tree(work) == before and not publish.staging_dir(site).exists()

    def test_an_earlier_versions_working_files_are_not_carried_into_the_new_site(self, tmp_path: Path) -> None:
        site = self._site(tmp_path)
        legacy = {
            ".work/executed/13-tokyo.ipynb": "{}",
            "runs/indicators-2024.ipynb": "{}",
            "build.log": "log",
            "build-summary.txt": "ok",
            publish.LEGACY_STATE_FILE: "{}",
            ".tsunagari-checked.json": "{}",
            "downloads/.xlsx-inputs.json": "{}",
        }
        for rel, text in legacy.items():
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            (site / rel).write_text(text, encoding="utf-8")
        (site / "downloads" / "indicators.csv").write_text("year\n2024\n", encoding="utf-8")
        new = publish.prepare_staging(site)
        assert sorted(tree(new)) == [
            publish.MARKER,
            "downloads/indicators.csv",
            "index.html",
            "prefectures/13-tokyo.pdf",
        ]
        assert not (new / "runs").exists() and not (new / ".work").exists()
        assert publish.scan_site(new) == []
        assert tree(site).keys() >= legacy.keys()  # the published site is not changed before the swap

    def test_the_state_describes_one_site_folder(self, tmp_path: Path) -> None:
        site = self._site(tmp_path)
        publish._mark(site)  # (a marker with an id, as a build writes)
        work = publish.work_dir(site)
        new = publish.prepare_staging(site)
        ident = publish.site_id(new)
        assert ident and ident == publish.site_id(site)  # the copy is the same site ...
        state = publish.BuildState(work, new)
        state.invalidate("report:x")  # ... until the build first changes it
        first = publish.site_id(new)
        assert first != ident and publish.state_site(work) == first
        state.record("report:x", "d1")
        publish.swap_in(site)
        assert publish.site_id(site) == first  # the id goes with the folder when published
        # A build that changes nothing: the copy keeps the id, the state describes it, the
        # published site stays byte-identical.
        published = tree(site)
        new = publish.prepare_staging(site)
        assert publish.BuildState(work, new).data == {"report:x": "d1"} and publish.site_id(new) == first
        publish.swap_in(site)
        assert tree(site) == published
        # A failed build's staging folder is continued from, with its state; the published site's
        # id no longer matches the state.
        new = publish.prepare_staging(site)
        state = publish.BuildState(work, new)
        state.record("report:y", "d2")
        second = publish.site_id(new)
        assert second not in (first, None) and publish.site_id(site) == first
        assert publish.prepare_staging(site) == new and publish.site_id(new) == second
        assert publish.BuildState(work, new).data == {"report:x": "d1", "report:y": "d2"}
        # Gone (removed by hand): the state describes neither it nor the site: all is built again.
        shutil.rmtree(new)
        (work / publish.CHECKED_FILE).write_text("{}", encoding="utf-8")
        new = publish.prepare_staging(site)
        assert publish.BuildState(work, new).data == {} and not (work / publish.CHECKED_FILE).exists()


class TestScanSite:
    def _clean_site(self, d: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import openpyxl
        from matplotlib.figure import Figure

        (d / "downloads").mkdir(parents=True)
        (d / "index.html").write_text("<html>つながり</html>", encoding="utf-8")
        (d / "national.pdf").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        (d / "downloads" / "indicators-2024.csv").write_text("year,value\n2024,1.0\n", encoding="utf-8-sig")
        wb = openpyxl.Workbook()
        wb.save(d / "downloads" / "13-tokyo-2024.xlsx")
        Figure().savefig(d / "chart.png")
        Figure().savefig(d / "chart.svg")
        (d / "quality").mkdir()
        (d / "quality" / "results.json").write_text("{}", encoding="utf-8")
        (d / "assets" / "fonts").mkdir(parents=True)
        shutil.copy(Path(config.PACKAGE_DIR).parent / "reports" / "report.css", d / "assets" / "site.css")
        (d / "assets" / "fonts" / "ipaexg.ttf").write_bytes(b"\x00\x01\x00\x00" + bytes(64))
        (d / "assets" / "fonts" / "IPA_Font_License_Agreement_v1.0.txt").write_text("licence", encoding="utf-8")
        (d / publish.MARKER).write_text(publish.MARKER_TEXT, encoding="utf-8")
        return d

    def test_the_files_a_build_writes_pass(self, tmp_path: Path) -> None:
        assert publish.scan_site(self._clean_site(tmp_path / "site")) == []

    def test_notebooks_logs_state_and_other_working_files_are_refused(self, tmp_path: Path) -> None:
        """The allow-list: anything but what a visitor needs stops the build, naming the file."""
        site = self._clean_site(tmp_path / "site")
        planted = {
            ".work/executed/13-tokyo.ipynb": "a hidden file (in a hidden folder)",
            "runs/indicators-2024.ipynb": "an executed notebook",
            "prefectures/13-tokyo.ipynb": "an executed notebook",
            "build.log": "a log file",
            "build-summary.txt": "a text file (only the font's licence is published)",
            ".tsunagari-state.json": "a hidden file",
            ".tsunagari-checked.json": "a hidden file",
            ".nojekyll": "a hidden file",
            "downloads/.xlsx-inputs.json": "a hidden file",
            "downloads/state.json": "a JSON file the pages do not use",
            "prefectures/13-tokyo.tmp.html": "a temporary file",
            "index.html.tmp": "a temporary file",
            "quality/notes.md": "file type '.md' is not one a visitor needs",
        }
        for rel in planted:
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            (site / rel).write_text("{}", encoding="utf-8")
        assert publish.scan_site(site) == sorted(f"{rel}: {why}{NOT_NEEDED}" for rel, why in planted.items())

    def test_microdata_in_any_format_and_under_any_name_is_refused(self, tmp_path: Path) -> None:
        site = self._clean_site(tmp_path / "site")
        df = pd.DataFrame({"respondent_id": ["r1", "r2"], "q_loneliness": [5, 1]})
        df.to_parquet(site / "downloads" / "respondents.parquet")
        df.to_parquet(site / "downloads" / "respondents.csv")  # Parquet named .csv
        df.to_feather(site / "downloads" / "data.json")  # Feather named .json
        con = duckdb.connect(str(site / "downloads" / "wh.html"))  # DuckDB named .html
        con.execute("CREATE TABLE t AS SELECT 1 AS a")
        con.close()
        lite = sqlite3.connect(site / "downloads" / "app.txt")  # SQLite named .txt
        lite.execute("CREATE TABLE t(a)")
        lite.commit()
        lite.close()
        (site / "downloads" / "frame.log").write_bytes(pickle.dumps(df))  # a pickle named .log
        (site / "downloads" / "fake.pdf").write_text("respondent_id,q\nr1,5\n", encoding="utf-8")
        (site / "downloads" / "notes").write_text("x", encoding="utf-8")
        (site / "link.html").symlink_to(tmp_path / "elsewhere.html")
        found = publish.scan_site(site)
        assert found == sorted(
            [
                "downloads/app.txt: is an SQLite database; not published / 公開できない形式のデータです",
                "downloads/data.json: is an Arrow/Feather file; not published / 公開できない形式のデータです",
                "downloads/fake.pdf: is not a .pdf file (its first bytes do not match); not published / 公開できない形式のデータです",
                "downloads/frame.log: is a Python pickle; not published / 公開できない形式のデータです",
                "downloads/notes: a file without an extension" + NOT_NEEDED,
                "downloads/respondents.csv: is a Parquet file; not published / 公開できない形式のデータです",
                "downloads/respondents.parquet: is a Parquet file; not published / 公開できない形式のデータです",
                "downloads/wh.html: is a DuckDB database; not published / 公開できない形式のデータです",
                "link.html: a symbolic link or special file; not published / 公開できないファイルです",
            ]
        )


class TestFingerprint:
    def _copy_package(self, tmp_path: Path) -> Path:
        dst = tmp_path / "pkg"
        shutil.copytree(config.PACKAGE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
        return dst

    def test_changing_any_constant_of_the_package_changes_the_fingerprint(self, tmp_path: Path, monkeypatch) -> None:
        pkg = self._copy_package(tmp_path)
        monkeypatch.setattr(config, "PACKAGE_DIR", pkg)
        base = fingerprint.compute()
        text = (pkg / "domain" / "config.py").read_text(encoding="utf-8")
        (pkg / "domain" / "config.py").write_text(text.replace("MIN_BASE = 30", "MIN_BASE = 50"), encoding="utf-8")
        changed = fingerprint.compute()
        assert changed != base
        (pkg / "domain" / "config.py").write_text(text, encoding="utf-8")
        assert fingerprint.compute() == base
        (pkg / "outputs" / "templates" / "site.css").write_text("/* changed */", encoding="utf-8")
        assert fingerprint.compute() != base

    def test_settings_and_library_versions_are_part_of_it(self, monkeypatch) -> None:
        base = fingerprint.compute()
        monkeypatch.setenv("TSUNAGARI_SOMETHING_NEW", "1")
        assert fingerprint.compute() != base
        monkeypatch.delenv("TSUNAGARI_SOMETHING_NEW")
        monkeypatch.setenv(config.CACHE_ENV, "/elsewhere")  # only locates a cache: no rebuild
        assert fingerprint.compute() == base
        versions = fingerprint.library_versions()
        import duckdb as d
        import pandas as p

        assert versions["duckdb"] == d.__version__ and versions["pandas"] == p.__version__
        for name in ("papermill", "typst", "pypandoc-binary", "matplotlib", "great-expectations"):
            assert versions[name] != "-", name


class TestLogLines:
    def test_control_characters_are_escaped(self) -> None:
        assert escape_control("evil\nINFO forged\r\t\x1b[31m\u2028") == "evil\\nINFO forged\\r\\t\\x1b[31m\\u2028"

    def test_a_log_record_is_one_line_without_server_paths(self, tmp_path: Path, monkeypatch) -> None:
        monkeypatch.chdir(tmp_path)
        fmt = SafeFormatter("%(levelname)s %(message)s")
        rec = logging.LogRecord(
            "tsunagari.x",
            logging.INFO,
            __file__,
            1,
            "staged %s from %s",
            ("bad\nname.csv", str(tmp_path / "in" / "x.csv")),
            None,
        )
        assert fmt.format(rec) == "INFO staged bad\\nname.csv from in/x.csv"

    def test_display_path(self, tmp_path: Path, monkeypatch) -> None:
        monkeypatch.chdir(tmp_path)
        assert display_path(tmp_path / "data" / "warehouse.duckdb") == "data/warehouse.duckdb"
        assert display_path("/srv/secret/place/wh.duckdb") == "…/wh.duckdb"
        assert display_path("data/x") == "data/x"


# ---------------------------------------------------------------------------------------------
# Real builds
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tottori(tmp_path_factory) -> Path:
    """The session's shared build of the sample, Tottori only (``shared_build``). Read only."""
    return shared_build(tmp_path_factory, "tottori", prefs=[31])


@pytest.fixture(scope="module")
def small_input(tottori: Path) -> Path:
    """The sample input folder of the shared build (read only: a build only reads its input)."""
    return tottori / "in"


def _cfg(root: Path, input_dir: Path, out: Path, **kw) -> BuildConfig:
    base = dict(
        input_dir=input_dir,
        out_dir=out,
        warehouse=root / "wh.duckdb",
        jobs=1,
        prefs=[31],
        quiet=True,
        renderer="pandoc",
    )
    base.update(kw)
    return BuildConfig(**base)


@pytest.mark.slow
class TestBuildOwnsOnlyItsFiles:
    def test_symlinked_out_users_siblings_log_paths_and_the_publish_scan(
        self, tmp_path: Path, small_input: Path, monkeypatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "www" / "html").mkdir(parents=True)
        current = tmp_path / "current"
        current.symlink_to(Path("www") / "html")
        # The user's own folders and files beside the link and beside its target.
        for parent in (tmp_path, tmp_path / "www"):
            for name in ("current.old", "current.new", "html.old", "html.new"):
                (parent / name).mkdir()
                (parent / name / "keep.txt").write_text(f"user {name}", encoding="utf-8")
            for name in ("current.lock", "html.lock"):
                (parent / name).write_text("user lock notes", encoding="utf-8")
        users = {k: v for k, v in tree(tmp_path).items() if ".old" in k or ".new" in k or ".lock" in k}

        cfg = _cfg(tmp_path, small_input, current)
        first = run_build(cfg)
        assert first.ok and first.published, first.failed
        assert current.is_symlink() and os.readlink(current) == "www/html"  # the link stays a link
        assert (tmp_path / "www" / "html" / "prefectures" / "31-tottori.pdf").is_file()  # the target updated
        assert (tmp_path / "www" / "html" / publish.MARKER).is_file()
        after = tree(tmp_path)
        assert {k: after.get(k) for k in users} == users  # byte-identical
        assert not (tmp_path / "www" / ".html.tsunagari-new").exists()
        assert not (tmp_path / "www" / ".html.tsunagari-old").exists()

        # The working files sit beside the target, not in the site; no absolute server path in them.
        site = tmp_path / "www" / "html"
        work = tmp_path / "www" / ".html.tsunagari-work"
        assert not (tmp_path / ".current.tsunagari-work").exists()
        for rel in ("build.log", "build-summary.txt", "executed/31-tottori.ipynb", "runs/indicators-2024.ipynb"):
            assert not (site / rel).exists() and not (site / Path(rel).name).exists(), rel
            text = (work / rel).read_text(encoding="utf-8")
            assert str(tmp_path) not in text and str(ROOT) not in text, rel
        assert "'warehouse': 'wh.duckdb'" in (work / "build.log").read_text(encoding="utf-8")

        # A data file put into the published site is refused at the next build, naming it.
        published = tree(site)
        pd.DataFrame({"respondent_id": ["r1"]}).to_parquet(site / "downloads" / "export.csv")
        blocked = run_build(cfg)
        assert not blocked.published
        assert blocked.failed == [
            "publish: downloads/export.csv: is a Parquet file; not published / 公開できない形式のデータです"
        ]
        assert {k: v for k, v in tree(site).items() if k != "downloads/export.csv"} == published

    def test_out_refused_on_the_command_line(self, tmp_path: Path, small_input: Path) -> None:
        """`--out ..`, `--out .` and `--out data`: exit 2, a message naming --out, nothing written."""
        (tmp_path / "proj" / "data").mkdir(parents=True)
        before = tree(tmp_path)
        for out, why in (
            ("..", "'..' contains the working folder"),
            (".", "'.' is the working folder"),
            ("data", "'data' is data/"),
        ):
            proc = subprocess.run(
                [sys.executable, "-m", "pipelines.cli", "build", "--input", str(small_input), "--out", out, "--quiet"],
                capture_output=True,
                text=True,
                cwd=tmp_path / "proj",
                timeout=300,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            assert proc.returncode == 2, proc.stderr[-2000:]
            assert proc.stderr.startswith(f"error: --out: {why}"), proc.stderr
            assert "Traceback" not in proc.stderr
        assert tree(tmp_path) == before


@pytest.mark.slow
class TestNoStaleCache:
    def test_changing_min_base_in_the_package_changes_the_next_plain_build(self, tmp_path: Path, tottori: Path) -> None:
        """A copy of the project; a first build; MIN_BASE 30 -> 50 in its config.py; the next plain
        build (no --force) publishes the new suppression. (The input folder and the warehouse are
        the shared build's: the files are loaded already; the first build builds everything else,
        the fingerprint of the project's copy naming its own folders.)"""
        proj = tmp_path / "proj"
        proj.mkdir()
        shutil.copytree(tottori / "in", proj / "in")
        shutil.copy(tottori / "wh.duckdb", proj / "wh.duckdb")
        for name in ("pipelines", "reports", "expectations", "data/reference"):
            shutil.copytree(ROOT / name, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", proj / "pyproject.toml")
        cmd = [
            sys.executable,
            "-m",
            "pipelines.cli",
            "build",
            "--input",
            "in",
            "--out",
            "site",
            "--warehouse",
            "wh.duckdb",
            "--pref",
            "31",
            "--jobs",
            "1",
            "--renderer",
            "pandoc",
            "--quiet",
        ]
        others = [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e and Path(e).resolve() != ROOT]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(proj), *others])}  # the copy, not this checkout
        env.pop("TSUNAGARI_REPORTS_DIR", None)
        first = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=1200)
        assert first.returncode == 0, first.stderr[-3000:]
        site = proj / "site"
        csv = site / "downloads" / "indicators-2024.csv"
        before = pd.read_csv(csv, encoding="utf-8-sig", dtype=str, header=1)
        html_before = (site / "prefectures" / "31-tottori.html").read_bytes()
        footnote = "「x」：集計対象が{}人未満のため"  # report_data.FOOTNOTE_SUPPRESSED, from config.MIN_BASE
        assert footnote.format(30) in html_before.decode("utf-8")

        cfg = proj / "pipelines" / "domain" / "config.py"
        cfg.write_text(cfg.read_text(encoding="utf-8").replace("MIN_BASE = 30", "MIN_BASE = 50"), encoding="utf-8")
        second = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=1200)
        assert second.returncode == 0, second.stderr[-3000:]
        after = pd.read_csv(csv, encoding="utf-8-sig", dtype=str, header=1)
        html_after = (site / "prefectures" / "31-tottori.html").read_text(encoding="utf-8")
        assert footnote.format(50) in html_after and footnote.format(30) not in html_after
        n = pd.to_numeric(after.n_unweighted, errors="coerce")
        shown = after.value.notna() & after.value.ne("")
        assert not (shown & n.lt(50)).any()  # nothing with a base under 50 is shown now

        def suppressed(df: pd.DataFrame) -> int:
            return int(df.suppressed.str.lower().isin(["true", "1"]).sum())

        assert suppressed(after) > suppressed(before)
