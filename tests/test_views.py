"""Issue #25: no command rewrites a file inside a published folder in place.

`tsunagari reports` and `tsunagari indicators` are views of the build (pipelines/build.py,
``BuildConfig.stages``): they run only their stage, into the staging folder, and the result is
swapped in after the publish scan and the disclosure check, under the build's lock. The library's
``reports.run_reports`` is a preview that refuses a published folder. The build's state keeps the
sha256 of every file an artefact wrote into the site, so a published file changed by hand is built
again by the next build.

Real builds on a reduced sample (national, Saitama and Tottori).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.build import run_build
from pipelines.domain.config import BuildConfig
from pipelines.engine import publish
from tests.fixtures_reports import fork_report
from tests.shared_builds import folder_config, shared_build

ROOT = Path(__file__).resolve().parents[1]


# The build these tests copy is the session's shared build "fixed-time" (``shared_build``), made
# under SOURCE_DATE_EPOCH = BUILD_TIME and also copied by test_keys.py (which builds on it under the
# same time: the time is part of the build's fingerprint).
BUILD_TIME = "1765000000"
PREFS = [0, 11, 31]  # national, Saitama (own survey in 2024), Tottori (national subsample)


@pytest.fixture(scope="module", autouse=True)
def fixed_build_time():
    """Pages carry the build's time to the minute: a rebuild compared byte for byte with the first
    build must not depend on the clock (SOURCE_DATE_EPOCH, the reproducible-builds convention)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", BUILD_TIME)
    yield
    mp.undo()


def _config(root: Path, input_dir: Path) -> BuildConfig:
    return folder_config(root, PREFS, input_dir)


@pytest.fixture(scope="module")
def published(tmp_path_factory, fixed_build_time) -> tuple[Path, BuildConfig]:
    """One real build (national, Saitama and Tottori) whose site the tests copy: the shared build
    "fixed-time", made once per session (under the fixed build time). Read only."""
    root = shared_build(tmp_path_factory, "fixed-time", prefs=PREFS)
    return root, _config(root, root / "in")


def _copy(published, tmp_path: Path) -> BuildConfig:
    """The published site, its working folder and the warehouse, copied (each test changes them;
    the input folder is only read)."""
    root, cfg = published
    for name in ("site", ".site.tsunagari-work"):
        shutil.copytree(root / name, tmp_path / name, symlinks=True)
    shutil.copy(cfg.warehouse, tmp_path / "wh.duckdb")
    return _config(tmp_path, cfg.input_dir)


def _tree(d: Path) -> dict[str, str]:
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def _cells(xlsx: Path | bytes) -> list:
    import io

    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(xlsx if isinstance(xlsx, bytes) else xlsx.read_bytes()))
    rows = [[c.value for c in row] for ws in book.worksheets for row in ws.iter_rows()]
    return [r for r in rows if r[:1] != ["作成日時"]]  # (when it was written)


def _cli(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=900,
    )


class TestFilesChangedByHand:
    @pytest.mark.slow
    def test_a_published_file_edited_by_hand_is_built_again(self, published, tmp_path: Path) -> None:
        cfg = _copy(published, tmp_path)
        site = cfg.out_dir
        before = _tree(site)
        # no change: nothing is built, the site is byte-identical
        again = run_build(cfg)
        assert again.ok and again.rendered == [] and _tree(site) == before
        edits = {
            "prefectures/31-tottori.html": b"<p>EDITED BY HAND</p>",
            "index.html": b"<p>EDITED BY HAND</p>",
            "downloads/31-tottori-2024.xlsx": None,  # a workbook replaced by another one
            "downloads/indicators-2024.csv": b"EDITED,BY,HAND\n",
        }
        workbook = (site / "downloads/31-tottori-2024.xlsx").read_bytes()
        (site / "downloads/31-tottori-2024.xlsx").write_bytes((site / "downloads/11-saitama-2024.xlsx").read_bytes())
        for rel, extra in edits.items():
            if extra is not None:
                with open(site / rel, "ab") as fh:
                    fh.write(extra)
        for rel in edits:
            assert _tree(site)[rel] != before[rel]
        fixed = run_build(cfg)
        assert fixed.ok and fixed.published, fixed.text()
        assert fixed.rendered == ["31-tottori"]  # only the edited report, not the national one
        assert {"report:2024:31-tottori", "site:2024", "workbooks:2024", "downloads:2024"} <= set(fixed.built)
        assert "report:2024:national" in fixed.skipped
        after = _tree(site)
        for rel in edits:
            assert b"EDITED BY HAND" not in (site / rel).read_bytes(), rel
        # the download and the page are written again from the same rows: the same bytes; the
        # workbook has the same cells
        for rel in ("downloads/indicators-2024.csv", "index.html"):
            assert after[rel] == before[rel], rel
        assert _cells(site / "downloads/31-tottori-2024.xlsx") == _cells(workbook)
        # and the next build with no change builds nothing again
        third = run_build(cfg)
        assert third.ok and third.rendered == [] and not [b for b in third.built if not b.startswith("ingest")]


