"""`tsunagari build` end to end on small synthetic data: incremental, parallel, atomic.

These run the real stages (ingest with GX, the indicators notebook, report notebooks with papermill,
pandoc + typst rendering, the site) on a reduced sample and a few prefectures.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.build import run_build
from pipelines.domain.config import BuildConfig
from pipelines.ingest.sample import write_sample
from tests.fixtures_reports import fork_report
from tests.shared_builds import copy_build, folder_config, shared_build

ROOT = Path(__file__).resolve().parents[1]
PREFS = [11, 31]  # Saitama (own survey in 2024) and Tottori (national subsample only)


@pytest.fixture(scope="module")
def small_input(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("input")
    write_sample(d, rows=4000)
    return d


def _cfg(tmp: Path, input_dir: Path, prefs=PREFS, **kw) -> BuildConfig:
    return folder_config(tmp, prefs, input_dir, **kw)


def _tottori(tmp_path: Path, tmp_path_factory) -> Path:
    """A test's own copy of the session's build of Tottori (and every site page) on the sample of
    4,000 rows a round (``small_input``'s data): its folder holds ``in``, ``wh.duckdb`` and ``site``."""
    return copy_build(shared_build(tmp_path_factory, "tottori", prefs=[31]), tmp_path / "b")


def _tree(d: Path) -> dict[str, str]:
    """Relative path -> sha256 of every published file (the build's log and records are kept
    beside the site, in .site.tsunagari-work)."""
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()
    }


