"""Interrupted and concurrent runs: a killed build or ingest leaves the warehouse consistent and the
published site as it was; a second build is refused while one runs; the warehouse can be rebuilt
from the raw files and their recorded provenance."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.domain.errors import DataError
from pipelines.ingest.provenance import rebuild_warehouse
from pipelines.ingest.sample import national_round, write_sample
from pipelines.ingest.stage import ingest_dir
from tests.process_helpers import poll, with_tmpdir
from tests.shared_builds import copy_build, shared_build


def _tables(wh: Path) -> dict[str, list]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        out = {}
        for t in ("survey_responses", "programme"):
            out[t] = con.execute(f"SELECT * EXCLUDE (file_id) FROM {t} ORDER BY ALL").fetchall()
        out["files"] = con.execute(
            "SELECT file_id, file_name, kind, survey_id, survey_year, row_count, synthetic FROM files ORDER BY file_id"
        ).fetchall()
        return out
    finally:
        con.close()


def _tree(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()
    }


def _build_cmd(inp: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines.cli",
        "build",
        "--input",
        str(inp),
        "--out",
        str(tmp / "site"),
        "--warehouse",
        str(tmp / "wh.duckdb"),
        "--renderer",
        "pandoc",
        "--jobs",
        "1",
        *extra,
    ]


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 600) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before the point to interrupt it")
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the point to interrupt")


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the build, its workers and their kernels
    proc.wait(timeout=30)


def _ingested(tmp_path: Path, tmp_path_factory) -> Path:
    """The input files and the warehouse (ingested, indicators computed) of the session's shared
    Tottori build (tests/shared_builds.py) copied into tmp_path, without its site or working folder:
    a build there starts from a loaded warehouse. Returns the input folder."""
    root = shared_build(tmp_path_factory, "tottori", prefs=[31])
    shutil.copytree(root / "in", tmp_path / "in")
    shutil.copy(root / "wh.duckdb", tmp_path / "wh.duckdb")
    return tmp_path / "in"


@pytest.fixture(scope="module")
def small_input(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("input")
    write_sample(d, rows=3000)
    return d


class TestKilledBuild:
    def test_kill_during_reports_keeps_previous_site_and_next_build_recovers(
        self, tmp_path: Path, tmp_path_factory
    ) -> None:
        # a published build of Tottori (a copy of the session's shared one)
        tmp_path = copy_build(shared_build(tmp_path_factory, "tottori", prefs=[31]), tmp_path / "b")
        inp = tmp_path / "in"
        published = _tree(tmp_path / "site")
        tables = _tables(tmp_path / "wh.duckdb")

        # Ask for two more prefectures and kill the build while it executes the first report.
        work = tmp_path / ".site.tsunagari-work"  # the build's working files: notebooks, log
        executed = work / "executed"
        stale = (executed / "13-tokyo.ipynb").exists()
        proc = subprocess.Popen(
            _build_cmd(inp, tmp_path, "--pref", "31", "--pref", "13", "--pref", "1", "--quiet"),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_for(
            lambda: (
                (work / "build.log").exists()
                and "report:2024:13-tokyo" in (work / "build.log").read_text(encoding="utf-8")
                or (not stale and (executed / "13-tokyo.ipynb").exists())
            ),
            proc,
        )
        _kill(proc)
        assert _tree(tmp_path / "site") == published  # the published site is the previous one
        assert _tables(tmp_path / "wh.duckdb") == tables  # the warehouse is consistent

        again = subprocess.run(
            _build_cmd(inp, tmp_path, "--pref", "31", "--pref", "13", "--quiet"),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert again.returncode == 0, again.stderr[-2000:]
        assert (tmp_path / "site" / "prefectures" / "13-tokyo.pdf").is_file()
        assert not (tmp_path / ".site.tsunagari-new").exists()

    def test_interrupted_swap_is_recovered(self, tmp_path: Path) -> None:
        from pipelines.engine import publish

        out = tmp_path / "site"
        (tmp_path / ".site.tsunagari-old").mkdir()
        (tmp_path / ".site.tsunagari-old" / publish.MARKER).write_text(publish.MARKER_TEXT, encoding="utf-8")
        (tmp_path / ".site.tsunagari-old" / "index.html").write_text("previous", encoding="utf-8")
        publish.recover(out)  # killed between the two renames: the previous site comes back
        assert (out / "index.html").read_text(encoding="utf-8") == "previous"
        assert not (tmp_path / ".site.tsunagari-old").exists()


class TestKilledIngest:
    def test_kill_during_ingest_leaves_warehouse_unchanged(self, tmp_path: Path, small_input: Path) -> None:
        wh = tmp_path / "wh.duckdb"
        ingest_dir(small_input, wh)
        before = _tables(wh)
        big = tmp_path / "big"
        big.mkdir()
        national_round(2024, rows=400_000, seed=7).to_parquet(
            big / "national-2024.parquet", index=False
        )  # would replace 2024
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "ingest", str(big), "--warehouse", str(wh)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []

        def staged() -> bool:
            line = proc.stderr.readline()
            lines.append(line)
            return "staged national-2024.parquet" in line

        _wait_for(staged, proc)  # rows are in the staging table inside the open transaction
        _kill(proc)
        assert _tables(wh) == before


class TestConcurrentBuild:
    def test_second_build_is_refused_with_a_clear_message(self, tmp_path: Path, tmp_path_factory) -> None:
        small_input = _ingested(tmp_path, tmp_path_factory)
        proc = subprocess.Popen(
            _build_cmd(small_input, tmp_path, "--pref", "31", "--quiet"),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lock = tmp_path / ".site.tsunagari-lock"
        try:
            _wait_for(lambda: lock.exists() and lock.read_text().strip() == str(proc.pid), proc)
            second = subprocess.run(
                _build_cmd(small_input, tmp_path, "--pref", "31", "--quiet"),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert second.returncode == 1
            assert f"another build is writing {tmp_path / 'site'} (pid {proc.pid})" in second.stderr
        finally:
            proc.wait(timeout=600)
        assert proc.returncode == 0


class TestRebuildWarehouse:
    def test_rebuild_from_raw_files_reproduces_the_tables(self, tmp_path: Path, small_input: Path) -> None:
        inp = tmp_path / "in"
        shutil.copytree(small_input, inp)
        wh = tmp_path / "wh.duckdb"
        ingest_dir(inp, wh)
        before = _tables(wh)
        con = duckdb.connect(str(wh))
        con.execute("DELETE FROM survey_responses WHERE pref_code = 13")  # damage
        con.close()
        result = rebuild_warehouse(wh)
        assert _tables(wh) == before
        assert result.backup is not None and result.backup.exists()
        assert sorted(result.files) == sorted(r[1] for r in before["files"])

    def test_changed_raw_file_stops_the_rebuild(self, tmp_path: Path, small_input: Path) -> None:
        inp = tmp_path / "in"
        shutil.copytree(small_input, inp)
        wh = tmp_path / "wh.duckdb"
        ingest_dir(inp, wh)
        before = _tables(wh)
        with open(inp / "programme.csv", "ab") as f:
            f.write(b"\n")
        with pytest.raises(DataError) as err:
            rebuild_warehouse(wh)
        assert str(err.value).startswith(
            f"{inp / 'programme.csv'}: raw file changed since it was loaded (sha256 differs) / 読み込み後に元ファイルが変更されています"
        )
        assert _tables(wh) == before

    def test_cli(self, tmp_path: Path, small_input: Path) -> None:
        wh = tmp_path / "wh.duckdb"
        ingest_dir(small_input, wh)
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "rebuild-warehouse", "--warehouse", str(wh)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "rebuilt" in proc.stdout and "7 raw file(s)" in proc.stdout


class TestStagingIsScratch:
    def test_staging_tables_are_empty_after_a_load_and_after_a_rejected_load(
        self, tmp_path: Path, small_input: Path
    ) -> None:
        wh = tmp_path / "wh.duckdb"
        ingest_dir(small_input, wh)

        def staged_rows() -> int:
            con = duckdb.connect(str(wh), read_only=True)
            try:
                return sum(
                    con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("staging_survey", "staging_programme")
                )
            finally:
                con.close()

        assert staged_rows() == 0  # no dead copy of the last load doubling the warehouse
        bad = tmp_path / "bad"
        bad.mkdir()
        df = national_round(2024, rows=500, seed=3)
        df.loc[df.index[:3], "age"] = 130  # critical validation failure
        df.to_csv(bad / "national-2024.csv", index=False)
        with pytest.raises(DataError):
            ingest_dir(bad, wh)
        assert staged_rows() == 0


# --- Stop signals and load: nothing of the build outlives it ---------------------------------------


def _lock_is_free(lock: Path) -> bool:
    import fcntl

    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*")) if p.is_file()
    }


STOPS = {
    "ctrl-c": ("SIGINT", True),
    "sigterm": ("SIGTERM", False),
    "sigkill": ("SIGKILL", False),
    "sigkill-group": ("SIGKILL", True),
}


class TestStopSignals:
    @pytest.mark.parametrize("how", list(STOPS))
    def test_stopped_build_leaves_no_process_no_temporary_file_and_publishes_nothing(
        self, tmp_path: Path, tmp_path_factory, how: str
    ) -> None:
        """Ctrl-C (SIGINT to the whole foreground group), SIGTERM to the build, SIGKILL to the
        build, while two workers execute reports: the build exits (130 with one line; -9), and
        soon after no process it started is left, its temporary folder is empty, nothing was
        published, the lock is free and nothing writes to the staging folder any more. SIGKILL to
        the whole group: no process is left either (the kernels die with their workers), and the
        pool's folder, which nothing could remove, is removed by the next build's."""
        name, group = STOPS[how]
        small_input = _ingested(tmp_path, tmp_path_factory)  # no site yet: the build makes the first one
        tmp = tmp_path / "tmp"
        tmp.mkdir()
        proc = subprocess.Popen(
            _build_cmd(
                small_input,
                tmp_path,
                "--jobs",
                "2",
                "--pref",
                "31",
                "--pref",
                "13",
                "--pref",
                "1",
                "--pref",
                "0",
                "--quiet",
            ),
            env={**os.environ, "TMPDIR": str(tmp)},
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        log = tmp_path / ".site.tsunagari-work" / "build.log"
        try:
            # The reports are running: the indicators are done and the workers' kernels are up.
            _wait_for(
                lambda: (
                    log.exists()
                    and "指標 done in" in log.read_text(encoding="utf-8")
                    and any("ipykernel" in p for p in with_tmpdir(tmp))
                ),
                proc,
                timeout=900,
            )
            (os.killpg if group else os.kill)(proc.pid, getattr(signal, name))
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                _kill(proc)
        if name == "SIGKILL":
            assert proc.returncode == -9
        else:
            assert proc.returncode == 130, err[-3000:]
            assert err.strip().splitlines()[-1] == f"中断しました / interrupted ({name})"
            assert "Traceback" not in err, err[-3000:]
        poll(lambda: not with_tmpdir(tmp), 60, f"the build's processes to end: {with_tmpdir(tmp)}")
        if how == "sigkill-group":
            (left,) = tmp.iterdir()
            assert left.name.startswith("tsunagari-")
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from pipelines.executor import new_private_dir as n, remove_private_dir as r; r(n())",
                ],
                env={**os.environ, "TMPDIR": str(tmp)},
                check=True,
            )
        poll(lambda: not any(tmp.iterdir()), 30, f"the temporary folder to be emptied: {list(tmp.rglob('*'))}")
        assert not (tmp_path / "site").exists()  # nothing published
        assert _lock_is_free(tmp_path / ".site.tsunagari-lock")
        kept = (tmp_path / ".site.tsunagari-new", tmp_path / ".site.tsunagari-work")  # for the next build
        before = [_snapshot(d) for d in kept]
        time.sleep(3)
        assert [_snapshot(d) for d in kept] == before  # and nobody writes to them any more


@pytest.mark.slow
class TestBuildUnderLoad:
    def test_cold_build_beside_six_busy_processes(self, tmp_path: Path, small_input: Path) -> None:
        """A cold build with six CPU-bound processes beside it (on 2 cores: load 6 and more)
        succeeds; --jobs 8 for two reports starts two kernels, not eight; afterwards no process of
        the build is alive and its temporary folder is empty. No timing is asserted."""
        tmp = tmp_path / "tmp"
        tmp.mkdir()
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(6)]
        most, stop = [0], threading.Event()

        def count() -> None:
            while not stop.is_set():
                most[0] = max(most[0], sum("ipykernel" in p for p in with_tmpdir(tmp)))
                time.sleep(0.2)

        counter = threading.Thread(target=count)
        counter.start()
        try:
            build = subprocess.run(
                _build_cmd(small_input, tmp_path, "--jobs", "8", "--pref", "31", "--pref", "13", "--quiet"),
                env={**os.environ, "TMPDIR": str(tmp)},
                capture_output=True,
                text=True,
                timeout=3600,
            )
        finally:
            stop.set()
            counter.join()
            for p in busy:
                p.kill()
                p.wait()
        assert build.returncode == 0, build.stderr[-3000:]
        for rel in ("prefectures/31-tottori.pdf", "prefectures/13-tokyo.html", "index.html"):
            assert (tmp_path / "site" / rel).is_file(), rel
        assert 1 <= most[0] <= 2
        poll(lambda: not with_tmpdir(tmp), 60, f"the build's processes to end: {with_tmpdir(tmp)}")
        assert list(tmp.iterdir()) == []


STUCK_SCRIPT = """
import hashlib, sys, threading, time
from pathlib import Path
from pipelines import interrupt
interrupt.install(grace=float(sys.argv[2]))
interrupt.on_stop(lambda: Path(sys.argv[1]).write_text("stopped"))
main = threading.main_thread().ident