class TestStageCommandsAreViewsOfTheBuild:
    @pytest.mark.slow
    def test_reports_into_the_published_site_goes_through_the_gate_and_the_swap(
        self, published, tmp_path: Path
    ) -> None:
        cfg = _copy(published, tmp_path)
        site = cfg.out_dir
        wh = ["--warehouse", str(cfg.warehouse)]
        before = _tree(site)
        # 1. A forked report showing respondent ids: the disclosure gate stops it; the published
        #    site is unchanged, byte for byte (nothing was written into it in place).
        fork = fork_report(
            tmp_path,
            "import duckdb\n",
            "with duckdb.connect(warehouse, read_only=True) as _c:\n",
            "    _ids = _c.execute('SELECT respondent_id FROM survey_responses ORDER BY 1 LIMIT 3').fetchall()\n",
            "_ids\n",
        )
        proc = _cli(
            tmp_path,
            "reports",
            "--year",
            "2024",
            "--pref",
            "31",
            "--out",
            "site",
            "--renderer",
            "pandoc",
            "--quiet",
            *wh,
            env={"TSUNAGARI_REPORTS_DIR": str(fork)},
        )
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "disclosure: prefectures/31-tottori.html" in proc.stderr and "NOT published" in proc.stderr
        assert _tree(site) == before
        # 2. Another build holds the lock: refused, nothing changes.
        with publish.build_lock(publish.resolve_out(site)):
            proc = _cli(
                tmp_path,
                "reports",
                "--year",
                "2024",
                "--pref",
                "31",
                "--out",
                "site",
                "--renderer",
                "pandoc",
                "--quiet",
                *wh,
            )
        assert proc.returncode == 1 and "another build is writing" in proc.stderr, proc.stderr[-2000:]
        assert _tree(site) == before
        # 3. The report, edited by hand, rebuilt by `tsunagari reports`: a new folder swapped in
        #    (the published one is renamed away, never written into), the other areas carried over.
        with open(site / "prefectures/31-tottori.html", "ab") as fh:
            fh.write(b"<p>EDITED BY HAND</p>")
        inode = os.stat(site).st_ino
        proc = _cli(
            tmp_path,
            "reports",
            "--year",
            "2024",
            "--pref",
            "31",
            "--out",
            "site",
            "--renderer",
            "pandoc",
            "--quiet",
            *wh,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert os.stat(site).st_ino != inode  # swapped in
        assert not publish.staging_dir(site).exists()
        after = _tree(site)
        html = (site / "prefectures/31-tottori.html").read_text(encoding="utf-8")
        assert "EDITED BY HAND" not in html and "鳥取県" in html
        assert after["national.html"] == before["national.html"]
        assert (tmp_path / ".site.tsunagari-work" / "executed" / "31-tottori.ipynb").is_file()

    @pytest.mark.slow
    def test_indicators_into_the_published_site_goes_through_the_gate(self, published, tmp_path: Path) -> None:
        cfg = _copy(published, tmp_path)
        site = cfg.out_dir
        csv = site / "downloads/indicators-2024.csv"
        csv.write_bytes(csv.read_bytes() + b"EDITED,BY,HAND\n")
        inode = os.stat(site).st_ino
        proc = _cli(
            tmp_path, "indicators", "--year", "2024", "--out", "site", "--quiet", "--warehouse", str(cfg.warehouse)
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert os.stat(site).st_ino != inode and b"EDITED" not in csv.read_bytes()
        assert (tmp_path / ".site.tsunagari-work" / "runs" / "indicators-2024.ipynb").is_file()

    def test_the_preview_refuses_a_published_folder(self, tmp_path: Path) -> None:
        from pipelines.domain.errors import UsageError
        from pipelines.outputs.reports import run_reports

        site = tmp_path / "site"
        site.mkdir()
        (site / publish.MARKER).write_text(publish.MARKER_TEXT, encoding="utf-8")
        (tmp_path / "wh.duckdb").write_bytes(b"")
        with pytest.raises(UsageError, match="a published site"):
            run_reports(2024, tmp_path / "wh.duckdb", site, prefs=[31])
        for sib in (publish.staging_dir(site), publish.work_dir(site)):
            with pytest.raises(UsageError, match="the build's own folders"):
                run_reports(2024, tmp_path / "wh.duckdb", sib, prefs=[31])
        assert sorted(p.name for p in site.iterdir()) == [publish.MARKER]
