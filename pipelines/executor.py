"""Warm-kernel papermill execution for many areas.

A fresh Jupyter kernel per notebook costs ~1 s plus the imports (pandas, matplotlib, duckdb).
Each worker process here keeps one kernel alive and executes notebook after notebook in it,
resetting the user namespace (``%reset -f``) between areas. Parameters are still injected by
papermill (``papermill.execute_notebook(..., km=...)``), so every executed notebook remains a
papermill record (``injected-parameters`` cell, papermill metadata).

Known papermill failures under parallel load (kernel start timeouts, ZMQ port clashes, a kernel that
dies) get a bounded retry with a fresh kernel; an error raised by the notebook itself is not retried.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("tsunagari.executor")

KERNEL_START_RETRIES = 3
# No input history database in the warm kernels: it is never read, and each cell's write to it is
# paid 20 times per area.
KERNEL_ARGS = ["--HistoryManager.enabled=False"]
KERNEL_NAME = "python3"


@dataclass
class Task:
    key: str                       # e.g. the area slug
    src: Path
    dst: Path
    parameters: dict[str, Any]
    cwd: Path | None = None
    after: Callable[..., Any] | None = None   # run in the worker after execution (e.g. rendering)
    after_args: tuple = ()


@dataclass
class Outcome:
    key: str
    ok: bool
    seconds: float
    error: str | None = None
    result: Any = None
    attempts: int = 1


def ensure_kernelspec() -> str:
    """Make sure a 'python3' kernelspec for this interpreter exists (fresh venvs have none)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(user=False, prefix=os.environ.get("VIRTUAL_ENV") or None) if os.environ.get("VIRTUAL_ENV") \
            else install(user=True)
    return KERNEL_NAME


def _quick_ready_client_class():
    from jupyter_client.blocking.client import BlockingKernelClient

    class QuickReadyClient(BlockingKernelClient):
        """A client whose readiness check does not idle. papermill connects a new client to the
        warm kernel for every notebook, and jupyter_client's wait_for_ready ends by waiting 0.2 s
        for IOPub to stay silent: 0.2 s of every area's time with nothing running. This keeps
        the checks (kernel_info answered on shell, then a message seen on IOPub, so the
        subscription is live before the first cell runs) and drops what is left on IOPub without
        waiting; a leftover message would be ignored anyway, nbclient matches parent ids."""

        def wait_for_ready(self, timeout: float | None = None) -> None:
            from queue import Empty

            deadline = time.monotonic() + (timeout if timeout is not None else 60.0)
            while True:
                msg_id = self.kernel_info()
                try:
                    reply = self.get_shell_msg(timeout=1)
                except Empty:
                    reply = None
                if reply is not None and reply.get("parent_header", {}).get("msg_id") == msg_id:
                    try:
                        self.iopub_channel.get_msg(timeout=0.5)   # IOPub is connected
                    except Empty:
                        pass                                      # not yet: ask again
                    else:
                        self._handle_kernel_info_reply(reply)
                        break
                if not self.is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")
            while True:
                try:
                    self.iopub_channel.get_msg(timeout=0)
                except Empty:
                    break

    return QuickReadyClient


class WarmKernel:
    """One kernel kept alive across notebook executions in this process."""

    def __init__(self) -> None:
        self.km = None

    def start(self) -> None:
        from jupyter_client.manager import KernelManager

        last: Exception | None = None
        for attempt in range(1, KERNEL_START_RETRIES + 1):
            try:
                # IPC sockets instead of TCP ports: no port clashes between parallel workers.
                km = KernelManager(kernel_name=ensure_kernelspec(), transport="ipc",
                                   ip=str(_ipc_dir() / f"kernel-{os.getpid()}-{attempt}"))
                km.client_factory = _quick_ready_client_class()
                km.start_kernel(extra_arguments=KERNEL_ARGS)
                kc = km.client()
                kc.start_channels()
                kc.wait_for_ready(timeout=60)
                kc.stop_channels()
                self.km = km
                return
            except Exception as exc:  # port clash, start timeout
                last = exc
                log.warning("kernel start failed (attempt %d/%d): %s", attempt, KERNEL_START_RETRIES, exc)
                time.sleep(0.5 * attempt)
        raise RuntimeError(f"could not start a Jupyter kernel after {KERNEL_START_RETRIES} attempts: {last}")

    def run(self, code: str, timeout: float = 120.0) -> bool:
        """Execute `code` silently in the kernel (no output, no execution count); e.g. imports
        before the first notebook. Returns whether it ran without an error (a failure is logged:
        the notebooks will then do the imports themselves and report any real problem)."""
        kc = self.km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            msg_id = kc.execute(code, silent=True, store_history=False)
            deadline = time.monotonic() + timeout
            while True:
                reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    break
            ok = reply["content"].get("status") == "ok"
            if not ok:
                log.warning("kernel preload failed: %s: %s", reply["content"].get("ename"),
                            reply["content"].get("evalue"))
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
        then): kill it and wait for it (10 ms, where shutdown_kernel takes 110 ms), then remove its
        connection and socket files; jupyter_client's own shutdown if that fails."""
        km, self.km = self.km, None
        if km is None:
            return
        try:
            proc = km.provisioner.process
            proc.kill()
            proc.wait(timeout=5)
            km.cleanup_resources()
        except Exception:
            try:
                km.shutdown_kernel(now=True)
            except Exception:
                pass


_WARM: WarmKernel | None = None


