"""Warm-kernel papermill execution (pipelines/engine/kernels.py) on real kernels."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

from pipelines.domain import config
from pipelines.engine.kernels import (
    Task,
    WarmKernel,
    WarmPool,
    kernel_timeout,
    new_private_dir,
    remove_private_dir,
    run_tasks,
)
from tests.process_helpers import alive, poll, with_cmdline

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("name = 'default'\nvalue = 0")
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import os\n"
        "leaked = 'marker' in globals()\n"
        "marker = name\n"
        "if name == 'bad':\n"
        "    raise ValueError('boom in ' + name)\n"
        "print(f'{name}:{value * 2}:leaked={leaked}:cwd={os.path.basename(os.getcwd())}')"
    )
    nb.cells = [params, body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def _stdout(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


class TestRunTasks:
    def test_namespace_reset_parameters_injected_and_failures_collected(self, tmp_path: Path) -> None:
        src = _notebook(tmp_path / "nb.ipynb")
        (tmp_path / "wd").mkdir()
        names = ["a", "b", "bad", "c", "d"]
        tasks = [
            Task(n, src, tmp_path / "out" / f"{n}.ipynb", {"name": n, "value": i}, cwd=tmp_path / "wd")
            for i, n in enumerate(names)
        ]
        outcomes = run_tasks(tasks, jobs=2)
        assert [o.key for o in outcomes] == names
        assert [o.ok for o in outcomes] == [True, True, False, True, True], [o.error for o in outcomes]
        assert "ValueError: boom in bad" in outcomes[2].error
        for i, n in enumerate(names):
            if n == "bad":
                continue
            # Parameters injected by papermill; nothing left over from the previous area; cwd set.
            assert _stdout(tmp_path / "out" / f"{n}.ipynb").strip() == f"{n}:{i * 2}:leaked=False:cwd=wd"
            nb = nbformat.read(str(tmp_path / "out" / f"{n}.ipynb"), as_version=4)
            tags = [c.metadata.get("tags", []) for c in nb.cells]
            assert ["injected-parameters"] in tags  # a papermill record
            assert not any("tsunagari-reset" in t for t in tags)  # the reset cell is not in the record
            assert "papermill" in nb.metadata

    @pytest.mark.parametrize("jobs", [1, 2])
    def test_same_outputs_for_any_number_of_jobs(self, tmp_path: Path, jobs: int) -> None:
        src = _notebook(tmp_path / "nb.ipynb")
        tasks = [Task(n, src, tmp_path / f"{n}.ipynb", {"name": n, "value": 3}) for n in ("x", "y", "z")]
        outcomes = run_tasks(tasks, jobs=jobs)
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        assert [_stdout(tmp_path / f"{n}.ipynb").split(":")[:3] for n in ("x", "y", "z")] == [
            [n, "6", "leaked=False"] for n in ("x", "y", "z")
        ]


class TestWarmPoolClose:
    def test_close_in_the_background_then_waiting_leaves_no_worker(self) -> None:
        """close(wait=False) (the build lets kernels stop while it writes the site) followed by
        close() must wait for every worker: shutting the executor down twice used to return at once
        and left workers waiting for their stop signal, hanging the process at exit."""
        pool = WarmPool(2)
        for f in pool._warming:
            f.result()
        procs = list(pool.pool._processes.values())
        pool.close(wait=False)
        pool.close()
        assert len(procs) == 2
        assert not any(p.is_alive() for p in procs)

    def test_workers_stop_their_kernels_then_leave_without_interpreter_teardown(self, tmp_path: Path) -> None:
        """A worker stops its kernel as it exits, then leaves with os._exit: the interpreter's
        teardown (0.15 s with pandas and jupyter loaded, waited for at the end of every build) is
        skipped, so an atexit handler of the worker does not run. The pool's private folder (the
        kernel's sockets and connection file) is removed."""
        import atexit

        import psutil

        pool = WarmPool(1)
        pid = pool._warming[0].result()
        kernels = psutil.Process(pid).children(recursive=True)
        assert kernels, "the worker has a kernel"
        marker = tmp_path / "teardown-ran"
        pool.pool.submit(atexit.register, os.mkdir, str(marker)).result()
        (proc,) = pool.pool._processes.values()
        pool.close()
        assert proc.exitcode == 0
        assert not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kernels)
        assert not pool.folder.exists()
        assert not marker.exists()


