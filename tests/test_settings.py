"""The run settings (pipelines/domain/config.py, issue #25): defaults < run-configuration file < environment."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.domain import config, stats
from pipelines.domain import config as settings  # the run settings live in config (one module)
from pipelines.domain.config import SETTINGS_ENV, SettingsError, load
from pipelines.engine import fingerprint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """No settings from the calling shell; the loaded object is dropped after each test."""
    for name in settings.ENV_NAMES + (settings.CONFIG_ENV, SETTINGS_ENV):
        monkeypatch.delenv(name, raising=False)
    settings.use(None)
    yield
    settings.use(None)


def _toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_every_setting_has_one_spec_and_the_old_names_map_to_settings() -> None:
    names = [f.name for f in dataclasses.fields(settings.Settings) if f.name not in ("sources", "file")]
    assert names == [s.name for s in settings.SPECS]
    assert len(set(settings.ENV_NAMES)) == len(settings.ENV_NAMES)
    for old, name in settings.CONFIG_NAMES.items():
        assert getattr(config, old) == getattr(settings.settings(), name)


def test_file_values_are_applied(tmp_path: Path) -> None:
    f = _toml(
        tmp_path / "run.toml",
        """
[statistics]
min_base = 50
reference_base = 120
confidence_level = 0.9
deff = { national = 1.8, "pref11-2023" = 1.2 }

[paths]
reports_dir = "my-reports"        # relative to this file's folder

[run]
chart_cache = false

