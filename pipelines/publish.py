"""Atomic publishing of the site and the build state that makes rebuilds incremental.

The new site is assembled in ``<out>.new`` (a copy of the published one, so unchanged reports carry
over) and swapped in with two renames only when every stage succeeded. A failed or killed build
leaves the published ``<out>`` untouched. ``<out>.new`` keeps what was built, with a state file that
lists only artefacts known to be complete, so the next build can pick up from there.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import TsunagariError

log = logging.getLogger("tsunagari.publish")

STATE_FILE = ".tsunagari-state.json"


class BuildLockedError(TsunagariError):
    exit_code = 1


def _sibling(out: Path, suffix: str) -> Path:
    out = Path(out)
    return out.with_name(out.name + suffix)


def staging_dir(out: Path) -> Path:
    return _sibling(out, ".new")


def old_dir(out: Path) -> Path:
    return _sibling(out, ".old")


@contextmanager
def build_lock(out: Path) -> Iterator[Path]:
    """One build per output folder at a time: a second one is refused with a clear message."""
    lock_path = _sibling(out, ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise BuildLockedError(
            f"another build is writing {out} (pid {holder}); wait for it to finish "
            f"/ 別のビルドが実行中です（{lock_path}）"
        ) from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield lock_path
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def recover(out: Path) -> None:
    """Finish or undo a swap that a killed build left half done."""
    out, old = Path(out), old_dir(out)
    if not out.exists() and old.exists():
        log.warning("restoring the previous site from %s (an earlier build was interrupted)", old)
        old.rename(out)
    elif out.exists() and old.exists():
        shutil.rmtree(old, ignore_errors=True)


def prepare_staging(out: Path) -> Path:
    """The folder the new site is built in: a leftover <out>.new (its state lists only complete
    artefacts) or a fresh copy of the published site."""
    out, new = Path(out), staging_dir(out)
    if new.exists() and (new / STATE_FILE).exists():
        log.info("continuing from %s left by an earlier build", new)
        return new
    if new.exists():
        shutil.rmtree(new)
    if out.exists():
        shutil.copytree(out, new, symlinks=True)
    else:
        new.mkdir(parents=True)
    return new


def swap_in(out: Path) -> None:
    """Publish <out>.new as <out>: two renames, the old site removed afterwards."""
    out, new, old = Path(out), staging_dir(out), old_dir(out)
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


class BuildState:
    """artefact key -> input hash, persisted after every change (atomic write)."""

    def __init__(self, site_dir: Path) -> None:
        import threading

        self._lock = threading.Lock()   # the build records from two threads (reports and site)
        self.path = Path(site_dir) / STATE_FILE
        try:
            self.data: dict[str, str] = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            self.data = {}

    def up_to_date(self, key: str, digest: str, outputs: Iterable[Path] = ()) -> bool:
        return self.data.get(key) == digest and all(Path(p).exists() for p in outputs)

    def invalidate(self, key: str) -> None:
        with self._lock:
            if self.data.pop(key, None) is not None:
                self._save()

    def record(self, key: str, digest: str) -> None:
        with self._lock:
            self.data[key] = digest
            self._save()

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)


def digest(*parts: object) -> str:
    """A stable hash of strings, bytes, paths (their content) and JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            if part.is_dir():
                for f in sorted(p for p in part.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                    h.update(str(f.relative_to(part)).encode())
                    h.update(f.read_bytes())
            elif part.exists():
                h.update(part.read_bytes())
            else:
                h.update(b"<missing>")
        elif isinstance(part, bytes):
            h.update(part)
        elif isinstance(part, str):
            h.update(part.encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()
