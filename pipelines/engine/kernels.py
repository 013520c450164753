"""Warm-kernel papermill execution for many areas.

A fresh Jupyter kernel per notebook costs its start plus the imports (pandas, matplotlib, duckdb).
Each worker process here keeps one kernel alive and executes notebook after notebook in it,
resetting the user namespace (``%reset -f``) between areas. Parameters are still injected by
papermill (``papermill.execute_notebook(..., km=...)``), so every executed notebook remains a
papermill record (``injected-parameters`` cell, papermill metadata).

Known papermill failures under parallel load (kernel start timeouts, a kernel that dies) get a
bounded retry with a fresh kernel; an error raised by the notebook itself is not retried.

Lifecycle (the build must hold on a busy machine and stop cleanly):

- Readiness accepts the reply to any ``kernel_info`` request sent (a reply later than the resend
  interval still counts); the start timeout is `kernel_timeout()`: the setting run.kernel_timeout
  (``$TSUNAGARI_KERNEL_TIMEOUT``) in seconds, else 120 s times the load per core. A kernel whose start failed is killed (its process
  group) and its files removed before the next attempt: a worker never has more than one kernel.
- Each pool has a private folder (``mkdtemp``: mode 0700) for its kernels' sockets and connection
  files and its workers' temporary files (``TMPDIR`` of the workers and so of their kernels and
  renderers), removed when the pool closes or is terminated.
- A kernel dies with the process that started it (``PR_SET_PDEATHSIG`` on Linux, and ipykernel's
  own parent poller); a worker polls its parent and, when the build is gone (even SIGKILLed), kills
  what it started, removes the pool's folder and exits. `WarmPool.terminate` (the build's Ctrl-C /
  SIGTERM path, pipelines/engine/interrupt.py) kills the workers and everything they started at once.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from pipelines.engine import interrupt

log = logging.getLogger("tsunagari.executor")

KERNEL_START_RETRIES = 3
# No input history database in the warm kernels: it is never read, and each cell would write to it.
KERNEL_ARGS = ["--HistoryManager.enabled=False"]
KERNEL_NAME = "python3"
KERNEL_TIMEOUT_BASE = 120.0  # seconds on an idle machine; times the load per core when busier
KERNEL_TIMEOUT_MAX = 900.0
PRIVATE_PREFIX = "tsunagari-"
SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 107 bytes; keep a margin
WATCHDOG_SECONDS = 0.5
CLOSE_GRACE = 15.0  # seconds idle workers get to stop by themselves at close()


@dataclass
class Task:
    key: str  # e.g. the area slug
    src: Path
    dst: Path
    parameters: dict[str, Any]
    cwd: Path | None = None
    after: Callable[..., Any] | None = None  # run in the worker after execution (e.g. rendering)
    after_args: tuple = ()


@dataclass
class Outcome:
    key: str
    ok: bool
    seconds: float
    error: str | None = None
    result: Any = None
    attempts: int = 1


def kernel_timeout() -> float:
    """Seconds to wait for a kernel to start and answer: the setting run.kernel_timeout
    (``$TSUNAGARI_KERNEL_TIMEOUT``) when set, else 120 s scaled by the 1-minute load average per core
    (a machine at load 15 on 2 cores waits up to 900 s; an idle one 120 s). A start normally takes
    far less: the timeout only bounds how long a kernel that never answers holds a worker."""
    from pipelines.domain.config import settings

    value = settings().kernel_timeout
    if value is not None:
        return value
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return min(KERNEL_TIMEOUT_MAX, KERNEL_TIMEOUT_BASE * max(1.0, load / (os.cpu_count() or 1)))


# --- Private folders ------------------------------------------------------------------------------

_PRIVATE: set[str] = set()  # folders this process created and has not removed yet


OWNER_FILE = ".tsunagari-owner"


def new_private_dir() -> Path:
    """A new folder in the temporary folder that only this user can enter (mode 0700), removed by
    `remove_private_dir`, at exit, or when a stop signal arrives. It names its owner (this
    process: pid and start time), so that the next one created removes it if its owner was killed
    with everything it started (SIGKILL to the whole process group: nothing could clean up)."""
    _remove_orphaned_dirs()
    folder = tempfile.mkdtemp(prefix=PRIVATE_PREFIX)
    Path(folder, OWNER_FILE).write_text(_process_identity(os.getpid()) or "", encoding="utf-8")
    _PRIVATE.add(folder)
    return Path(folder)


def _process_identity(pid: int) -> str | None:
    """'pid start-time' of a live process (start time in clock ticks since boot, from /proc: a
    reused pid has another), None when there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return None if fields[0] == b"Z" else f"{pid} {int(fields[19])}"