def _ipc_dir() -> Path:
    import tempfile

    d = Path(tempfile.gettempdir()) / "tsunagari-kernels"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _worker_kernel() -> WarmKernel:
    global _WARM
    if _WARM is None or not _WARM.alive():
        if _WARM is not None:
            _WARM.shutdown()
        _WARM = WarmKernel()
        _WARM.start()
        import atexit
        from multiprocessing import util

        atexit.register(_WARM.shutdown)
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
    # reset and the collections during a report scan only that report's objects (0.18 s -> 3 ms).
    code = ("get_ipython().run_line_magic('reset', '-f')\n"
            "import sys as _sys\n"
            "if 'matplotlib.pyplot' in _sys.modules: _sys.modules['matplotlib.pyplot'].close('all')\n"
            "import gc as _gc; _gc.freeze()\n")
    if cwd is not None:
        code += f"import os as _os; _os.chdir({str(cwd)!r})\n"
    return code


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
            out = pm.execute_notebook(nb, None, parameters=parameters, km=warm.km,
                                      kernel_name=KERNEL_NAME, progress_bar=False, log_output=False,
                                      start_timeout=60, request_save_on_cell_execute=False)
        except PapermillExecutionError as exc:
            # The notebook itself raised: keep the failed record for the reader, no retry.
            _write_record(getattr(exc, "nb", None), dst)
            raise
        except Exception as exc:
            if attempt == 2 or warm.alive():
                raise
            log.warning("kernel died while executing %s; retrying with a fresh kernel: %s", src, exc)
            continue
        _write_record(out, dst)
        return dst
    return dst


_SOURCES: dict[tuple, Any] = {}


def _source(src: Path):
    """A fresh copy of the notebook `src`, parsed once per worker while the file is unchanged."""
    import copy

    import nbformat

    from .config import file_key

    key = file_key(src)
    if key not in _SOURCES:
        _SOURCES.clear()
        _SOURCES[key] = nbformat.read(str(src), as_version=4)
    return copy.deepcopy(_SOURCES[key])


def _write_record(nb, dst: Path) -> None:
    import nbformat

    if nb is None:
        return
    nb.cells = [c for c in nb.cells if RESET_TAG not in c.get("metadata", {}).get("tags", [])]
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


def _worker_init() -> None:
    """Workers (and their kernels and renderers) yield to the build process: while they warm up,
    the build's own ingest and validation is the critical path."""
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass
    from multiprocessing import util

    # Last of the worker's exit finalizers (its kernel is stopped by one of priority 10): leave
    # without the interpreter's module-by-module teardown, which with pandas, matplotlib and
    # jupyter_client loaded took 0.15 s that the build waited for at its end.
    util.Finalize(None, _leave, exitpriority=-100)


def _leave() -> None:
    exit_now(0)


def exit_now(code: int) -> None:
    """Flush stdout and stderr, then end the process with `code` at once: no interpreter teardown
    (with pandas, GX or jupyter_client loaded it takes 0.15-0.6 s), no further exit handlers."""
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
    while the indicators stage runs)."""

    def __init__(self, jobs: int, warm: Callable[[], Any] | None = None, preload: str | None = None) -> None:
        """`warm`: a module-level function each worker also runs while warming up (e.g. loading
        the renderer's font); `preload`: code each worker's kernel runs (e.g. the notebooks'
        imports). Either way the first task does not pay for it."""
        import multiprocessing as mp

        # No ensure_kernelspec() here (0.2 s of jupyter_client imports on the build's critical
        # path): each worker makes sure of it when it starts its kernel, within the start retries
        # (two workers installing it at once on a fresh venv: the loser retries and finds it).
        self.jobs = max(1, jobs)
        self._closer = None
        self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=mp.get_context("spawn"),
                                        initializer=_worker_init)
        self._warming = [self.pool.submit(_warm_up, warm, preload) for _ in range(self.jobs)]

    def run_one(self, task: Task) -> Outcome:
        """Run one task on a warm worker and wait for it (e.g. the indicators notebook)."""
        try:
            return self.pool.submit(_run_task, task).result()
        except Exception as exc:  # the worker process itself died
            return Outcome(task.key, False, 0.0, error=_short_error(exc))

    def close(self, wait: bool = True) -> None:
        """Stop the workers (their kernels shut down as they exit). wait=False returns at once and
        lets them stop in the background; a later close() waits for them.

        The executor is shut down exactly once, with wait=True, in a thread: calling
        ProcessPoolExecutor.shutdown(wait=False) drops its reference to the thread that stops the
        workers, so a later shutdown(wait=True) returned at once and the process could reach
        multiprocessing's exit handler while a worker still waited for its stop signal (a hang
        seen about one exit in three)."""
        import threading

        if self._closer is None:
            self._closer = threading.Thread(target=self.pool.shutdown, name="pool-shutdown",
                                            kwargs={"wait": True, "cancel_futures": True})
            self._closer.start()
        if wait:
            self._closer.join()


def run_tasks(tasks: list[Task], jobs: int = 1,
              on_done: Callable[[Outcome], None] | None = None, pool: WarmPool | None = None) -> list[Outcome]:
    """Run tasks on `jobs` worker processes, each with one warm kernel (or on a WarmPool's workers).
    Never raises for a task: failures are collected in the outcomes (in task order)."""
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
            outcomes[task.key] = out
            if on_done:
                on_done(out)
    finally:
        if own:
            pool.close()
    return [outcomes[t.key] for t in tasks]