[publication]
publication_date = 2025-03-31
""",
    )
    s = load(f, environ={})
    assert (s.min_base, s.reference_base, s.confidence_level) == (50, 120, 0.9)
    assert config.design_effects(s.deff) == {"national": 1.8, "pref11-2023": 1.2}
    assert s.reports_dir == tmp_path / "my-reports"
    assert s.chart_cache is False and s.publication_date == "2025-03-31"
    assert s.file == f and s.sources["min_base"] == "file" and s.sources["max_input_rows"] == "default"
    assert s.max_input_rows == 20_000_000 and s.lead_cv_max == 0.20


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    f = _toml(tmp_path / "run.toml", "[statistics]\nmin_base = 50\n[limits]\nmax_input_rows = 10\n")
    s = load(f, environ={"TSUNAGARI_MIN_BASE": "40", "TSUNAGARI_MAX_INPUT_ROWS": " "})  # empty: unset
    assert s.min_base == 40 and s.sources["min_base"] == "env"
    assert s.max_input_rows == 10 and s.sources["max_input_rows"] == "file"


def test_the_file_is_found_in_the_current_folder_or_named_by_the_variable(tmp_path: Path, monkeypatch) -> None:
    _toml(tmp_path / settings.FILE_NAME, "[statistics]\nmin_base = 45\n")
    other = _toml(tmp_path / "other.toml", "[statistics]\nmin_base = 55\n")
    monkeypatch.chdir(tmp_path)
    assert load(environ={}).min_base == 45
    assert load(environ={settings.CONFIG_ENV: str(other)}).min_base == 55
    monkeypatch.chdir(tmp_path.parent)
    assert load(environ={}).min_base == config.PACKAGE_DEFAULTS["MIN_BASE"]


@pytest.mark.parametrize(
    "text, key, rule",
    [
        ("[statistics]\nmin_base = 0\n", "statistics.min_base = 0", "whole number >= 1"),
        ('[statistics]\nmin_base = "50"\n', "statistics.min_base = '50'", "whole number >= 1"),
        ("[statistics]\nmin_base = 30.5\n", "statistics.min_base = 30.5", "whole number >= 1"),
        ("[statistics]\nmin_base = 100\n", "statistics.min_base = 100", "less than statistics.reference_base (100)"),
        (
            "[statistics]\nmin_base = 50\nreference_base = 50\n",
            "statistics.reference_base = 50",
            "greater than statistics.min_base (50)",
        ),
        ("[statistics]\nconfidence_level = 1.5\n", "statistics.confidence_level = 1.5", "between 0 and 1"),
        ('[statistics]\ndeff = "national=-1"\n', "statistics.deff", "bad design effect"),
        ("[limits]\nmin_effective_n_fraction = 0\n", "limits.min_effective_n_fraction = 0", "a fraction in (0, 1]"),
        ('[run]\nchart_cache = "no"\n', "run.chart_cache = 'no'", "true or false"),
        ('[run]\npdf_font = "comic"\n', "run.pdf_font = 'comic'", "auto, noto, ipaex"),
        (
            "[statistics]\nmin_bas = 50\n",
            "statistics.min_bas",
            "unknown setting / 不明な設定です (known in [statistics]",
        ),
        ("[statistic]\nmin_base = 50\n", "[statistic]", "unknown section"),
        ("min_base = 50\n", "[min_base]", "unknown section"),
        ("[statistics\nmin_base = 50\n", "(file)", "not valid TOML / TOML として読めません"),
    ],
)
def test_a_bad_file_names_the_file_the_key_and_the_rule(tmp_path: Path, text: str, key: str, rule: str) -> None:
    f = _toml(tmp_path / "bad.toml", text)
    with pytest.raises(SettingsError) as err:
        load(f, environ={})
    msg = str(err.value)
    assert msg.startswith(f"{f}: {key}"), msg
    assert rule in msg and " / " in msg  # bilingual
    assert err.value.exit_code == 2  # reported by the CLI like a UsageError


def test_a_bad_variable_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        load(None, environ={"TSUNAGARI_MIN_BASE": "lots"})
    assert str(err.value) == (
        "TSUNAGARI_MIN_BASE: statistics.min_base = 'lots': must be a whole number >= 1 / 1 以上の整数を指定してください"
    )
    with pytest.raises(SettingsError, match="^TSUNAGARI_REFERENCE_BASE: statistics.reference_base = 40"):
        load(None, environ={"TSUNAGARI_REFERENCE_BASE": "40", "TSUNAGARI_MIN_BASE": "50"})
    with pytest.raises(SettingsError, match="run-configuration file not found"):
        load(None, environ={settings.CONFIG_ENV: str(tmp_path / "missing.toml")})


def test_config_names_and_stats_defaults_follow_the_loaded_settings(tmp_path: Path, monkeypatch) -> None:
    f = _toml(tmp_path / "run.toml", "[statistics]\nmin_base = 50\nconfidence_level = 0.9\n")
    assert config.MIN_BASE == 30 and stats.base_status(40) == "reference"
    monkeypatch.setenv(settings.CONFIG_ENV, str(f))  # seen at the next read: no import-time copy
    assert config.MIN_BASE == 50 and config.CONFIDENCE_LEVEL == 0.9
    assert stats.base_status(40) == "suppressed" and stats.z_critical() == pytest.approx(1.6448536)
    monkeypatch.setenv("TSUNAGARI_REPORTS_DIR", str(tmp_path / "fork"))
    assert config.REPORTS_DIR == tmp_path / "fork"


def test_the_build_log_lists_each_setting_with_its_source(tmp_path: Path, monkeypatch, caplog) -> None:
    from pipelines.build import _log_settings

    f = _toml(tmp_path / "run.toml", "[statistics]\nmin_base = 50\n")
    monkeypatch.setenv(settings.CONFIG_ENV, str(f))
    monkeypatch.setenv("TSUNAGARI_MAX_INPUT_ROWS", "1000")
    with caplog.at_level(logging.INFO, logger="tsunagari"):
        _log_settings()
    lines = [r.getMessage() for r in caplog.records]
    assert f"settings file / 設定ファイル: {f}" in lines
    assert "setting statistics.min_base = 50 (file)" in lines
    assert "setting limits.max_input_rows = 1000 (env TSUNAGARI_MAX_INPUT_ROWS)" in lines
    assert "setting statistics.reference_base = 100 (default)" in lines
    assert sum(line.startswith("setting ") for line in lines) == len(settings.SPECS)


def test_the_fingerprint_changes_with_min_base_not_with_a_limit(tmp_path: Path, monkeypatch) -> None:
    base = fingerprint.compute()
    monkeypatch.setenv(settings.CONFIG_ENV, str(_toml(tmp_path / "a.toml", "[limits]\nmax_input_rows = 5\n")))
    assert fingerprint.compute() == base  # a limit refuses input, it changes no output
    monkeypatch.setenv(settings.CONFIG_ENV, str(_toml(tmp_path / "b.toml", "[statistics]\nmin_base = 50\n")))
    with_file = fingerprint.compute()
    assert with_file != base
    monkeypatch.delenv(settings.CONFIG_ENV)
    monkeypatch.setenv("TSUNAGARI_MIN_BASE", "50")  # the same value from elsewhere: the same key
    assert fingerprint.compute() == with_file


def test_a_child_process_gets_the_resolved_values(tmp_path: Path, monkeypatch) -> None:
    """A kernel or worker runs in another folder: it takes the parent's values, not its own file."""
    f = _toml(tmp_path / "run.toml", "[statistics]\nmin_base = 50\n")
    monkeypatch.setenv(settings.CONFIG_ENV, str(f))
    exported = settings.exported_environ()
    elsewhere = tmp_path / "kernel-cwd"
    elsewhere.mkdir()
    _toml(elsewhere / settings.FILE_NAME, "[statistics]\nmin_base = 20\n")  # must not be read
    env = {**os.environ, **exported, "PYTHONPATH": str(ROOT)}
    env.pop(settings.CONFIG_ENV)
    code = "from pipelines import config; print(config.MIN_BASE, config.settings().sources['min_base'])"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["50", "file"]
    # This process never takes its own export: a reload reads file and environment again.
    monkeypatch.setenv(SETTINGS_ENV, exported[SETTINGS_ENV])
    monkeypatch.delenv(settings.CONFIG_ENV)
    assert settings.reload().min_base == 30
    assert json.loads(exported[SETTINGS_ENV])["values"]["min_base"] == 50