def _remove_orphaned_dirs() -> None:
    """Remove private folders (ours: they hold an owner file we can read) whose owner is gone."""
    for folder in Path(tempfile.gettempdir()).glob(PRIVATE_PREFIX + "*"):
        try:
            owner = (folder / OWNER_FILE).read_text(encoding="utf-8").split()
        except OSError:  # not one of these folders, or another user's
            continue
        if len(owner) == 2 and owner[0].isdigit() and _process_identity(int(owner[0])) != " ".join(owner):
            shutil.rmtree(folder, ignore_errors=True)


def remove_private_dir(folder: Path | str | None) -> None:
    if folder is None:
        return
    shutil.rmtree(folder, ignore_errors=True)
    _PRIVATE.discard(str(folder))


def _remove_private_dirs() -> None:
    for folder in list(_PRIVATE):
        remove_private_dir(folder)


def _register_cleanup() -> None:
    interrupt.at_exit(_remove_private_dirs)
    interrupt.on_stop(_remove_private_dirs, order=50)  # after the processes using them are killed


_register_cleanup()


# --- Kernels --------------------------------------------------------------------------------------


def die_with_parent() -> Callable[[], None] | None:
    """A Popen ``preexec_fn`` that makes the child get SIGKILL when the calling thread's process
    dies (Linux ``prctl(PR_SET_PDEATHSIG)``), and exit at once if it died already. None where
    unavailable, or off the main thread (the signal follows the thread that started the child,
    and any other thread may end before the process does)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return preexec


def _quick_ready_client_class():
    from jupyter_client.blocking.client import BlockingKernelClient

    class QuickReadyClient(BlockingKernelClient):
        """A client whose readiness check does not idle, and holds on a busy machine.

        papermill connects a new client to the warm kernel for every notebook, and jupyter_client's
        wait_for_ready ends by waiting 0.2 s for IOPub to stay silent: 0.2 s of every area's time
        with nothing running. This keeps the checks (kernel_info answered on shell, then a message
        seen on IOPub, so the subscription is live before the first cell runs) and drops what is
        left on IOPub without waiting; a leftover message would be ignored anyway, nbclient matches
        parent ids. A reply to any kernel_info request sent here counts, however late: under load a
        reply may take longer than the resend interval, and requiring the latest request's reply
        then never matched. The resend interval grows (1 s, 1.5 s, ... 5 s) so that a slow kernel
        is not flooded."""

        def wait_for_ready(self, timeout: float | None = None) -> None:
            from queue import Empty

            timeout = kernel_timeout() if timeout is None else timeout
            deadline = time.monotonic() + timeout
            sent: set[str] = set()
            replied = False
            interval = 1.0
            while True:
                sent.add(self.kernel_info())  # (again: its status messages also reach IOPub)
                until = min(deadline, time.monotonic() + interval)
                while not replied and time.monotonic() < until:
                    try:
                        msg = self.get_shell_msg(timeout=max(0.01, until - time.monotonic()))
                    except Empty:
                        break
                    if (
                        msg.get("msg_type") == "kernel_info_reply"
                        and msg.get("parent_header", {}).get("msg_id") in sent
                    ):
                        self._handle_kernel_info_reply(msg)
                        replied = True
                if replied:
                    try:  # any message on IOPub: the subscription is live
                        self.iopub_channel.get_msg(timeout=max(0.05, min(interval, deadline - time.monotonic())))
                    except Empty:
                        pass  # not yet (a slow joiner): ask again, the kernel publishes again
                    else:
                        break
                if not self.is_alive():  # the kernel process (asked of its manager)
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
                interval = min(interval * 1.5, 5.0)
            while True:
                try:
                    self.iopub_channel.get_msg(timeout=0)
                except Empty:
                    break

    return QuickReadyClient


def kernel_files(folder: Path, name: str) -> dict[str, str]:
    """KernelManager arguments that put a kernel's connection file and IPC sockets in `folder`
    (TCP on localhost when the folder's path is too long for a socket address)."""
    base = str(Path(folder) / name)
    args = {"connection_file": base + ".json"}
    if len(base) + 4 <= SOCKET_PATH_MAX:
        # IPC sockets instead of TCP ports: no port clashes between parallel workers.
        args.update(transport="ipc", ip=base)
    return args


_MANAGERS: dict[bool, type] = {}


def manager_class(asynchronous: bool = False):
    """A KernelManager for the build's kernels: ipykernel's spec bound to this interpreter (no
    kernelspec lookup or install; a user-level ``python3`` spec pointing to another Python cannot
    fool it), and a kernel that dies with the process that started it (`die_with_parent`)."""
    if asynchronous in _MANAGERS:
        return _MANAGERS[asynchronous]
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager, KernelManager

    class BuildKernelManager(AsyncKernelManager if asynchronous else KernelManager):
        @property
        def kernel_spec(self):  # type: ignore[override]
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())
            return self._kernel_spec

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            preexec = die_with_parent()
            if preexec is not None:
                kw.setdefault("preexec_fn", preexec)
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return _MANAGERS.setdefault(asynchronous, BuildKernelManager)