def _copy_input(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_saitama_2024(input_dir: Path) -> None:
    """A corrected prefecture file: some answers of Saitama's own 2024 survey change."""
    path = input_dir / "pref11-2024.csv"
    df = pd.read_csv(path, encoding="cp932", dtype=str)
    df.loc[df.index[:200], "孤独感"] = "しばしばある・常にある"
    df.to_csv(path, encoding="cp932", index=False)


class TestIncrementalBuild:
    def test_no_change_executes_nothing_and_one_prefecture_rebuilds_only_its_dependents(
        self, tmp_path: Path, small_input: Path
    ) -> None:
        inp = _copy_input(small_input, tmp_path / "in")
        cfg = _cfg(tmp_path, inp, prefs=[0, *PREFS])
        first = run_build(cfg)
        assert first.ok and first.published
        site = cfg.out_dir
        for rel in (
            "index.html",
            "methodology.html",
            "national.html",
            "national.pdf",
            "prefectures/11-saitama.html",
            "prefectures/11-saitama.pdf",
            "prefectures/31-tottori.html",
            "quality/index.html",
            "downloads/indicators-2024.csv",
        ):
            assert (site / rel).is_file(), rel
        assert sorted(first.rendered) == ["11-saitama", "31-tottori", "national"]
        before = _tree(site)

        second = run_build(cfg)
        assert second.ok
        assert second.executed == [] and second.rendered == []  # nothing executed, nothing rendered
        assert not [b for b in second.built if not b.startswith("ingest")]
        assert _tree(site) == before

        _edit_saitama_2024(inp)
        third = run_build(cfg)
        assert third.ok
        assert sorted(third.rendered) == ["11-saitama", "national"]  # Tottori is not rebuilt
        assert "indicators-2024" in third.executed and "site:2024" in third.built
        after = _tree(site)
        assert after["prefectures/31-tottori.html"] == before["prefectures/31-tottori.html"]
        assert after["prefectures/11-saitama.html"] != before["prefectures/11-saitama.html"]
        # Per-prefecture workbooks: only the changed one is written again.
        assert after["downloads/11-saitama-2024.xlsx"] != before["downloads/11-saitama-2024.xlsx"]
        assert after["downloads/31-tottori-2024.xlsx"] == before["downloads/31-tottori-2024.xlsx"]
        # Every round is downloadable; only the corrected round's per-round files are written again.
        assert {"downloads/indicators.csv", "downloads/indicators-2022.csv", "downloads/indicators-2023.xlsx"} <= set(
            before
        )
        assert "downloads:2024" in third.built and "downloads" in third.built
        assert "downloads:2023" in third.skipped and "downloads:2022" in third.skipped
        assert after["downloads/indicators-2023.csv"] == before["downloads/indicators-2023.csv"]
        assert after["downloads/indicators-2024.csv"] != before["downloads/indicators-2024.csv"]
        # The quality page checks the computed national figures against the published series.
        assert 'id="published-national"' in (site / "quality" / "index.html").read_text(encoding="utf-8")
        assert (site / "quality" / "published-national.csv").is_file()

    def test_results_of_older_suites_are_replaced_once(self, tmp_path: Path, tmp_path_factory) -> None:
        """After an upgrade that changed the suites or validate.py, the stored validation results no
        longer fit: the quality page validates the files again, and the build stores the new
        results, so that the following builds reuse them instead of validating every file again."""
        import duckdb

        root = _tottori(tmp_path, tmp_path_factory)
        small_input = root / "in"
        cfg = _cfg(root, small_input, prefs=[31])
        con = duckdb.connect(str(cfg.warehouse))
        n = con.execute("SELECT count(*) FROM validation_results").fetchone()[0]
        con.execute("UPDATE validation_results SET suite_digest = 'an older version'")
        con.close()

        def quality_line() -> str:
            log = (cfg.out_dir.parent / f".{cfg.out_dir.name}.tsunagari-work" / "build.log").read_text(encoding="utf-8")
            return [ln for ln in log.splitlines() if "quality:" in ln][-1]

        assert run_build(_cfg(root, small_input, prefs=[31], force=True)).ok
        assert f"0 with the results stored at ingest, {n} validated now" in quality_line()
        con = duckdb.connect(str(cfg.warehouse), read_only=True)
        assert (
            con.execute("SELECT count(*) FROM validation_results WHERE suite_digest <> 'an older version'").fetchone()[
                0
            ]
            == n
        )
        con.close()
        assert run_build(_cfg(root, small_input, prefs=[31], force=True)).ok
        assert f"{n} with the results stored at ingest, 0 validated now" in quality_line()

    def test_force_rebuilds_everything(self, tmp_path: Path, tmp_path_factory) -> None:
        root = _tottori(tmp_path, tmp_path_factory)
        unchanged = run_build(_cfg(root, root / "in", prefs=[31]))
        assert unchanged.ok and unchanged.rendered == [] and unchanged.executed == []
        forced = run_build(_cfg(root, root / "in", prefs=[31], force=True))
        assert forced.rendered == ["31-tottori"] and "indicators-2024" in forced.executed


class TestFailureIsolation:
    def test_one_area_raising_leaves_others_built_and_published_site_unchanged(
        self, tmp_path: Path, tmp_path_factory, monkeypatch
    ) -> None:
        root = _tottori(tmp_path, tmp_path_factory)
        small_input = root / "in"
        cfg = _cfg(root, small_input)
        published = _tree(cfg.out_dir)

        # A forked report notebook that raises for Tottori only.
        fork = fork_report(tmp_path, "if int(pref_code) == 31:\n", "    raise RuntimeError('injected failure')\n")
        monkeypatch.setenv("TSUNAGARI_REPORTS_DIR", str(fork))

        failed = run_build(_cfg(root, small_input, prefs=[11, 31, 13]))
        assert not failed.ok and not failed.published
        assert len(failed.failed) == 1 and "31-tottori" in failed.failed[0]
        assert "injected failure" in failed.failed[0]
        assert _tree(cfg.out_dir) == published  # the previous site untouched
        staged = cfg.out_dir.parent / f".{cfg.out_dir.name}.tsunagari-new"
        assert (staged / "prefectures" / "13-tokyo.pdf").is_file()  # the others were built
        assert (staged / "prefectures" / "11-saitama.html").is_file()

    def test_cli_exit_code_is_non_zero_and_names_the_area(self, tmp_path: Path, small_input: Path) -> None:
        fork = fork_report(tmp_path, "raise RuntimeError('injected failure')\n")
        env = {**__import__("os").environ, "TSUNAGARI_REPORTS_DIR": str(fork)}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "build",
                "--input",
                str(small_input),
                "--out",
                str(tmp_path / "site"),
                "--warehouse",
                str(tmp_path / "wh.duckdb"),
                "--pref",
                "31",
                "--quiet",
                "--renderer",
                "pandoc",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "31-tottori" in proc.stderr and "injected failure" in proc.stderr
        assert not (tmp_path / "site").exists()


class TestJobs:
    def test_jobs_1_and_2_produce_the_same_outputs(self, tmp_path: Path, small_input: Path) -> None:
        trees = []
        for jobs in (1, 2):
            cfg = _cfg(tmp_path / f"j{jobs}", small_input, jobs=jobs, prefs=[13, 31, 47])
            assert run_build(cfg).ok
            site = cfg.out_dir
            trees.append(
                {
                    rel: _normalised(site / rel)
                    for rel in (
                        "prefectures/13-tokyo.html",
                        "prefectures/31-tottori.html",
                        "prefectures/47-okinawa.html",
                        "downloads/indicators-2024.csv",
                        "index.html",
                    )
                }
            )
        assert trees[0] == trees[1]


def _normalised(path: Path) -> str:
    """File text with build timestamps removed (they legitimately differ between builds)."""
    import re

    text = path.read_text(encoding="utf-8-sig")
    return re.sub(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(\.\d+)?(\+00:00|Z| UTC)?", "<time>", text)


class TestUsage:
    def test_bad_renderer_is_a_usage_error(self, tmp_path: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "build", "--renderer", "word"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert proc.returncode == 2
        assert "--renderer: 'word' is not one of auto, quarto, pandoc" in proc.stderr

    def test_second_build_on_the_same_output_is_refused(self, tmp_path: Path) -> None:
        from pipelines.engine.publish import BuildLockedError, build_lock

        with build_lock(tmp_path / "site"):
            with pytest.raises(BuildLockedError, match="another build is writing"):
                with build_lock(tmp_path / "site"):
                    pass


class TestDisclosureGate:
    def test_a_disclosure_finding_stops_publication(self, tmp_path: Path, tmp_path_factory, monkeypatch) -> None:
        from pipelines.disclosure import check as disclosure

        root = _tottori(tmp_path, tmp_path_factory)
        small_input = root / "in"
        cfg = _cfg(root, small_input, prefs=[31])
        published = _tree(cfg.out_dir)
        monkeypatch.setattr(
            disclosure,
            "check_files",
            lambda site, paths, ctx: ["downloads/indicators-2024.csv row 7: value shown for n<30"],
        )
        blocked = run_build(_cfg(root, small_input, prefs=[31], force=True))
        assert not blocked.ok and not blocked.published
        assert blocked.failed == ["disclosure: downloads/indicators-2024.csv row 7: value shown for n<30"]
        assert _tree(cfg.out_dir) == published

    def test_a_report_disclosing_respondent_ids_is_caught_by_its_worker(
        self, tmp_path: Path, tmp_path_factory, monkeypatch
    ) -> None:
        """A forked report that shows respondent ids (a cell's result, which the report page
        shows): the worker's check of the page finds them, the build fails naming the file, and
        the published site is unchanged. (The executed notebook is not published: it stays in the
        working folder beside the site.)"""
        root = _tottori(tmp_path, tmp_path_factory)
        small_input = root / "in"
        cfg = _cfg(root, small_input, prefs=[31])
        published = _tree(cfg.out_dir)
        fork = fork_report(
            tmp_path,
            "import duckdb\n",
            "with duckdb.connect(warehouse, read_only=True) as _c:\n",
            "    _ids = _c.execute('SELECT respondent_id FROM survey_responses ORDER BY 1 LIMIT 3').fetchall()\n",
            "_ids\n",
        )
        monkeypatch.setenv("TSUNAGARI_REPORTS_DIR", str(fork))
        blocked = run_build(_cfg(root, small_input, prefs=[31]))
        assert not blocked.ok and not blocked.published
        assert blocked.failed and all(f.startswith("disclosure: ") for f in blocked.failed)
        assert any("prefectures/31-tottori.html" in f and "respondent" in f for f in blocked.failed), blocked.failed
        assert _tree(cfg.out_dir) == published