# --- Lifecycle: readiness under load, failed starts, private folders, dying with the build --------

# Run in a kernel at start-up (IPKernelApp.exec_lines): each kernel_info request is answered 1.5 s
# late, as by a kernel on a machine at load 15 (the shell handler blocks the kernel's loop, so
# requests queue up behind it).
SLOW_KERNEL_INFO = (
    "import time\n"
    "_k = get_ipython().kernel\n"
    "_answer = _k.shell_handlers['kernel_info_request']\n"
    "async def _late(*args, **kwargs):\n"
    "    time.sleep(1.5)\n"
    "    return await _answer(*args, **kwargs)\n"
    "_k.shell_handlers['kernel_info_request'] = _late\n"
)
# A kernel that never answers kernel_info (a start that times out).
MUTE_KERNEL_INFO = (
    "_k = get_ipython().kernel\n"
    "async def _mute(*args, **kwargs):\n"
    "    return None\n"
    "_k.shell_handlers['kernel_info_request'] = _mute\n"
)


def _exec_lines(code: str) -> str:
    return f"--IPKernelApp.exec_lines={code}"


class TestWarmKernelStart:
    def test_a_reply_later_than_the_resend_interval_is_accepted(self) -> None:
        """The readiness loop resends kernel_info every second; it used to accept only the reply
        to its latest request, so a kernel answering each request 1.5 s late was never ready
        ("Kernel didn't respond in 60 seconds" on a busy machine)."""
        kernel = WarmKernel(extra_args=[_exec_lines(SLOW_KERNEL_INFO)])
        try:
            kernel.start(timeout=120)
            assert kernel.alive()
            kc = kernel.km.client()
            kc.start_channels()
            try:  # the kernel really is that slow
                start = time.monotonic()
                msg_id = kc.kernel_info()
                while True:
                    reply = kc.get_shell_msg(timeout=60)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        break
                assert time.monotonic() - start >= 1.4
            finally:
                kc.stop_channels()
            assert kernel.run("x = 1")
        finally:
            kernel.shutdown()
        assert len(kernel.started) == 1

    def test_a_failed_start_kills_its_kernel_before_the_next_attempt(self) -> None:
        folder = new_private_dir()
        kernel = WarmKernel(folder=folder, extra_args=[_exec_lines(MUTE_KERNEL_INFO)], retries=2)
        most, stop = [0], threading.Event()

        def count() -> None:  # kernels alive at once (their command line names the folder)
            while not stop.is_set():
                most[0] = max(most[0], len(with_cmdline(str(folder))))
                time.sleep(0.05)

        counter = threading.Thread(target=count)
        counter.start()
        try:
            with pytest.raises(RuntimeError) as err:
                kernel.start(timeout=4)
        finally:
            stop.set()
            counter.join()
        assert str(err.value) == "could not start a Jupyter kernel after 2 attempts: Kernel didn't respond in 4 seconds"
        assert len(kernel.started) == 2
        assert not any(alive(pid) for pid in kernel.started)
        assert most[0] == 1
        assert [p.name for p in folder.iterdir()] == [".tsunagari-owner"]  # connection files, sockets removed
        remove_private_dir(folder)
        assert not folder.exists()