def kill_kernel(km) -> None:
    """Kill a kernel and whatever it started (its process group: jupyter_client starts it in a
    new session), wait for it, and remove its connection and socket files."""
    if km is None:
        return
    prov = getattr(km, "provisioner", None)
    proc = getattr(prov, "process", None)
    if proc is not None:
        interrupt.kill([proc.pid])
        try:
            proc.wait(timeout=10)
        except Exception:
            pass
    try:
        km.cleanup_resources()
    except Exception:
        # e.g. the start failed before there was anything to clean: remove the files we know of
        for path in [getattr(km, "connection_file", "")] + [f"{km.ip}-{p}" for p in km.ports if km.transport == "ipc"]:
            if path:
                try:
                    os.remove(path)
                except OSError:
                    pass


class WarmKernel:
    """One kernel kept alive across notebook executions in this process; its sockets and
    connection file in `folder` (default: a private folder of this process)."""

    def __init__(
        self, folder: Path | None = None, extra_args: list[str] | None = None, retries: int = KERNEL_START_RETRIES
    ) -> None:
        self.km = None
        self.folder = folder
        self.extra_args = list(extra_args or [])
        self.retries = retries
        self.started: list[int] = []  # pid of every kernel process started (also failed starts)

    def start(self, timeout: float | None = None) -> None:
        timeout = kernel_timeout() if timeout is None else timeout
        if self.folder is None:
            self.folder = _process_folder()
        last: Exception | None = None
        for attempt in range(1, self.retries + 1):
            km = None
            try:
                name = f"k{os.getpid()}-{len(self.started) + 1}"
                km = manager_class()(**kernel_files(self.folder, name))
                km.client_factory = _quick_ready_client_class()
                km.start_kernel(extra_arguments=KERNEL_ARGS + self.extra_args)
                self.started.append(km.provisioner.process.pid)
                kc = km.client()
                kc.start_channels()
                try:
                    kc.wait_for_ready(timeout=timeout)
                finally:
                    kc.stop_channels()
                self.km = km
                return
            except Exception as exc:  # start timeout, a kernel that died, a socket clash
                last = exc
                kill_kernel(km)  # before the next attempt: never two kernels for one worker
                log.warning("kernel start failed (attempt %d/%d): %s", attempt, self.retries, exc)
                if attempt < self.retries:
                    time.sleep(0.5 * attempt)
        raise RuntimeError(f"could not start a Jupyter kernel after {self.retries} attempts: {last}")

    def run(self, code: str, timeout: float = 120.0) -> bool:
        """Execute `code` silently in the kernel (no output, no execution count); e.g. imports
        before the first notebook. Returns whether it ran without an error (a failure is logged:
        the notebooks will then do the imports themselves and report any real problem)."""
        kc = self.km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready()
            msg_id = kc.execute(code, silent=True, store_history=False)
            deadline = time.monotonic() + max(timeout, kernel_timeout())
            while True:
                reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    break
            ok = reply["content"].get("status") == "ok"
            if not ok:
                log.warning(
                    "kernel preload failed: %s: %s", reply["content"].get("ename"), reply["content"].get("evalue")
                )
            return ok
        except Exception as exc:
            log.warning("kernel preload failed: %s", exc)
            return False
        finally:
            kc.stop_channels()

    def alive(self) -> bool:
        return self.km is not None and self.km.is_alive()

    def shutdown(self) -> None:
        """Stop the kernel. It holds nothing worth a graceful exit (every record is written by
        then): kill it and wait for it (quicker than shutdown_kernel's request and wait), then remove
        its connection and socket files."""
        km, self.km = self.km, None
        kill_kernel(km)


