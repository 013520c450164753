"""Stopping cleanly: Ctrl-C (SIGINT), SIGTERM and SIGHUP end a command within seconds.

`install()` (the CLI's first act) routes the three signals here. On the first one:

- the registered stop actions run at once (the report workers and their kernels are killed, the
  validation process is stopped, the build's private temporary folder is removed), from a thread
  woken by the signal itself, so also while the main thread is inside C code (a DuckDB query, a
  wait for a worker);
- the main thread raises `Interrupted` (a KeyboardInterrupt), which unwinds the command through its
  ``finally`` blocks: nothing is published, the build lock is released, the CLI prints one line
  (`MESSAGE`) and exits 130;
- should the process still be alive `GRACE` seconds later, it ends then (same line, exit 130).

A second signal ends the process at once. Child processes started inside
`children_ignore_interrupts()` ignore SIGINT (which a terminal's Ctrl-C sends to the whole
foreground process group): the build stops them itself, so they print no traceback of their own.

Also the process-tree helpers the stop actions use (Linux /proc; elsewhere they find nothing).
Only the standard library is imported here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

EXIT_CODE = 130
GRACE = 5.0  # seconds from the first signal to a forced exit
SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
_NUMBERS = {int(getattr(signal, name)) for name in SIGNALS if hasattr(signal, name)}


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when a stop signal arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def message(signum: int | None) -> str:
    """The one line a stopped command prints."""
    name = f" ({signal.Signals(signum).name})" if signum else ""
    return f"中断しました / interrupted{name}"


_LOCK = threading.RLock()
_ACTIONS: dict[int, tuple[int, Callable[[], None]]] = {}  # token -> (order, action)
_NEXT = [0]
_SIGNUM: int | None = None  # the first stop signal received
_COUNT = 0  # stop signals received
_STOPPED = False  # the stop actions have run
_ANNOUNCED = False  # the line has been printed
_RAISE = True  # raise Interrupted in the main thread (off once the command is over)
_DEFER = 0  # depth of deferred() blocks
_PENDING: int | None = None  # a signal that arrived inside deferred()
_INSTALLED = False
_WAKEUP = False  # the wake-up pipe and its watcher thread are set up


def on_stop(action: Callable[[], None], order: int = 0) -> Callable[[], None]:
    """Run `action` when a stop signal arrives (lower `order` first). Returns the function that
    removes it again (call it when what it stops is gone)."""
    with _LOCK:
        _NEXT[0] += 1
        token = _NEXT[0]
        _ACTIONS[token] = (order, action)
    return lambda: _ACTIONS.pop(token, None)


_AT_EXIT: list[Callable[[], None]] = []


def at_exit(action: Callable[[], None]) -> Callable[[], None]:
    """Run `action` when the process ends: through `atexit` on a normal interpreter exit, and from
    `run_exit_actions` when the command line ends the process at once (pipelines.cli). Usable as a
    decorator; returns `action`."""
    import atexit

    atexit.register(action)
    _AT_EXIT.append(action)
    return action


def run_exit_actions() -> None:
    """Run the actions registered with `at_exit` now, last registered first, each once (they are
    taken off `atexit`'s list too). An action that fails does not stop the others."""
    import atexit

    while _AT_EXIT:
        action = _AT_EXIT.pop()
        atexit.unregister(action)
        try:
            action()
        except Exception:  # an exit action must not keep the others from running
            pass


def signalled() -> int | None:
    """The stop signal received, or None."""
    return _SIGNUM


def install(grace: float = GRACE) -> None:
    """Handle SIGINT, SIGTERM and SIGHUP as described above. Call from the main thread."""
    global _INSTALLED, _WAKEUP, GRACE
    if _INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    GRACE = grace
    try:  # the signal's own wake-up: a byte per signal on a pipe, written by the C-level handler
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        threading.Thread(target=_watch, args=(r,), name="stop-signals", daemon=True).start()
        _WAKEUP = True
    except (OSError, ValueError):
        pass  # the handler below still stops everything, when the main thread runs it
    for name in SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _handler)
    _INSTALLED = True


def finishing() -> None:
    """The command is over (its exit code is known): a signal from now on no longer raises, the
    process is ending anyway."""
    global _RAISE
    _RAISE = False


def announce() -> None:
    """Print the interrupted line on stderr (once)."""
    global _ANNOUNCED
    with _LOCK:
        if _ANNOUNCED:
            return
        _ANNOUNCED = True
    try:
        sys.stderr.write(message(_SIGNUM) + "\n")
        sys.stderr.flush()
    except Exception:
        pass