def ready():   # say so once the main thread is inside the C call
    while sys._current_frames()[main].f_code.co_name != "stuck":
        time.sleep(0.01)
    time.sleep(0.5)
    print("ready", flush=True)

def stuck():
    hashlib.pbkdf2_hmac("sha256", b"x", b"y", 2**31 - 1)   # C code, minutes long, GIL released

threading.Thread(target=ready, daemon=True).start()
stuck()
print("not reached", flush=True)
"""

DEFERRED_SCRIPT = """
import os, signal, time
from pipelines import interrupt
interrupt.install()
try:
    with interrupt.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
        print("block finished", flush=True)
except interrupt.Interrupted as exc:
    print("raised after the block", signal.Signals(exc.signum).name, flush=True)
"""

CHILDREN_SCRIPT = """
import subprocess, sys
from pipelines import interrupt
interrupt.install()
show = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"]
with interrupt.children_ignore_interrupts():
    inside = subprocess.run(show, capture_output=True, text=True).stdout.strip()
outside = subprocess.run(show, capture_output=True, text=True).stdout.strip()
print(inside, outside, sep="|")
"""


def _script(tmp_path: Path, text: str, *args: str, **kwargs) -> subprocess.Popen:
    path = tmp_path / "script.py"
    path.write_text(text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, str(path), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


class TestStopMechanism:
    """pipelines.engine.interrupt on its own, in real processes receiving real signals."""

    def test_main_thread_stuck_in_c_code_still_stops(self, tmp_path: Path) -> None:
        """The main thread is inside C code, where Python cannot run a signal handler: the stop
        actions run at once anyway (from the thread the signal wakes), and the process ends with
        the line and 130 when the grace period is over."""
        marker = tmp_path / "stopped"
        proc = _script(tmp_path, STUCK_SCRIPT, str(marker), "2")
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        poll(marker.exists, 30, "the stop actions to run")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err == "中断しました / interrupted (SIGTERM)\n"
        assert "not reached" not in out

    def test_a_second_signal_ends_the_process_at_once(self, tmp_path: Path) -> None:
        marker = tmp_path / "stopped"
        proc = _script(tmp_path, STUCK_SCRIPT, str(marker), "3600")
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        poll(marker.exists, 30, "the stop actions to run")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # not the 3600 s grace
        assert proc.returncode == 130, err
        assert err == "中断しました / interrupted (SIGINT)\n"

    def test_a_signal_inside_deferred_raises_when_the_block_ends(self, tmp_path: Path) -> None:
        out, err = _script(tmp_path, DEFERRED_SCRIPT).communicate(timeout=60)
        assert out.splitlines() == ["block finished", "raised after the block SIGTERM"], err

    def test_children_started_inside_ignore_sigint(self, tmp_path: Path) -> None:
        out, err = _script(tmp_path, CHILDREN_SCRIPT).communicate(timeout=60)
        assert out.strip() == "True|False", err