class TestKernelTimeout:
    @pytest.mark.parametrize("raw", ["abc", "0", "-5", "nan", "inf"])
    def test_a_bad_value_is_a_usage_error_naming_the_variable(self, monkeypatch, raw: str) -> None:
        monkeypatch.setenv("TSUNAGARI_KERNEL_TIMEOUT", raw)
        with pytest.raises(config.SettingsError) as err:
            kernel_timeout()
        assert str(err.value) == (
            f"TSUNAGARI_KERNEL_TIMEOUT: run.kernel_timeout = '{raw}': must be a number of "
            f"seconds greater than 0 / 0 より大きい秒数を指定してください"
        )

    def test_the_variable_sets_it(self, monkeypatch) -> None:
        monkeypatch.setenv("TSUNAGARI_KERNEL_TIMEOUT", "2.5")
        assert kernel_timeout() == 2.5

    def test_default_grows_with_the_load_per_core(self, monkeypatch) -> None:
        monkeypatch.delenv("TSUNAGARI_KERNEL_TIMEOUT", raising=False)
        monkeypatch.setattr(os, "getloadavg", lambda: (15.0, 0.0, 0.0))
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        assert kernel_timeout() == 120 * 7.5
        monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.0, 0.0))
        assert kernel_timeout() == 120
        monkeypatch.setattr(os, "getloadavg", lambda: (80.0, 0.0, 0.0))
        assert kernel_timeout() == 900

    def test_cli_exits_2_before_building(self, tmp_path: Path) -> None:
        env = {**os.environ, "TSUNAGARI_KERNEL_TIMEOUT": "soon"}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "build",
                "--out",
                str(tmp_path / "site"),
                "--warehouse",
                str(tmp_path / "wh.duckdb"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines()[-1] == (
            "error: TSUNAGARI_KERNEL_TIMEOUT: run.kernel_timeout = 'soon': must be a number of seconds greater "
            "than 0 / 0 より大きい秒数を指定してください"
        )
        assert not (tmp_path / "wh.duckdb").exists() and not (tmp_path / ".site.tsunagari-new").exists()


class TestWarmPoolLifecycle:
    def test_private_folder_holds_the_kernel_files_and_is_removed_at_close(self, tmp_path: Path, monkeypatch) -> None:
        # a short folder: under pytest-xdist tmp_path is too long for IPC socket paths (TCP is used then)
        tmp = Path(tempfile.mkdtemp(prefix="tsg-", dir="/tmp"))
        request_cleanup = lambda: shutil.rmtree(tmp, ignore_errors=True)  # noqa: E731
        monkeypatch.setenv("TMPDIR", str(tmp))
        monkeypatch.setattr(tempfile, "tempdir", None)
        pool = WarmPool(1)
        pool._warming[0].result()
        assert pool.folder.parent == tmp
        assert pool.folder.stat().st_mode & 0o777 == 0o700  # (jupyter_client adds the sticky bit)
        names = {p.name for p in pool.folder.iterdir()}
        assert any(n.endswith(".json") for n in names)  # the kernel's connection file
        assert any(n.rsplit("-", 1)[-1].isdigit() for n in names)  # its IPC sockets
        assert "tmp" in names  # the worker's TMPDIR
        pool.close()
        try:
            assert os.listdir(tmp) == []
        finally:
            request_cleanup()

    def test_orphaned_private_folders_are_removed_by_the_next(self, tmp_path: Path, monkeypatch) -> None:
        """A build killed with its whole process group (nothing of it could clean up) leaves its
        pool's folder; the next private folder created removes it: ours (an owner file we can
        read) and its owner gone (pid dead, or reused by a process started at another time)."""
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        monkeypatch.setattr(tempfile, "tempdir", None)
        dead = subprocess.Popen(["true"])
        dead.wait()
        with open(f"/proc/{os.getpid()}/stat", "rb") as fh:
            started = fh.read().rsplit(b")", 1)[1].split()[19].decode()
        owners = {
            "tsunagari-dead": f"{dead.pid} {started}",
            "tsunagari-reused": f"{os.getpid()} 1",
            "tsunagari-live": f"{os.getpid()} {started}",
            "tsunagari-ast-x": None,
        }
        for name, owner in owners.items():
            (tmp_path / name).mkdir()
            if owner is not None:
                (tmp_path / name / ".tsunagari-owner").write_text(owner, encoding="utf-8")
        new = new_private_dir()
        try:
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tsunagari-live", "tsunagari-ast-x", new.name])
        finally:
            remove_private_dir(new)

    def test_terminate_kills_workers_and_kernels_at_once(self) -> None:
        import psutil

        pool = WarmPool(2)
        workers = {f.result() for f in pool._warming}
        procs = [p.pid for w in workers for p in [psutil.Process(w)] + psutil.Process(w).children(recursive=True)]
        assert len(procs) >= 4  # two workers, two kernels
        pool.terminate()
        poll(lambda: not any(alive(p) for p in procs), 30, "the workers and kernels to be gone")
        assert not pool.folder.exists()
        pool.close()  # after terminate: nothing to do, no error

    def test_close_does_not_wait_for_a_worker_still_warming_up(self) -> None:
        """--jobs 8 for one report: a worker still starting (here: warming up for 10 minutes) is
        killed at close instead of being waited for."""
        pool = WarmPool(1, warm=functools.partial(time.sleep, 600))
        poll(lambda: pool._pids and with_cmdline(str(pool.folder)), 300, "the worker's kernel")
        kernels = with_cmdline(str(pool.folder))
        pool.close()
        assert not any(alive(p) for p in kernels + sorted(pool._pids))
        assert not pool.folder.exists()


ORPHAN_SCRIPT = """
import sys, time
from pipelines.executor import WarmPool, WarmKernel
if __name__ == "__main__":
    if sys.argv[1] == "pool":
        pool = WarmPool(1)
        worker = pool._warming[0].result()
        print(pool.folder, worker, flush=True)
    else:
        kernel = WarmKernel()
        kernel.start()
        print(kernel.folder, kernel.km.provisioner.process.pid, flush=True)
    time.sleep(600)
"""


class TestDyingWithTheStarter:
    @pytest.mark.parametrize("what", ["pool", "kernel"])
    def test_sigkilled_starter_leaves_no_worker_or_kernel(self, tmp_path: Path, what: str) -> None:
        """The process that started a pool (or a kernel) is SIGKILLed: nothing of it could stop
        them. The workers notice (watchdog) and kill their kernels and remove the pool's folder;
        a kernel gets SIGKILL from the kernel (PR_SET_PDEATHSIG) and ipykernel's parent poller."""
        import psutil

        script = tmp_path / "starter.py"
        script.write_text(ORPHAN_SCRIPT, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, str(script), what],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            folder, child = proc.stdout.readline().split()
            procs = [int(child)] + [p.pid for p in psutil.Process(int(child)).children(recursive=True)]
            assert len(procs) == (2 if what == "pool" else 1)
        finally:
            proc.kill()
            proc.wait()
        poll(lambda: not any(alive(p) for p in procs), 60, "the orphans to exit")
        if what == "pool":
            poll(lambda: not Path(folder).exists(), 30, "the pool's folder to be removed")


def test_the_private_jupyter_client_names_the_warm_kernel_relies_on_still_exist():
    """pipelines/engine/kernels.py overrides or calls three private names of jupyter_client (pinned to
    major version 8 in pyproject.toml): an upgrade that drops one must fail here, not in a build."""
    from jupyter_client.blocking.client import BlockingKernelClient
    from jupyter_client.manager import AsyncKernelManager, KernelManager

    assert callable(getattr(BlockingKernelClient, "_handle_kernel_info_reply", None))
    for cls in (KernelManager, AsyncKernelManager):
        assert callable(getattr(cls, "_async_launch_kernel", None)), cls
        assert isinstance(getattr(cls, "kernel_spec", None), property), cls


def test_pool_workers_are_found_by_their_environment_not_by_private_executor_state(tmp_path):
    """The pool names itself in its workers' environment (POOL_ENV): terminate() finds and kills
    them without ProcessPoolExecutor's private `_processes`."""
    import os
    import time

    from pipelines.engine import interrupt
    from pipelines.engine.kernels import POOL_ENV, WarmPool

    pool = WarmPool(jobs=2)
    try:
        # A worker is found once it has started its program: between fork and exec its
        # /proc/PID/environ still shows the parent's initial environment (a moment, longer on a
        # busy machine), so the scan is repeated for a while, as terminate() scans again.
        deadline = time.monotonic() + 30
        while True:
            found = interrupt.with_environ(f"{POOL_ENV}={pool.folder}")
            pool._note_workers()
            if len(set(found) & pool._pids) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(set(found) & pool._pids) >= 2, (found, pool._pids)
        assert POOL_ENV not in os.environ  # set only while the workers start
    finally:
        pool.terminate()
    deadline = time.monotonic() + 10
    while interrupt.with_environ(f"{POOL_ENV}={pool.folder}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert interrupt.with_environ(f"{POOL_ENV}={pool.folder}") == []


def test_the_pool_variable_does_not_change_the_code_fingerprint(monkeypatch):
    """A worker inherits POOL_ENV, which names a new folder every build: the fingerprint (and so
    every round's input key) must not depend on it, or one corrected file rebuilds every round."""
    from pipelines.engine import fingerprint
    from pipelines.engine.kernels import POOL_ENV

    monkeypatch.delenv(POOL_ENV, raising=False)
    before = fingerprint.compute()
    monkeypatch.setenv(POOL_ENV, "/tmp/tsunagari-some-pool")
    assert fingerprint.compute() == before