_WARM: WarmKernel | None = None
_FOLDER: Path | None = None  # the pool's private folder (in a worker), else this process's own


def _process_folder() -> Path:
    global _FOLDER
    if _FOLDER is None or not _FOLDER.is_dir():
        _FOLDER = new_private_dir()
    return _FOLDER


def _worker_kernel() -> WarmKernel:
    global _WARM
    if _WARM is None or not _WARM.alive():
        if _WARM is not None:
            _WARM.shutdown()
        _WARM = WarmKernel(_process_folder())
        _WARM.start()
        from multiprocessing import util

        interrupt.at_exit(_WARM.shutdown)
        # Pool workers leave through multiprocessing's exit path, which skips atexit but runs
        # finalizers: shut the kernel down there too (it also removes its IPC socket files).
        util.Finalize(_WARM, _WARM.shutdown, exitpriority=10)
    return _WARM


RESET_TAG = "tsunagari-reset"


def _reset_code(cwd: Path | None) -> str:
    """Clear the user namespace (imports stay cached in sys.modules: that is the saving), close
    open figures, and move to `cwd`. Runs as a first cell that is removed from the record."""
    # After the reset (which ends with a full garbage collection) what is left is the imported
    # modules and their caches: gc.freeze() moves them out of the collector's way, so the next
    # reset and the collections during a report scan only that report's objects.
    code = (
        "get_ipython().run_line_magic('reset', '-f')\n"
        "import sys as _sys\n"
        "if 'matplotlib.pyplot' in _sys.modules: _sys.modules['matplotlib.pyplot'].close('all')\n"
        "import gc as _gc; _gc.freeze()\n"
    )
    if cwd is not None:
        code += f"import os as _os; _os.chdir({str(cwd)!r})\n"
    return code


def patience() -> dict[str, Any]:
    """papermill/nbclient arguments for a busy machine: the kernel start timeout, and as long to
    wait for a cell's output on IOPub after its reply. With nbclient's default of 4 s, papermill
    (which raises on that timeout) failed a report whose kernel was slow to publish its output
    ("Timeout waiting for IOPub output"); output that never arrives is still an error."""
    t = int(math.ceil(kernel_timeout()))  # nbclient's traits are integers
    return {"start_timeout": t, "iopub_timeout": t, "raise_on_iopub_timeout": True}


