"""Issue #25: the setting `MIN_BASE` drives every stage.

A user changes the setting in a run-configuration file (``--config``, pipelines/domain/config.py) or,
as before, by editing the default in config.py of the installed package. The test does each once:
a build with min_base 50 from a run-configuration file, and one with 20 from an edited copy of the
package (Akita and Tokushima, whose small bases showed the disagreement, Tottori and the national
report); the run-configuration file also sets the intervals' level to 90%, which every published
text must then state instead of 95%. The build must succeed — its own
disclosure gate checks every published file against the suppression the indicators stage chose —
and the published text must state the setting's number, not a typed 30, in every table, chart
data file, download and report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.engine import publish
from pipelines.ingest.sample import write_sample

ROOT = Path(__file__).resolve().parents[1]
PREFS = ["0", "5", "31", "36"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("min-base-input")
    write_sample(d, rows=4000)
    return d


def _package_with(tmp: Path, min_base: int) -> Path:
    """A copy of the project whose config.py says MIN_BASE = `min_base`, as a user would edit it."""
    copy = tmp / "project"
    for name in ("pipelines", "reports", "expectations", "data/reference"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "_quarto.yml"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, copy / name)
    cfg = copy / "pipelines" / "domain" / "config.py"
    text, n = re.subn(r"^MIN_BASE = \d+", f"MIN_BASE = {min_base}", cfg.read_text(encoding="utf-8"), flags=re.M)
    assert n == 1
    cfg.write_text(text, encoding="utf-8")
    return copy


def _published_text(site: Path) -> dict[str, str]:
    """Every text a visitor reads: pages and reports (HTML), CSV downloads and chart data files,
    and the strings of every workbook."""
    out = {}
    for p in sorted(site.rglob("*")):
        rel = p.relative_to(site).as_posix()
        if p.suffix in (".html", ".csv"):
            out[rel] = p.read_text(encoding="utf-8-sig")
        elif p.suffix == ".xlsx":
            with zipfile.ZipFile(p) as z:
                out[rel] = "\n".join(
                    z.read(n).decode("utf-8") for n in z.namelist() if n.startswith("xl/") and n.endswith(".xml")
                )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("min_base, how", [(50, "run-configuration file"), (20, "config.py")])
def test_a_build_with_another_min_base_publishes_consistent_suppression(tmp_path, sample, min_base, how):
    wh, site = tmp_path / "wh.duckdb", tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSUNAGARI_")}
    args = [sys.executable, "-m", "pipelines.cli"]
    if how == "config.py":
        env["PYTHONPATH"] = str(_package_with(tmp_path, min_base))
    else:
        run_file = tmp_path / "run.toml"
        run_file.write_text(
            f"[statistics]\nmin_base = {min_base}   # suppress bases under {min_base}\nconfidence_level = 0.9\n",
            encoding="utf-8",
        )
        env["PYTHONPATH"] = str(ROOT)
        args += ["--config", str(run_file)]
    args += [
        "build",
        "--input",
        str(sample),
        "--out",
        str(site),
        "--warehouse",
        str(wh),
        "--renderer",
        "pandoc",
        "--jobs",
        "2",
        "--quiet",
    ]
    for p in PREFS:
        args += ["--pref", p]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]  # the disclosure gate passed
    assert (site / "prefectures" / "05-akita.html").is_file() and (site / "prefectures" / "36-tokushima.html").is_file()
    # The build's log states the setting and where it came from.
    log = (publish.work_dir(site.resolve()) / publish.LOG_FILE).read_text(encoding="utf-8")
    source = "file" if how == "run-configuration file" else "default"
    assert f"setting statistics.min_base = {min_base} ({source})" in log

    # The indicators stage applied the setting: every published row has a base >= MIN_BASE, and
    # the suppressed rows' notes name the setting's number.
    con = duckdb.connect(str(wh), read_only=True)
    try:
        ind = con.execute("SELECT * FROM indicators").df()
    finally:
        con.close()
    shown = ind[~ind.suppressed & ind.n_unweighted.notna()]
    assert (shown.n_unweighted >= min_base).all()
    if min_base < 30:  # rows published now that 30 would have suppressed
        assert ((shown.n_unweighted >= min_base) & (shown.n_unweighted < 30)).any()
    primary = ind[ind.suppressed & ind.note.str.contains(f"n<{min_base} 非表示", regex=False)]
    assert len(primary) > 0 and not ind.note.str.contains("n<30 ", regex=False).any()

    # The published downloads agree: no value on a base under MIN_BASE, none for a suppressed row.
    csv = pd.read_csv(site / "downloads" / "indicators-2024.csv", header=1, encoding="utf-8-sig")
    n = pd.to_numeric(csv["n_unweighted"], errors="coerce")
    assert not (csv["value"].notna() & (n < min_base)).any()
    assert not (csv["value"].notna() & csv["suppressed"].astype(str).str.lower().eq("true")).any()

    # Every table, chart data file, download and report states the setting, never a typed 30.
    texts = _published_text(site)
    stale = {
        rel: m.group(0) for rel, t in texts.items() for m in [re.search(r"30人未満|n<30 |n_eff<30|30～99人", t)] if m
    }
    assert not stale, stale
    if how == "run-configuration file":  # the same file sets the intervals' level: 90%, stated as such everywhere
        said_95 = {rel: t[max(0, t.find("95%") - 60) : t.find("95%") + 20] for rel, t in texts.items() if "95%" in t}
        assert not said_95, said_95
        assert "90%信頼区間" in texts["prefectures/31-tottori.html"] and "90%区間" in texts["national.html"]
        assert "90%信頼区間 下限" in texts["downloads/indicators-2024.csv"]
        assert "（90%信頼区間 " in texts["index.html"]  # the map's tiles name their interval's level
    akita = texts["prefectures/05-akita.html"]
    assert f"{min_base}人未満" in akita and f"{min_base}～99" in texts["methodology.html"]
    assert any(f"{min_base}人未満" in t for rel, t in texts.items() if rel.endswith(".xlsx"))
