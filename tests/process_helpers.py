"""Finding the processes a test started, by their traces in /proc (through psutil, independently of
pipelines.engine.interrupt, which the tests check)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil


def alive(pid: int) -> bool:
    """The process exists and has not ended (a zombie, an ended child nobody reaped, has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def with_tmpdir(tmp: Path) -> list[str]:
    """'pid command line' of each live process whose environment's TMPDIR is `tmp` or a folder in it:
    a build run with TMPDIR=tmp, everything it started and what those started (wherever re-parented)."""
    mine, inside = str(tmp), str(tmp) + "/"
    out = []
    for proc in psutil.process_iter(["pid", "environ", "cmdline"]):
        value = (proc.info["environ"] or {}).get("TMPDIR", "")
        if (value == mine or value.startswith(inside)) and alive(proc.info["pid"]):
            out.append(f"{proc.info['pid']} {' '.join(proc.info['cmdline'] or [])[:120]}")
    return out


def with_cmdline(text: str) -> list[int]:
    """Live processes whose command line contains `text`."""
    return [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if text in " ".join(p.info["cmdline"] or []) and alive(p.info["pid"])
    ]


def poll(predicate, timeout: float, what: str) -> None:
    """Wait until `predicate()` is true; fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