def execute_warm(src: Path, dst: Path, parameters: dict[str, Any], cwd: Path | None = None) -> Path:
    """Execute one notebook with papermill in this process's warm kernel; write it to `dst`."""
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    dst.parent.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        warm = _worker_kernel()
        nb = _source(Path(src))
        reset = nbformat.v4.new_code_cell(_reset_code(cwd))
        reset.metadata["tags"] = [RESET_TAG]
        nb.cells.insert(0, reset)
        try:
            out = pm.execute_notebook(
                nb,
                None,
                parameters=parameters,
                km=warm.km,
                kernel_name=KERNEL_NAME,
                progress_bar=False,
                log_output=False,
                request_save_on_cell_execute=False,
                **patience(),
            )
        except PapermillExecutionError as exc:
            # The notebook itself raised: keep the failed record for the reader, no retry.
            _write_record(getattr(exc, "nb", None), dst, src)
            raise
        except Exception as exc:
            if attempt == 2 or warm.alive():
                raise
            log.warning("kernel died while executing %s; retrying with a fresh kernel: %s", src, exc)
            continue
        _write_record(out, dst, src)
        return dst
    return dst


_SOURCES: dict[tuple, Any] = {}


def _source(src: Path):
    """A fresh copy of the notebook `src`, parsed once per worker while the file is unchanged."""
    import copy

    import nbformat

    from pipelines.domain.config import file_key

    key = file_key(src)
    if key not in _SOURCES:
        _SOURCES.clear()
        _SOURCES[key] = nbformat.read(str(src), as_version=4)
    return copy.deepcopy(_SOURCES[key])


def _write_record(nb, dst: Path, src: Path | None = None) -> None:
    import nbformat

    if nb is None:
        return
    nb.cells = [c for c in nb.cells if RESET_TAG not in c.get("metadata", {}).get("tags", [])]
    # Given a notebook object, papermill stores the whole object as `input_path`: a second copy of
    # the notebook with the reset cell and its absolute chdir path. The record is published: name
    # the source notebook instead.
    meta = nb.get("metadata", {}).get("papermill")
    if meta is not None and not isinstance(meta.get("input_path"), (str, type(None))):
        meta["input_path"] = Path(src).name if src is not None else None
    # A warm kernel's counter runs on from the previous notebook: number the record from 1, as a
    # fresh kernel would, so the record does not depend on which worker ran it.
    count = 0
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and cell.get("execution_count") is not None:
            count += 1
            cell["execution_count"] = count
            for out in cell.get("outputs", []):
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = count
    tmp = dst.with_suffix(".ipynb.tmp")
    nbformat.write(nb, str(tmp))
    tmp.replace(dst)


def _run_task(task: Task) -> Outcome:
    start = time.perf_counter()
    try:
        execute_warm(task.src, task.dst, task.parameters, task.cwd)
        result = task.after(*task.after_args) if task.after else None
        return Outcome(task.key, True, time.perf_counter() - start, result=result)
    except Exception as exc:
        return Outcome(task.key, False, time.perf_counter() - start, error=_short_error(exc))


def _short_error(exc: Exception) -> str:
    text = str(exc).strip()
    try:
        from papermill.exceptions import PapermillExecutionError

        if isinstance(exc, PapermillExecutionError):
            text = f"{exc.ename}: {exc.evalue} (cell {exc.exec_count})"
    except Exception:
        pass
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


WORKER_NICE = 5


