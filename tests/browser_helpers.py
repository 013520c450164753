"""Shared by the browser tests (test_accessibility, test_compare): the system Chromium that playwright
drives (its fixtures `browser` and `built_site` are in conftest.py)."""

from __future__ import annotations

import os
import shutil

# As root in a closed network: no sandbox, no background connections (docs: env machine notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