@contextmanager
def deferred() -> Iterator[None]:
    """A signal arriving inside takes effect (raises) when the block ends: e.g. the two renames that
    publish a site are not cut in the middle. The stop actions still run at once."""
    global _DEFER, _PENDING
    _DEFER += 1
    try:
        yield
    finally:
        _DEFER -= 1
    if _DEFER == 0 and _PENDING is not None and _RAISE:
        signum, _PENDING = _PENDING, None
        raise Interrupted(signum)


@contextmanager
def children_ignore_interrupts() -> Iterator[None]:
    """Processes started inside ignore SIGINT for their whole life (an ignored signal stays ignored
    across exec, and Python then keeps it so). Only in the main thread (elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _handler(signum: int, frame) -> None:
    """The Python-level handler, run by the main thread between two bytecodes."""
    global _PENDING
    _received(signum, count=not _WAKEUP)  # with the wake-up pipe, the watcher counts
    if not _RAISE:
        return
    if _DEFER or _in_finalizer(frame):
        # In a finalizer (e.g. ZipFile.__del__) Python would print the exception as "ignored"
        # with a traceback and go on; the stop actions have run and the grace timer ends the build.
        _PENDING = signum
        return
    raise Interrupted(signum)


def _in_finalizer(frame, depth: int = 8) -> bool:
    """Whether the interrupted code runs inside a ``__del__`` (within ``depth`` frames)."""
    while frame is not None and depth > 0:
        if frame.f_code.co_name == "__del__":
            return True
        frame, depth = frame.f_back, depth - 1
    return False


def _watch(fd: int) -> None:
    """Woken by the C-level handler (one byte per signal), whatever the main thread is doing."""
    while True:
        try:
            data = os.read(fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in _NUMBERS:
                _received(signum, count=True)


def _received(signum: int, count: bool) -> None:
    global _SIGNUM, _COUNT, _STOPPED
    with _LOCK:
        if _SIGNUM is None:
            _SIGNUM = signum
        if count:
            _COUNT += 1
        first = not _STOPPED
        _STOPPED = True
        again = _COUNT >= 2
    if first:
        run_stop_actions()
        timer = threading.Timer(GRACE, force_exit)
        timer.daemon = True
        timer.start()
    if again:
        force_exit()


def run_stop_actions() -> None:
    with _LOCK:
        actions = [a for _, a in sorted(_ACTIONS.values(), key=lambda oa: oa[0])]
        _ACTIONS.clear()
    for action in actions:
        try:
            action()
        except Exception:
            pass  # stopping must go on; what failed to stop is found by the next action


def force_exit() -> None:
    """End the process now: stop actions, the line, exit 130 (no interpreter teardown)."""
    run_stop_actions()
    announce()
    os._exit(EXIT_CODE)


# --- Process trees (Linux /proc) ------------------------------------------------------------------


def _ppids() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces and parentheses; split after the last ')'
        out[int(entry)] = int(stat[stat.rfind(b")") + 2 :].split()[1])
    return out


def descendants(pids: Iterable[int]) -> list[int]:
    """Every process descended from `pids` (children, their children, ...), not `pids` themselves."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _ppids().items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def with_environ(entry: str) -> list[int]:
    """Processes (of this user) whose environment holds `entry` (e.g. 'TMPDIR=/tmp/x'): those
    started by a process that set it, wherever they were re-parented."""
    needle = entry.encode() + b"\0"
    out = []
    for pid in _ppids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = b"\0" + fh.read()
        except OSError:
            continue
        if b"\0" + needle in env + b"\0":
            out.append(pid)
    return out


def kill(pids: Iterable[int]) -> None:
    """SIGKILL each process, and the process group of each that leads its own group (a kernel:
    jupyter_client starts it in a new session), never this process's own group."""
    own = os.getpgrp()
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            if os.getpgid(pid) == pid and pid != own:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # gone already


def kill_children() -> None:
    """SIGKILL every process this one started (and theirs), except multiprocessing's resource
    tracker: it ends by itself with its last user, and killed it would be started again with a
    warning."""
    doomed = []
    for pid in descendants([os.getpid()]):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"resource_tracker" in fh.read():
                    continue
        except OSError:
            continue  # gone
        doomed.append(pid)
    kill(doomed)