def _worker_init(folder: str | None = None, parent: int | None = None) -> None:
    """Set a pool worker up. It yields to the build process (while the workers warm up, the build's
    own ingest and validation is the critical path); it ignores SIGINT (a Ctrl-C reaches the whole
    process group: the build stops the workers itself); its temporary files, and so those of its
    kernels and renderers, go to the pool's private `folder`; a watchdog thread ends it, and what it
    started, when its `parent` (the build) is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass
    if folder is not None:
        global _FOLDER
        _FOLDER = Path(folder)
        tmp = _FOLDER / "tmp"
        tmp.mkdir(exist_ok=True)
        os.environ["TMPDIR"] = str(tmp)
        tempfile.tempdir = None
    if parent is not None:
        threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()
    from multiprocessing import util

    # Last of the worker's exit finalizers (its kernel is stopped by one of priority 10): leave
    # without the interpreter's module-by-module teardown (slow with pandas, matplotlib and
    # jupyter_client loaded), which the build waited for at its end.
    util.Finalize(None, _leave, exitpriority=-100)


def _watch_parent(parent: int) -> None:
    """In a worker: when the build process is gone (killed, even with SIGKILL, so that nothing of
    it could stop us), kill what this worker started (its kernel, a renderer), remove the pool's
    folder and exit."""
    while os.getppid() == parent:
        time.sleep(WATCHDOG_SECONDS)
    interrupt.kill(interrupt.descendants([os.getpid()]))
    remove_private_dir(_FOLDER)
    os._exit(1)


def _leave() -> None:
    exit_now(0)


# In a pool worker's environment: the pool's folder. Internal plumbing (how the workers are found),
# not a user setting: it stays an environment variable and is not in pipelines/domain/config.py.
POOL_ENV = "TSUNAGARI_POOL"


@contextmanager
def temporary_env(name: str, value: str) -> Iterator[None]:
    """`name`=`value` in os.environ inside the block (processes started there inherit it)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def exit_now(code: int) -> None:
    """Flush stdout and stderr, then end the process with `code` at once: no interpreter teardown
    (slow with pandas, GX or jupyter_client loaded), no further exit handlers."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _warm_up(warm: Callable[[], Any] | None = None, preload: str | None = None) -> int:
    kernel = _worker_kernel()
    if preload:
        kernel.run(preload)
    if warm is not None:
        warm()
    return os.getpid()


class WarmPool:
    """A pool of `jobs` worker processes whose kernels start now, in the background, so that they are
    warm by the time the reports run (the build starts it as soon as it knows reports will change,
    while the indicators stage runs).

    The pool owns a private folder (`folder`) for its kernels' files and its workers' temporary
    files. `close()` stops the workers when the work is done; `terminate()` kills them and all they
    started at once (also run when a stop signal arrives: pipelines/engine/interrupt.py)."""

    def __init__(self, jobs: int, warm: Callable[[], Any] | None = None, preload: str | None = None) -> None:
        """`warm`: a module-level function each worker also runs while warming up (e.g. loading
        the renderer's font); `preload`: code each worker's kernel runs (e.g. the notebooks'
        imports). Either way the first task does not pay for it."""
        import multiprocessing as mp

        # No kernelspec lookup here: each worker starts ipykernel of this interpreter directly.
        self.jobs = max(1, jobs)
        self.folder = new_private_dir()
        self._closer: threading.Thread | None = None
        self._lock = threading.Lock()
        self._terminated = False
        self._done = False
        self._pids: set[int] = set()
        # Workers started in here ignore SIGINT from their first instruction (pipelines/engine/interrupt.py).
        # They are all started by the warm-up submissions (one process per submission while none is
        # idle), with POOL_ENV naming this pool in their environment: that is how they are found.
        # They, their kernels and renderers get this process's resolved settings (SETTINGS_ENV).
        from pipelines.domain.config import SETTINGS_ENV, exported_environ

        with (
            interrupt.children_ignore_interrupts(),
            temporary_env(POOL_ENV, str(self.folder)),
            temporary_env(SETTINGS_ENV, exported_environ()[SETTINGS_ENV]),
        ):
            self.pool = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=mp.get_context("spawn"),
                initializer=_worker_init,
                initargs=(str(self.folder), os.getpid()),
            )
            self._unregister = interrupt.on_stop(self.terminate)
            self._warming = [self.pool.submit(_warm_up, warm, preload) for _ in range(self.jobs)]
        self._note_workers()

    def _note_workers(self) -> None:
        self._pids.update(interrupt.with_environ(f"{POOL_ENV}={self.folder}"))

    def run_one(self, task: Task) -> Outcome:
        """Run one task on a warm worker and wait for it (e.g. the indicators notebook)."""
        try:
            return self.pool.submit(_run_task, task).result()
        except Exception as exc:  # the worker process itself died
            if interrupt.signalled():
                raise interrupt.Interrupted(interrupt.signalled()) from exc
            return Outcome(task.key, False, 0.0, error=_short_error(exc))

    def close(self, wait: bool = True) -> None:
        """Stop the workers (their kernels shut down as they exit) once the work is done.
        wait=False returns at once and lets them stop in the background; a later close() waits for
        them (at most CLOSE_GRACE seconds, then they are killed) and removes the pool's folder.

        A worker still starting its kernel (its warm-up not done: a report it would never run, or a
        start slowed down by load) is not waited for: the pool is terminated instead. So is a pool
        closed after a stop signal.

        The executor is shut down exactly once, with wait=True, in a thread: calling
        ProcessPoolExecutor.shutdown(wait=False) drops its reference to the thread that stops the
        workers, so a later shutdown(wait=True) returned at once and the process could reach
        multiprocessing's exit handler while a worker still waited for its stop signal (a hang
        seen about one exit in three)."""
        if self._terminated or interrupt.signalled() or not all(f.done() for f in self._warming):
            self.terminate()
            return
        self._shutdown_in_background()
        if wait:
            self._closer.join(CLOSE_GRACE)
            if self._closer.is_alive():
                log.warning("workers did not stop within %.0f s of the end; killing them", CLOSE_GRACE)
                self.terminate()
                return
            self._finish()

    def terminate(self) -> None:
        """Kill the workers and everything they started (kernels, renderers) now, and remove the
        pool's folder. Safe to call from another thread, more than once, and after close()."""
        self._terminated = True
        self._note_workers()
        workers = sorted(self._pids)
        interrupt.kill(interrupt.descendants(workers) + workers)
        # A process a worker started just before it died (already re-parented): its environment
        # still names the pool's folder.
        interrupt.kill(interrupt.with_environ(f"TMPDIR={self.folder / 'tmp'}"))
        self._shutdown_in_background()
        self._closer.join(10)
        self._finish()

    def _shutdown_in_background(self) -> None:
        with self._lock:
            if self._closer is None:
                self._closer = threading.Thread(
                    target=self.pool.shutdown,
                    name="pool-shutdown",
                    kwargs={"wait": True, "cancel_futures": True},
                    daemon=True,
                )
                self._closer.start()

    def _finish(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._unregister()
        remove_private_dir(self.folder)


def run_tasks(
    tasks: list[Task], jobs: int = 1, on_done: Callable[[Outcome], None] | None = None, pool: WarmPool | None = None
) -> list[Outcome]:
    """Run tasks on `jobs` worker processes, each with one warm kernel (or on a WarmPool's workers).
    Never raises for a task: failures are collected in the outcomes (in task order). Raises
    `interrupt.Interrupted` when a stop signal arrived meanwhile (the pool is being killed: the
    outcomes would only say so)."""
    if not tasks:
        return []
    from concurrent.futures import as_completed

    outcomes: dict[str, Outcome] = {}
    own = pool is None
    if own:
        pool = WarmPool(min(jobs, len(tasks)))
    try:
        futures: dict[Future, Task] = {pool.pool.submit(_run_task, t): t for t in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                out = fut.result()
            except Exception as exc:  # the worker process itself died
                out = Outcome(task.key, False, 0.0, error=_short_error(exc))
            if interrupt.signalled():
                raise interrupt.Interrupted(interrupt.signalled())
            outcomes[task.key] = out
            if on_done:
                on_done(out)
    except Exception:
        if interrupt.signalled():  # e.g. submitting to a pool killed meanwhile
            raise interrupt.Interrupted(interrupt.signalled()) from None
        raise
    finally:
        if own:
            pool.close()
    return [outcomes[t.key] for t in tasks]
