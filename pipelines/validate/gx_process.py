"""A Great Expectations process for one build, started before anything else.

Importing Great Expectations takes seconds of CPU (most of it its expectations package, which
pulls in scipy.stats), and the validation of a corrected file waits for it. In a thread of the
build process that import shares the interpreter lock with the build's own start (its imports,
the staging of the new file), so the two add up. `tsunagari build` therefore starts this process
first thing: the import runs on the other core while the build starts, and ingest sends each
staged file's rows here (``validate_frame``) and gets the results back. A build with no new input
stops the process unused.

This module imports only the standard library: it is imported before the build's own modules.
Without a started process (the library API, `tsunagari ingest`, `tsunagari validate`), or if the
process fails to start or dies, validation runs in the calling process, with the same results.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import types
from typing import Any

log = logging.getLogger("tsunagari.validator")

_LOCK = threading.Lock()
_PROC: Any = None  # multiprocessing Process
_CONN: Any = None  # our end of its pipe
_READY = False  # its "ready" message has been received


# The module whose ``warm_up()`` and ``validate_frame(df, sf)`` the process serves. Named, not
# imported: this module is started before the build's own imports and knows nothing of validation.
SERVED_MODULE = "pipelines.validate.stage"


def start(module: str = SERVED_MODULE) -> None:
    """Start the validation process (once; returns at once: GX is set up in the background by
    ``module.warm_up()``, then each frame is validated by ``module.validate_frame``)."""
    global _PROC, _CONN, _READY
    with _LOCK:
        if _PROC is not None:
            return
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(theirs, module), name="tsunagari-validator", daemon=True)
        proc.start()
        theirs.close()
        _PROC, _CONN, _READY = proc, ours, False
    _stop_at_exit()


_EXIT_REGISTERED: list[bool] = []


def _stop_at_exit() -> None:
    """Stop the process when this one ends (also when the command line ends it at once)."""
    from pipelines.engine import interrupt

    if not _EXIT_REGISTERED:
        _EXIT_REGISTERED.append(True)
        interrupt.at_exit(stop)


def running() -> bool:
    return _PROC is not None


def stop() -> None:
    """Stop the process at once (it holds nothing to save; a later `start` starts a new one)."""
    global _PROC, _CONN, _READY
    with _LOCK:
        proc, conn, _PROC, _CONN, _READY = _PROC, _CONN, None, None, False
    if proc is not None:
        try:
            proc.kill()
            proc.join(timeout=5)
        except Exception:  # already gone
            pass
        conn.close()


def validate_frame(df, sf, local) -> list:
    """``validate_frame(df, sf)`` of the served module: in the validation process when one is
    running, else ``local(df, sf)`` in this one (also when the process could not set GX up or died:
    the reason is logged). An error raised by the validation itself is raised here, as it would be
    locally."""
    global _READY
    with _LOCK:
        conn = _CONN
        if conn is not None:
            try:
                if not _READY:
                    kind, detail = conn.recv()  # waits for GX to be set up
                    if kind != "ready":
                        raise _Unavailable(detail)
                    _READY = True
                conn.send((df, sf))
                kind, payload = conn.recv()
                if kind == "error":
                    raise payload
                return payload
            except (_Unavailable, EOFError, OSError) as exc:
                log.warning(
                    "validation process unavailable (%s: %s); validating in the build process", type(exc).__name__, exc
                )
                conn = None
    stop()
    return local(df, sf)


class _Unavailable(RuntimeError):
    """The validation process could not import or set up Great Expectations."""


# Modules that importing Great Expectations loads only for what these suites never use: scipy.stats
# (the KL-divergence and KS-test expectations call it when they run) and altair (charts of GX's
# own renderers). In the validation process they are imported when first used.
DEFERRED_MODULES = ("scipy.stats", "altair")


class _Deferred(types.ModuleType):
    """Stands in for a module until any of its attributes is read; then the real module is
    imported (and replaces this one in sys.modules) and the attribute is read from it."""

    def __getattr__(self, attr: str):
        return getattr(_load(self.__name__), attr)


def _load(name: str):
    if isinstance(sys.modules.get(name), _Deferred):
        del sys.modules[name]
    return importlib.import_module(name)


def defer_imports(names=DEFERRED_MODULES) -> None:
    """Until used, `import name` gives a stand-in (modules already imported are left alone)."""
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = _Deferred(name)


def _serve(conn, module: str) -> None:
    """The validation process: set GX up, say so, then validate each (df, sf) received."""
    try:
        defer_imports()
        try:  # GX's progress bars (off) still take tqdm's lock, by default a multiprocessing
            from tqdm import tqdm  # semaphore: left registered when this process is stopped,

            tqdm.set_lock(threading.RLock())  # the resource tracker warns about a leak
        except ImportError:
            pass
        served = importlib.import_module(module)
        served.warm_up()
        validate_frame = served.validate_frame
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    try:
        conn.send(("ready", os.getpid()))
    except OSError:  # the build ended (or stopped it) while GX was being set up
        return
    while True:
        try:
            df, sf = conn.recv()
        except (EOFError, OSError):
            break
        try:
            conn.send(("ok", validate_frame(df, sf)))
        except Exception as exc:
            try:
                conn.send(("error", exc))
            except Exception:  # an exception that cannot be pickled
                conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    conn.close()
    from pipelines.engine.kernels import exit_now

    exit_now(0)  # no interpreter teardown (slow with GX loaded)