@pytest.mark.parametrize("where", ["global", "build"])
def test_cli_refuses_a_bad_file_before_any_work(tmp_path: Path, where: str) -> None:
    f = _toml(tmp_path / "bad.toml", "[statistics]\nreference_base = 10\n")
    opts = ["--config", str(f)]
    args = [*opts, "build"] if where == "global" else ["build", *opts]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSUNAGARI_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            *args,
            "--out",
            str(tmp_path / "site"),
            "--warehouse",
            str(tmp_path / "wh.duckdb"),
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {f}: statistics.reference_base = 10: must be a whole number greater than statistics.min_base "
        "(30) / min_base（30）より大きい整数を指定してください"
    )
    assert not (tmp_path / "wh.duckdb").exists() and not (tmp_path / ".site.tsunagari-new").exists()


def test_the_example_file_lists_every_setting_and_loads(tmp_path: Path) -> None:
    """tsunagari.toml.example with each key's first example uncommented is a valid file, and it
    names every setting and its environment variable."""
    import re

    text = (ROOT / "tsunagari.toml.example").read_text(encoding="utf-8")
    seen: set[str] = set()
    lines = []
    for line in text.splitlines():
        m = re.match(r"# ([a-z_]+) = (.*)$", line)
        if m and m.group(1) not in seen:
            seen.add(m.group(1))
            line = f"{m.group(1)} = {m.group(2)}"
        lines.append(line)
    assert seen == {s.name for s in settings.SPECS}
    assert all(s.env in text for s in settings.SPECS)
    s = load(_toml(tmp_path / "example.toml", "\n".join(lines)), environ={})
    assert all(v == "file" for v in s.sources.values())
    assert (s.min_base, s.confidence_level, s.max_input_rows) == (30, 0.95, 20_000_000)
