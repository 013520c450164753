"""Validation stage: real DuckDB files, real Great Expectations, real written quality pages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.build import quality_design
from pipelines.domain import config, schema
from pipelines.domain.errors import DataError, UsageError
from pipelines.io.staging import StagedFile
from pipelines.outputs.quality import write_quality_page
from pipelines.validate.stage import (
    _GX,
    ValidationReport,
    load_suite_spec,
    validate_frame,
    validate_staged,
    validate_warehouse,
    weight_limits,
)

ROOT = Path(__file__).resolve().parents[1]
SURVEY_FILE = "national-2024.csv"
PROG_FILE = "programme.csv"
N = 60
OTHERS_0 = "0 other critical failures / ほかの重大な不合格 0 件"


# --- synthetic data -------------------------------------------------------------------------------


def survey_frame(
    n: int = N, seed: int = 7, file_id: str = "f-survey", survey_id: str = "national-2024", year: int = 2024
) -> pd.DataFrame:
    """A clean staged survey: every code valid, support answered only by those with worries."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "survey_id": survey_id,
            "survey_year": year,
            "survey_kind": "national",
            "respondent_id": [f"R{i:05d}" for i in range(n)],
            "pref_code": rng.integers(1, 48, n),
            "sex": rng.choice([1, 2, 3, 9], n),
            "age": pd.array(rng.integers(16, 100, n), dtype="Int32"),
            "age_band": None,
            "uk_age_band": None,
            "household_single": rng.choice([0, 1, 9], n),
            "weight": rng.uniform(0.5, 2.0, n),
        }
    )
    for q, codes in schema.QUESTIONS.items():
        df[q] = rng.choice(sorted(codes), n)
    df["q_has_worries"] = rng.choice([1, 2, 9], n)
    df["q_support_received"] = np.where(df["q_has_worries"] == 1, rng.choice([1, 2, 9], n), 9)
    df.loc[0, "age"] = pd.NA  # missing age is allowed
    df["file_id"] = file_id
    df["source_row"] = np.arange(1, n + 1)
    return df


def programme_frame(years=(2023, 2024), file_id: str = "f-prog") -> pd.DataFrame:
    rows = []
    for fy in years:
        for pref in range(1, 48):
            for metric, (_, unit) in schema.PROGRAMME_METRICS.items():
                value = float(pref % 2) if unit == "flag" else float(pref * 10)
                rows.append((fy, pref, metric, value, unit, "synthetic"))
    df = pd.DataFrame(rows, columns=schema.PROGRAMME_COLUMNS)
    df["file_id"] = file_id
    df["source_row"] = np.arange(1, len(df) + 1)
    return df


def survey_staged(
    file_id="f-survey", name=SURVEY_FILE, survey_id="national-2024", year: int | None = 2024, rows=N
) -> StagedFile:
    return StagedFile(
        path=Path(name),
        file_name=name,
        file_id=file_id,
        kind="survey",
        row_count=rows,
        survey_id=survey_id,
        survey_year=year,
    )


def prog_staged(file_id="f-prog", name=PROG_FILE, rows=0) -> StagedFile:
    return StagedFile(path=Path(name), file_name=name, file_id=file_id, kind="programme", row_count=rows)


@pytest.fixture
def con(tmp_path):
    c = duckdb.connect(str(tmp_path / "staging.duckdb"))
    c.execute(schema.SURVEY_TABLE_DDL.format(name="staging_survey"))
    c.execute(schema.PROGRAMME_TABLE_DDL.format(name="staging_programme"))
    yield c
    c.close()


def stage(con, df: pd.DataFrame, table: str) -> None:
    con.register("incoming", df)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
    con.unregister("incoming")


def run_survey(con, df, sf=None) -> ValidationReport:
    stage(con, df, "staging_survey")
    return validate_staged(con, [sf or survey_staged()])


def run_programme(con, df) -> ValidationReport:
    stage(con, df, "staging_programme")
    return validate_staged(con, [prog_staged(rows=len(df))])


def critical_message(
    column: str,
    rule: str,
    rule_ja: str,
    count: int,
    rows: list[int],
    examples: list,
    ids: list[str] | None = None,
    others: str = OTHERS_0,
    file: str = SURVEY_FILE,
) -> str:
    head = f"{file}, column '{column}': {rule} / {rule_ja} [critical / 重大]"
    noun = "row" if count == 1 else "rows"
    bits = f"{count} {noun}; rows {', '.join(map(str, rows))}; examples {', '.join(map(repr, examples))}"
    tail = f"respondent_id {', '.join(ids)}. {others}" if ids else others
    return f"{head} ({bits}). {tail}"


# --- validate_staged ------------------------------------------------------------------------------


class TestValidateStaged:
    def test_clean_survey_and_programme_pass(self, con, tmp_path):
        stage(con, survey_frame(), "staging_survey")
        prog = programme_frame()
        stage(con, prog, "staging_programme")
        report = validate_staged(con, [survey_staged(), prog_staged(rows=len(prog))])
        assert not report.has_critical and not report.has_warning, report.summary()
        assert all(r.success is True for r in report.results)
        n_survey = len(load_suite_spec("survey")["expectations"])
        n_prog = len(load_suite_spec("programme")["expectations"])
        assert len(report.results) == n_survey + n_prog
        assert [f.rows for f in report.files] == [N, len(prog)]
        with pytest.raises(ValueError):
            report.to_error()
        html = report.write(tmp_path / "quality").read_text(encoding="utf-8")
        assert "✓ 合格 Pass — すべての検証に合格しました" in html
        assert "不合格 Fail</span></span></td>" not in html

    def test_age_out_of_range_message(self, con):
        df = survey_frame()
        df.loc[2, "age"] = 130
        df.loc[6, "age"] = 15
        report = run_survey(con, df)
        assert report.has_critical and not report.has_warning
        err = report.to_error()
        assert isinstance(err, DataError) and err.exit_code == 1
        assert str(err) == (
            "national-2024.csv, column 'age': age 16–120 or missing / 年齢は16～120歳または欠測 "
            "[critical / 重大] (2 rows; rows 3, 7; examples 130, 15). respondent_id R00002, R00006. "
            "0 other critical failures / ほかの重大な不合格 0 件"
        )

    @pytest.mark.parametrize("column", sorted(schema.CODE_SETS))
    def test_code_outside_set(self, con, column):
        df = survey_frame()
        df.loc[4, column] = 7 if 7 not in schema.CODE_SETS[column] else 8
        bad = int(df.loc[4, column])
        if column == "q_has_worries":  # keep the warning rule out of the way
            df.loc[4, "q_support_received"] = 9
        report = run_survey(con, df)
        codes = ", ".join(map(str, sorted(schema.CODE_SETS[column])))
        assert str(report.to_error()) == critical_message(
            column,
            f"code in the questionnaire's set {{{codes}}}",
            f"調査票のコード {{{codes}}} のいずれか",
            1,
            [5],
            [bad],
            ["R00004"],
        )

    def test_pref_code_outside_1_47(self, con):
        df = survey_frame()
        df.loc[9, "pref_code"] = 48
        df.loc[10, "pref_code"] = 0
        report = run_survey(con, df)
        assert str(report.to_error()) == critical_message(
            "pref_code",
            "prefecture code in 1–47 (JIS X 0401)",
            "都道府県コードが1～47（JIS X 0401）",
            2,
            [10, 11],
            [48, 0],
            ["R00009", "R00010"],
        )

    def test_weight_not_positive(self, con):
        df = survey_frame()
        df.loc[1, "weight"] = 0.0
        df.loc[3, "weight"] = -1.5
        report = run_survey(con, df)
        assert str(report.to_error()) == critical_message(
            "weight",
            "weight positive and at most 1,000,000,000",
            "ウェイトは正で10億以下",
            2,
            [2, 4],
            [0.0, -1.5],
            ["R00001", "R00003"],
            others="2 other critical failures / ほかの重大な不合格 2 件",
        )
        # the two aggregate weight rules fail too (never pass on a weight <= 0), naming the extremes
        ratio, kish = [r for r in report.critical_failures if r.expectation != "expect_column_values_to_be_between"]
        assert (
            ratio.note
            == kish.note
            == (
                "weights not all positive and finite: see the rule 'weight positive and at "
                "most 1,000,000,000' / 正の有限値でないウェイトがあります"
            )
        )

    def test_respondent_id_duplicated(self, con):
        df = survey_frame()
        df.loc[11, "respondent_id"] = "R00010"
        report = run_survey(con, df)
        failed = report.critical_failures
        assert [r.expectation for r in failed] == ["expect_compound_columns_to_be_unique"]
        assert str(report.to_error()) == critical_message(
            "respondent_id",
            "respondent_id unique within the survey",
            "回答者IDが調査内で一意",
            2,
            [11, 12],
            ["survey_id=national-2024, respondent_id=R00010"] * 2,
            ["R00010", "R00010"],
        )

    def test_survey_year_not_declared_round(self, con):
        df = survey_frame()
        df.loc[[5, 6, 7], "survey_year"] = 2023
        report = run_survey(con, df)
        assert str(report.to_error()) == critical_message(
            "survey_year",
            "survey_year equals the file's declared round",
            "調査年がファイルの調査回と一致",
            3,
            [6, 7, 8],
            [2023, 2023, 2023],
            ["R00005", "R00006", "R00007"],
        )

    def test_whole_file_of_another_round(self, con):
        report = run_survey(con, survey_frame(year=2023), survey_staged(year=2024))
        fail = report.critical_failures
        assert [r.column for r in fail] == ["survey_year"] and fail[0].unexpected_count == N

    def test_declared_round_from_survey_id_when_year_missing(self, con):
        report = run_survey(con, survey_frame(year=2023), survey_staged(year=None, survey_id="national-2024"))
        assert [r.column for r in report.critical_failures] == ["survey_year"]

    def test_no_declared_round_is_reported_not_run(self, con, tmp_path):
        report = run_survey(con, survey_frame(survey_id="adhoc"), survey_staged(year=None, survey_id="adhoc"))
        assert not report.has_critical
        not_run = [r for r in report.results if r.success is None]
        assert [r.column for r in not_run] == ["survey_year"]
        html = report.write(tmp_path / "q").read_text(encoding="utf-8")
        assert '– 未実施 <span class="en">Not run</span>' in html
        assert "no declared survey round for this file / 調査回が不明のため未実施" in html

    def test_required_column_missing(self, con):
        con.execute("ALTER TABLE staging_survey DROP COLUMN q_ucla_2")
        df = survey_frame().drop(columns=["q_ucla_2"])
        report = run_survey(con, df)
        first = report.critical_failures[0]
        assert first.expectation == "expect_column_to_exist" and first.column == "q_ucla_2"
        msg = str(report.to_error())
        assert msg.startswith(
            "national-2024.csv, column 'q_ucla_2': required column 'q_ucla_2' present / "
            "必須列「q_ucla_2」がある [critical / 重大]"
        )
        n_other = len(report.critical_failures) - 1
        assert n_other >= 1  # the code-set rule on the missing column cannot be evaluated either
        plural = "s" if n_other != 1 else ""
        assert msg.endswith(f"{n_other} other critical failure{plural} / ほかの重大な不合格 {n_other} 件")

    def test_several_critical_failures_counted(self, con):
        df = survey_frame()
        df.loc[2, "sex"] = 5
        df.loc[3, "age"] = 200
        df.loc[4, "weight"] = 0.0
        report = run_survey(con, df)
        # weight 0: "positive and at most 1,000,000,000" and both aggregate weight rules
        assert [r.column for r in report.critical_failures] == ["sex", "age", "weight", "weight", "weight"]
        assert str(report.to_error()).endswith(
            "respondent_id R00002. 4 other critical failures / ほかの重大な不合格 4 件"
        )

    def test_support_answered_without_worries_is_a_warning(self, con, tmp_path):
        df = survey_frame()
        idx = df.index[df["q_has_worries"] != 1][:3]
        df.loc[idx, "q_support_received"] = [1, 2, 1]
        report = run_survey(con, df)
        assert report.has_warning and not report.has_critical
        (w,) = report.warnings
        assert (w.column, w.severity, w.unexpected_count) == ("q_support_received", "warning", 3)
        assert [e["source_row"] for e in w.examples] == [int(i) + 1 for i in idx]
        assert [e["respondent_id"] for e in w.examples] == [f"R{int(i):05d}" for i in idx]
        html = report.write(tmp_path / "quality").read_text(encoding="utf-8")
        assert "⚠ 警告あり Passed with warnings" in html
        assert '⚠ 警告 <span class="en">Warning</span>' in html
        assert "支援の有無（1・2）は「不安や悩みがある」（q_has_worries=1）の回答者のみ" in html
        assert f"行 row {int(idx[0]) + 1} · ID R{int(idx[0]):05d}" in html
        assert "q_support_received" in report.summary() and "warning" in report.summary()

    # programme ---------------------------------------------------------------------------------

    def test_programme_negative_value(self, con):
        df = programme_frame()
        df.loc[0, "value"] = -5.0
        report = run_programme(con, df)
        assert str(report.to_error()) == critical_message(
            "value", "value non-negative", "値が0以上", 1, [1], [-5.0], file=PROG_FILE
        )

    def test_programme_wrong_unit(self, con):
        df = programme_frame()
        i = df.index[df["metric_id"] == "npo_grants_yen"][0]
        df.loc[i, "unit"] = "count"
        report = run_programme(con, df)
        assert str(report.to_error()) == critical_message(
            "unit",
            "unit matches the metric's unit",
            "単位が指標の単位と一致",
            1,
            [int(i) + 1],
            ["metric_id=npo_grants_yen, unit=count"],
            file=PROG_FILE,
        )

    def test_programme_unknown_metric(self, con):
        df = programme_frame()
        df.loc[3, "metric_id"] = "hotline_calls"
        report = run_programme(con, df)
        fails = report.critical_failures
        # an unknown metric has no known unit either
        assert [r.column for r in fails] == ["metric_id", "unit"]
        assert fails[1].examples == [{"source_row": 4, "value": "metric_id=hotline_calls, unit=flag"}]
        assert str(report.to_error()) == critical_message(
            "metric_id",
            "metric_id known (schema.PROGRAMME_METRICS)",
            "指標IDが既知（schema.PROGRAMME_METRICS）",
            1,
            [4],
            ["hotline_calls"],
            file=PROG_FILE,
            others="1 other critical failure / ほかの重大な不合格 1 件",
        )

    def test_programme_flag_not_0_1(self, con):
        df = programme_frame()
        i = df.index[df["metric_id"] == "platform"][5]
        df.loc[i, "value"] = 2.0
        report = run_programme(con, df)
        assert str(report.to_error()) == critical_message(
            "value", "flag metrics are 0 or 1", "有無の指標は0または1", 1, [int(i) + 1], [2.0], file=PROG_FILE
        )

    def test_programme_pref_code(self, con):
        df = programme_frame()
        df.loc[8, "pref_code"] = 99
        report = run_programme(con, df)
        assert report.critical_failures[0].column == "pref_code"
        assert report.to_error().rows == [9]

    def test_programme_duplicate_key(self, con):
        df = programme_frame()
        dup = df.iloc[[10]].copy()
        dup["source_row"] = len(df) + 1
        df = pd.concat([df, dup], ignore_index=True)
        report = run_programme(con, df)
        assert [r.column for r in report.critical_failures] == ["fiscal_year, pref_code, metric_id"]
        assert str(report.to_error()) == critical_message(
            "fiscal_year, pref_code, metric_id",
            "one row per fiscal year, prefecture and metric",
            "年度・都道府県・指標ごとに1行",
            2,
            [11, len(df)],
            ["fiscal_year=2023, pref_code=2, metric_id=regional_council"] * 2,
            file=PROG_FILE,
        )

    def test_programme_missing_prefecture_is_a_warning(self, con, tmp_path):
        df = programme_frame()
        drop = (df["fiscal_year"] == 2024) & (df["metric_id"] == "platform") & df["pref_code"].isin([13, 27])
        df = df[~drop].reset_index(drop=True)
        df["source_row"] = np.arange(1, len(df) + 1)
        report = run_programme(con, df)
        assert report.has_warning and not report.has_critical
        (w,) = report.warnings
        assert w.unexpected_count == 2
        assert w.examples == [{"value": "fiscal_year=2024, metric_id=platform: missing pref_code 13, 27"}]
        html = report.write(tmp_path / "quality").read_text(encoding="utf-8")
        assert "年度・指標ごとに47都道府県がそろっている" in html
        assert "fiscal_year=2024, metric_id=platform: missing pref_code 13, 27" in html

    def test_only_the_files_rows_are_validated(self, con):
        stage(con, survey_frame(file_id="other").assign(age=200), "staging_survey")
        report = run_survey(con, survey_frame())
        assert not report.has_critical

    def test_context_is_cached(self, con):
        run_survey(con, survey_frame())
        first = _GX.get()
        validate_staged(con, [survey_staged()])
        assert _GX.get() is first


# --- validate_warehouse ---------------------------------------------------------------------------


def make_warehouse(path: Path, survey_df: pd.DataFrame, prog_df: pd.DataFrame, declared_year=2024) -> None:
    c = duckdb.connect(str(path))
    c.execute(schema.FILES_TABLE_DDL)
    c.execute(schema.SURVEY_TABLE_DDL.format(name="survey_responses"))
    c.execute(schema.PROGRAMME_TABLE_DDL.format(name="programme"))
    c.register("s", survey_df)
    c.execute("INSERT INTO survey_responses BY NAME SELECT * FROM s")
    c.register("p", prog_df)
    c.execute("INSERT INTO programme BY NAME SELECT * FROM p")
    c.execute(
        "INSERT INTO files VALUES (?, ?, ?, 'survey', 'national-2024', ?, 'utf-8', ?, true, now())",
        ["f-survey", SURVEY_FILE, f"data/{SURVEY_FILE}", declared_year, len(survey_df)],
    )
    c.execute(
        "INSERT INTO files VALUES (?, ?, ?, 'programme', NULL, NULL, 'utf-8', ?, true, now())",
        ["f-prog", PROG_FILE, f"data/{PROG_FILE}", len(prog_df)],
    )
    c.close()


class TestValidateWarehouse:
    def test_clean_warehouse(self, warehouse):
        make_warehouse(warehouse, survey_frame(), programme_frame())
        report = validate_warehouse(warehouse)
        assert [f.file_name for f in report.files] == [SURVEY_FILE, PROG_FILE]
        assert report.files[0].survey_year == 2024
        assert not report.has_critical and not report.has_warning

    def test_declared_round_from_files_table(self, warehouse):
        make_warehouse(warehouse, survey_frame(), programme_frame(), declared_year=2023)
        report = validate_warehouse(warehouse)
        assert [(r.file_name, r.column) for r in report.critical_failures] == [(SURVEY_FILE, "survey_year")]

    def test_warning_in_committed_data(self, warehouse):
        df = survey_frame()
        i = df.index[df["q_has_worries"] == 2][0]
        df.loc[i, "q_support_received"] = 1
        make_warehouse(warehouse, df, programme_frame())
        report = validate_warehouse(warehouse)
        assert report.has_warning and not report.has_critical
        assert report.warnings[0].examples[0]["source_row"] == int(i) + 1

    def test_missing_warehouse_is_usage_error(self, tmp_path):
        with pytest.raises(UsageError, match="--warehouse"):
            validate_warehouse(tmp_path / "nope.duckdb")

    def test_empty_warehouse(self, warehouse):
        from pipelines.io import warehouse as warehouse_db

        warehouse_db.connect(warehouse, write=True).close()  # a new Tsunagari warehouse, no data yet
        report = validate_warehouse(warehouse)
        assert report.results == [] and not report.has_critical

    def test_empty_duckdb_file_of_another_application_is_refused_unchanged(self, warehouse):
        duckdb.connect(str(warehouse)).close()
        before = warehouse.read_bytes()
        with pytest.raises(UsageError, match="Tsunagari did not create"):
            validate_warehouse(warehouse)
        assert warehouse.read_bytes() == before

    def test_cli_exit_codes(self, warehouse, tmp_path):
        df = survey_frame()
        df.loc[0, "sex"] = 4
        make_warehouse(warehouse, df, programme_frame())
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        cmd = [
            sys.executable,
            "-c",
            "from pipelines.cli import main; main()",
            "validate",
            "--warehouse",
            str(warehouse),
            "--out",
            str(tmp_path / "site"),
            "--quiet",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert "code in the questionnaire's set {1, 2, 3, 9}" in proc.stdout
        assert "row 1 id R00000: 4" in proc.stdout
        data = json.loads((tmp_path / "site" / "quality" / "results.json").read_text(encoding="utf-8"))
        assert data["has_critical"] is True


# --- ValidationReport -----------------------------------------------------------------------------


class TestValidationReport:
    @pytest.fixture
    def mixed(self, con) -> ValidationReport:
        df = survey_frame()
        df.loc[2, "age"] = 130
        i = df.index[df["q_has_worries"] == 2][0]
        df.loc[i, "q_support_received"] = 2
        stage(con, df, "staging_survey")
        prog = programme_frame()
        stage(con, prog[prog["pref_code"] != 47], "staging_programme")
        return validate_staged(con, [survey_staged(), prog_staged()])

    def test_summary_table(self, mixed):
        text = mixed.summary()
        header = next(line for line in text.splitlines() if line.startswith("suite"))
        for col in ("suite", "expectation", "severity", "unexpected", "examples"):
            assert col in header
        age = next(line for line in text.splitlines() if "age 16–120" in line)
        assert "critical" in age and "fail" in age and "row 3 id R00002: 130" in age
        assert "national-2024.csv (survey, 60 rows): " in text
        assert "Critical failures: nothing is committed" in text

    def test_json_round_trip(self, mixed):
        data = json.loads(json.dumps(mixed.to_json()))
        assert data["has_critical"] is True and data["has_warning"] is True
        age = next(r for r in data["results"] if r["column"] == "age" and r["expectation"].endswith("between"))
        assert age["outcome"] == "fail" and age["examples"] == [
            {"source_row": 3, "respondent_id": "R00002", "value": 130}
        ]
        assert data["counts"]["fail"] == 1 and data["counts"]["warning"] == 2

    def test_write_self_contained_page(self, mixed, tmp_path):
        out = tmp_path / "quality"
        mixed.write(out)
        data = json.loads((out / "results.json").read_text(encoding="utf-8"))
        assert len(data["results"]) == len(mixed.results)
        html = (out / "index.html").read_text(encoding="utf-8")
        assert '<html lang="ja">' in html
        assert not re.search(r"https?://", html)
        assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*\bhref=|@import|url\(", html)
        assert "<style>" in html
        for label in ("✓ 合格", "⚠ 警告", "✗ 不合格"):
            assert label in html
        assert '調査個票 <span class="en">Survey microdata</span>' in html
        assert '事業データ <span class="en">Programme data</span>' in html
        assert html.count('<section class="file">') == 2
        # every expectation of both suites is listed with its outcome
        assert html.count('<tr class="row-') == len(mixed.results)
        assert "行 row 3 · ID R00002: <code>130</code>" in html

    def test_merge(self, mixed, con):
        other = validate_staged(con, [survey_staged(file_id="none", name="empty.csv")])
        merged = mixed.merge(other)
        assert len(merged.results) == len(mixed.results) + len(other.results)
        assert [f.file_name for f in merged.files] == [SURVEY_FILE, PROG_FILE, "empty.csv"]
        assert merged.has_critical and ValidationReport.combine([other]).results == other.results


# --- the suite files ------------------------------------------------------------------------------


class TestSuiteFiles:
    def test_every_expectation_has_a_severity_and_rule(self):
        for kind in ("survey", "programme"):
            raw = json.loads((ROOT / "expectations" / f"{kind}.json").read_text(encoding="utf-8"))
            for exp in raw["expectations"]:
                assert exp["severity"] in ("critical", "warning")
                assert exp["meta"]["rule"] and exp["meta"]["rule_ja"]

    def test_code_sets_match_schema(self):
        spec = load_suite_spec("survey")["expectations"]
        sets = {
            e["kwargs"]["column"]: set(e["kwargs"]["value_set"])
            for e in spec
            if e["type"] == "expect_column_values_to_be_in_set"
        }
        assert sets == {**schema.CODE_SETS, "pref_code": set(range(1, 48))}
        exists = [e["kwargs"]["column"] for e in spec if e["type"] == "expect_column_to_exist"]
        assert exists == schema.SURVEY_COLUMNS

    def test_units_match_schema(self):
        spec = load_suite_spec("programme")["expectations"]
        pair = next(e for e in spec if e["type"] == "expect_column_pair_values_to_be_in_set")
        assert {m: u for m, u in pair["kwargs"]["value_pairs_set"]} == {
            m: u for m, (_, u) in schema.PROGRAMME_METRICS.items()
        }

    def test_severities(self):
        warn = {
            k: [e["meta"]["rule"] for e in load_suite_spec(k)["expectations"] if e["severity"] == "warning"]
            for k in ("survey", "programme")
        }
        assert warn == {
            "survey": [
                "q_support_received answered (1 or 2) only where q_has_worries = 1",
                "sample design: at least 2 PSUs in every stratum (a single-PSU stratum's variance is "
                "taken about the sample average, conservative)",
            ],
            "programme": ["all 47 prefectures present for every fiscal year and metric"],
        }

    def test_gx_accepts_every_expectation(self):
        g = _GX.get()
        for kind in ("survey", "programme"):
            spec = load_suite_spec(kind)["expectations"]
            grouped = sum(1 for e in spec if e["meta"].get("for_each_group"))
            assert len(g.suite(kind, True).expectations) == len(spec) - grouped
            severities = {str(getattr(e.severity, "value", e.severity)) for e in g.suite(kind, True).expectations}
            assert severities <= {"critical", "warning"}


# --- weight rules ----------------------------------------------------------------------------------

BOUND_RULE = ("weight positive and at most 1,000,000,000", "ウェイトは正で10億以下")
RATIO_RULE = ("largest weight at most 50 times the smallest (per file)", "最大ウェイトは最小の50倍以下（ファイルごと）")
KISH_RULE = (
    "Kish effective n (Σw)²/Σw² at least 0.25 × n (per file)",
    "キッシュの有効標本サイズ (Σw)²/Σw² が n の0.25倍以上（ファイルごと）",
)


def unit_weights(n: int = 200) -> pd.DataFrame:
    df = survey_frame(n=n)
    df["weight"] = 1.0
    return df


class TestWeightRules:
    """Issue #15: one respondent's weight must not make a file's estimates (1e308, 1e9, or all the
    others 1e-300 published Osaka as 0.0% with n_eff NaN)."""

    def test_one_weight_1e308_is_refused(self, con):
        df = unit_weights()
        df.loc[6, "weight"] = 1e308
        report = run_survey(con, df)
        assert [r.rule for r in report.critical_failures] == [BOUND_RULE[0], RATIO_RULE[0], KISH_RULE[0]]
        assert str(report.to_error()) == (
            f"{SURVEY_FILE}, column 'weight': {BOUND_RULE[0]} / {BOUND_RULE[1]} [critical / 重大] (1 row; rows 7; "
            "examples 1e+308). respondent_id R00006. 2 other critical failures / ほかの重大な不合格 2 件"
        )
        ratio, kish = report.critical_failures[1:]
        assert ratio.note == (
            "largest weight 1e+308 / smallest 1 = 1e+308 > limit 50 (TSUNAGARI_MAX_WEIGHT_RATIO): a few "
            "respondents would carry the estimates / 最大ウェイトが最小の1e+308倍です（上限50倍）。少数の回答者が結果を左右します"
        )
        assert kish.note.startswith(
            "Kish effective n (Σw)²/Σw² = 1.0, 0.50% of n = 200 < 25% (TSUNAGARI_MIN_EFFECTIVE_N_FRACTION)"
        )

    def test_uniformly_huge_weights_are_refused(self, con):
        """All weights 1e300: the ratio (1) and Kish (n) rules pass, but Σw² overflows and every
        estimate came out NaN; the upper bound refuses the file, naming the rows."""
        df = unit_weights(60)
        df["weight"] = 1e300
        report = run_survey(con, df)
        assert str(report.to_error()) == (
            f"{SURVEY_FILE}, column 'weight': {BOUND_RULE[0]} / {BOUND_RULE[1]} [critical / 重大] (60 rows; "
            "rows 1, 2, 3, 4, 5; examples 1e+300, 1e+300, 1e+300, 1e+300, 1e+300). respondent_id R00000, R00001, "
            "R00002, R00003, R00004. 0 other critical failures / ほかの重大な不合格 0 件"
        )

    def test_one_weight_1e9_and_others_1e_minus_300(self, con):
        df = unit_weights()
        df.loc[6, "weight"] = 1e9
        assert report_note(run_survey(con, df), 0).startswith("largest weight 1e+09 / smallest 1 = 1e+09 > limit 50")
        con.execute("DELETE FROM staging_survey")
        df = unit_weights()
        df["weight"] = 1e-300
        df.loc[6, "weight"] = 1.0
        report = run_survey(con, df)
        assert [ex["source_row"] for ex in report.critical_failures[0].examples] == [7, 1]
        assert report_note(report, 0).startswith("largest weight 1 / smallest 1e-300 = 1e+300 > limit 50")

    def test_kish_floor_alone(self, con):
        """Ratio 50 is allowed, but 10 of 200 respondents at 50 leave n_eff = 690²/25,190 = 18.9 (9.45%)."""
        df = unit_weights()
        df.loc[:9, "weight"] = 50.0
        report = run_survey(con, df)
        assert [r.rule for r in report.critical_failures] == [KISH_RULE[0]]
        assert str(report.to_error()) == (
            f"{SURVEY_FILE}, column 'weight': {KISH_RULE[0]} / {KISH_RULE[1]} [critical / 重大] (rows 1, 11; "
            "examples 50.0, 1.0). respondent_id R00000, R00010. Kish effective n (Σw)²/Σw² = 18.9, 9.45% of n = 200 "
            "< 25% (TSUNAGARI_MIN_EFFECTIVE_N_FRACTION) / 有効標本サイズ 18.9（n=200 の9.45%）が下限25%未満です。"
            f"ウェイトの偏りが大きすぎます. {OTHERS_0}"
        )

    def test_limits_from_the_environment(self, con, monkeypatch):
        df = unit_weights()
        df.loc[:9, "weight"] = 50.0
        monkeypatch.setenv("TSUNAGARI_MIN_EFFECTIVE_N_FRACTION", "0.05")
        monkeypatch.setenv("TSUNAGARI_MAX_WEIGHT_RATIO", "49")
        report = run_survey(con, df)
        assert [r.rule for r in report.critical_failures] == ["largest weight at most 49 times the smallest (per file)"]
        monkeypatch.setenv("TSUNAGARI_MAX_WEIGHT_RATIO", "50")
        con.execute("DELETE FROM staging_survey")
        assert run_survey(con, df).ok

    @pytest.mark.parametrize(
        "env, value, key, wanted",
        [
            ("TSUNAGARI_MAX_WEIGHT_RATIO", "0.5", "max_weight_ratio", "a number >= 1 / 1 以上の数"),
            ("TSUNAGARI_MAX_WEIGHT_RATIO", "lots", "max_weight_ratio", "a number >= 1 / 1 以上の数"),
            (
                "TSUNAGARI_MIN_EFFECTIVE_N_FRACTION",
                "1.5",
                "min_effective_n_fraction",
                "a fraction in (0, 1] / 0 より大きく 1 以下の数",
            ),
            (
                "TSUNAGARI_MIN_EFFECTIVE_N_FRACTION",
                "nan",
                "min_effective_n_fraction",
                "a fraction in (0, 1] / 0 より大きく 1 以下の数",
            ),
        ],
    )
    def test_bad_setting_names_the_variable(self, monkeypatch, env, value, key, wanted):
        monkeypatch.setenv(env, value)
        with pytest.raises(config.SettingsError) as exc:
            weight_limits()
        assert str(exc.value) == f"{env}: limits.{key} = '{value}': must be {wanted}を指定してください"
        assert exc.value.exit_code == 2

    def test_defaults_pass_the_bundled_sample(self):
        """Every weighted sample file (prefecture surveys, weights 0.5-2.0) is well inside the limits."""
        from pipelines.ingest.stage import read_raw
        from pipelines.validate.gx_weights import kish_effective_fraction, max_to_min_ratio

        limits = weight_limits()
        seen = 0
        for path in sorted((ROOT / "data" / "sample").glob("pref*")):
            raw = read_raw(path)
            i = next(i for i, h in enumerate(raw.headers) if h in ("weight", "ウェイト"))
            w = np.array([float(v) for v in raw.columns[i].to_pylist()])
            assert max_to_min_ratio(w) <= limits["max_weight_ratio"] / 10
            assert kish_effective_fraction(w) >= limits["min_effective_n_fraction"] * 3
            seen += 1
        assert seen == 3


class TestWeightMetrics:
    def test_hand_computed(self):
        from pipelines.validate.gx_weights import kish_effective_fraction, max_to_min_ratio

        assert kish_effective_fraction(np.array([1.0, 1.0, 2.0])) == pytest.approx(16 / 6 / 3)
        assert max_to_min_ratio(np.array([0.5, 1.0, 2.0])) == 4.0
        assert kish_effective_fraction(np.array([])) is None

    def test_no_overflow(self):
        """(Σw)² of 1e308 is inf in float64: the metric is computed on w / max(w)."""
        from pipelines.validate.gx_weights import kish_effective_fraction

        assert kish_effective_fraction(np.array([1e308, 1e308, 1e308])) == pytest.approx(1.0)
        assert kish_effective_fraction(np.array([1e308, 1.0, 1.0])) == pytest.approx(1 / 3)

    def test_equals_one_over_one_plus_cv_squared(self):
        """n_eff / n = 1 / (1 + CV²) with the population CV (Kish's weighting design effect)."""
        from pipelines.validate.gx_weights import kish_effective_fraction

        w = np.random.default_rng(3).uniform(0.5, 2.0, 500)
        cv2 = np.var(w) / np.mean(w) ** 2
        assert kish_effective_fraction(w) == pytest.approx(1 / (1 + cv2))

    @pytest.mark.parametrize("bad", [0.0, -1.0, np.inf])
    def test_non_positive_or_infinite_is_nan(self, bad):
        from pipelines.validate.gx_weights import kish_effective_fraction, max_to_min_ratio

        w = np.array([1.0, bad])
        assert np.isnan(kish_effective_fraction(w)) and np.isnan(max_to_min_ratio(w))


def report_note(report: ValidationReport, i: int) -> str:
    return report.critical_failures[i].note


# --- through the ingest stage (pipelines/ingest/stage.py calls validate_staged) ---------------------------


def write_survey_csv(path: Path, df: pd.DataFrame) -> Path:
    df[schema.SURVEY_COLUMNS].to_csv(path, index=False)
    return path


def warehouse_state(path: Path) -> tuple:
    c = duckdb.connect(str(path), read_only=True)
    try:
        return (
            c.execute("SELECT count(*) FROM survey_responses").fetchone()[0],
            c.execute("SELECT file_name, file_id FROM files ORDER BY file_name").fetchall(),
        )
    finally:
        c.close()


class TestThroughIngest:
    @pytest.fixture
    def loaded(self, tmp_path, warehouse):
        from pipelines.ingest.stage import ingest_files

        src = tmp_path / "in"
        src.mkdir()
        write_survey_csv(src / SURVEY_FILE, survey_frame())
        programme_frame()[schema.PROGRAMME_COLUMNS].to_csv(src / PROG_FILE, index=False)
        result = ingest_files([src], warehouse)
        assert not result.validation.has_critical and not result.validation.has_warning
        return warehouse

    def test_critical_failure_rejects_and_leaves_warehouse_unchanged(self, loaded, tmp_path):
        from pipelines.ingest.stage import ingest_files

        before = warehouse_state(loaded)
        df = survey_frame(survey_id="national-2025", year=2025)
        df.loc[4, "age"] = 130  # (impossible codes are already refused by ingest's label mapping)
        bad = write_survey_csv(tmp_path / "national-2025.csv", df)
        with pytest.raises(DataError) as exc:
            ingest_files([bad], loaded)
        assert str(exc.value) == critical_message(
            "age",
            "age 16–120 or missing",
            "年齢は16～120歳または欠測",
            1,
            [5],
            [130],
            ["R00004"],
            file="national-2025.csv",
        )
        assert warehouse_state(loaded) == before

    def test_warning_is_committed_and_reported(self, loaded, tmp_path):
        from pipelines.ingest.stage import ingest_files

        df = survey_frame(survey_id="national-2025", year=2025)
        i = df.index[df["q_has_worries"] == 2][0]
        df.loc[i, "q_support_received"] = 1
        result = ingest_files([write_survey_csv(tmp_path / "national-2025.csv", df)], loaded)
        assert result.validation.has_warning and not result.validation.has_critical
        assert warehouse_state(loaded)[0] == 2 * N
        html = validate_warehouse(loaded).write(tmp_path / "quality").read_text(encoding="utf-8")
        assert '⚠ 警告 <span class="en">Warning</span>' in html and "national-2025.csv" in html


# --- results stored at ingest, reused by the quality page ------------------------------------------


def _scalar(wh: Path, sql: str):
    c = duckdb.connect(str(wh), read_only=True)
    try:
        return c.execute(sql).fetchone()[0]
    finally:
        c.close()


def _comparable(report: ValidationReport) -> dict:
    data = report.to_json()
    data.pop("generated_at")
    data.pop("seconds")
    return data


class TestStoredResults:
    """The build's quality page reuses the results computed at ingest (validate_warehouse(reuse=True))
    only when they describe exactly the rows in the warehouse; the result is the same as validating."""

    @pytest.fixture
    def loaded(self, tmp_path_factory, tmp_path):
        """The bundled sample ingested (once per session, shared_sample_ingest): this test's own copy
        of its input folder and warehouse."""
        import shutil

        from tests.shared_builds import shared_sample_ingest

        root = shutil.copytree(shared_sample_ingest(tmp_path_factory), tmp_path / "ingested", symlinks=True)
        return root / "input", root / "wh.duckdb"

    def stored(self, wh: Path) -> dict[str, int]:
        c = duckdb.connect(str(wh), read_only=True)
        try:
            return dict(
                c.execute(
                    "SELECT f.file_name, v.row_count FROM validation_results v JOIN files f USING (file_id)"
                ).fetchall()
            )
        finally:
            c.close()

    def test_every_committed_file_has_its_results(self, loaded):
        src, wh = loaded
        names = sorted(p.name for p in src.iterdir() if p.suffix in (".csv", ".xlsx", ".parquet"))
        stored = self.stored(wh)
        assert sorted(stored) == names
        assert stored["national-2024.csv"] == 10876

    def test_reuse_gives_the_same_report_as_validating(self, loaded):
        _, wh = loaded
        assert _comparable(validate_warehouse(wh, reuse=True)) == _comparable(validate_warehouse(wh))

    def test_replaced_file_drops_its_results(self, loaded, tmp_path):
        from pipelines.ingest.stage import ingest_files

        src, wh = loaded
        path = src / "pref11-2024.csv"
        df = pd.read_csv(path, encoding="cp932", dtype=str)
        df = df.iloc[:-10]
        df.to_csv(path, encoding="cp932", index=False)
        ingest_files([src], wh)
        stored = self.stored(wh)
        assert stored["pref11-2024.csv"] == 1458
        assert (
            _scalar(wh, "SELECT count(*) FROM validation_results WHERE file_id NOT IN (SELECT file_id FROM files)") == 0
        )
        assert _comparable(validate_warehouse(wh, reuse=True)) == _comparable(validate_warehouse(wh))

    def test_file_that_lost_rows_is_validated_again(self, loaded, tmp_path):
        """A later programme file replaces some keys of the earlier one: the earlier file's stored
        results describe rows that are gone, so they are not reused."""
        from pipelines.ingest.stage import ingest_files

        src, wh = loaded
        fix = tmp_path / "fix"
        fix.mkdir()
        prog = pd.read_csv(src / "programme.csv", encoding="utf-8-sig", dtype=str)
        prog.head(5).to_csv(fix / "programme-fix.csv", index=False, encoding="utf-8")
        ingest_files([fix], wh)
        left = _scalar(
            wh, "SELECT count(*) FROM programme p JOIN files f USING (file_id) WHERE f.file_name = 'programme.csv'"
        )
        assert left < self.stored(wh)["programme.csv"]
        reused = validate_warehouse(wh, reuse=True)
        assert _comparable(reused) == _comparable(validate_warehouse(wh))
        assert [f.rows for f in reused.files if f.file_name == "programme.csv"] == [left]

    def test_results_of_other_suites_are_not_reused(self, loaded, monkeypatch):
        import pipelines.validate.stage as v

        _, wh = loaded
        monkeypatch.setattr(v, "suite_digest", lambda: "another suite")
        calls = []
        real = v.validate_frame
        monkeypatch.setattr(v, "validate_frame", lambda df, sf: calls.append(sf.file_name) or real(df, sf))
        validate_warehouse(wh, reuse=True)
        assert len(calls) == 7


class TestValidationProcess:
    """pipelines.validate.gx_process: the build's GX process gives the results of validating in-process, and
    the build falls back to validating itself when that process is not there."""

    @pytest.fixture
    def proc(self):
        from pipelines.validate import gx_process as validator

        validator.start()
        yield validator
        validator.stop()

    def bad_survey(self) -> pd.DataFrame:
        df = survey_frame()
        df.loc[[3, 9], "q_loneliness"] = 7  # outside the codes: critical, with row examples
        df.loc[5, "weight"] = -1.0
        return df

    def test_same_results_as_in_process(self, con, proc):
        df = self.bad_survey()
        stage(con, df, "staging_survey")
        remote = validate_staged(con, [survey_staged()])
        assert proc.running()
        proc.stop()
        local = validate_staged(con, [survey_staged()])
        assert remote.has_critical
        assert _comparable(remote) == _comparable(local)
        assert str(remote.to_error()) == str(local.to_error())

    def test_one_process_however_often_started(self, proc):
        first = proc._PROC
        proc.start()
        assert proc._PROC is first and first.is_alive()
        proc.stop()
        assert not proc.running() and not first.is_alive()

    def test_a_dead_process_means_validating_here(self, con, proc, caplog, monkeypatch):
        import logging

        # a build run earlier in this test process set the tsunagari loggers not to propagate
        monkeypatch.setattr(logging.getLogger("tsunagari"), "propagate", True)
        df = self.bad_survey()
        stage(con, df, "staging_survey")
        proc._PROC.kill()
        proc._PROC.join()
        with caplog.at_level("WARNING", logger="tsunagari.validator"):
            report = validate_staged(con, [survey_staged()])
        assert "validation process unavailable" in caplog.text
        assert not proc.running()
        proc_free = validate_staged(con, [survey_staged()])
        assert _comparable(report) == _comparable(proc_free)

    def test_an_error_of_the_validation_itself_is_raised_here(self, proc):
        import dataclasses

        sf = dataclasses.replace(survey_staged(), kind="no-such-kind")
        with pytest.raises(KeyError, match="no-such-kind"):
            proc.validate_frame(survey_frame(), sf, local=validate_frame)
        assert proc.running()  # the process is fine: the next file is validated there

    def test_build_validates_in_its_process_and_stops_it(self, tmp_path):
        """`tsunagari build` starts the process first thing; ingest validates there; no process is
        left after the build (nor after a build with nothing new, which stops it unused)."""
        import shutil

        import psutil

        src = tmp_path / "input"
        src.mkdir()
        shutil.copy(ROOT / "data" / "sample" / "national-2024.csv", src)
        cmd = [
            sys.executable,
            "-m",
            "pipelines.cli",
            "build",
            "--input",
            str(src),
            "--out",
            str(tmp_path / "site"),
            "--warehouse",
            str(tmp_path / "wh.duckdb"),
            "--pref",
            "13",
            "--jobs",
            "1",
            "--quiet",
        ]
        for _ in range(2):
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
            assert proc.returncode == 0, proc.stderr
            assert "leaked" not in proc.stderr
        log = (tmp_path / ".site.tsunagari-work" / "build.log").read_text(encoding="utf-8")
        assert "validated 1 file(s)" in log and "(in the build's validation process)" in log
        # the build ran in tmp_path: any process of its (validator, workers, kernels) has that cwd
        left = [p for p in psutil.process_iter(["cwd", "cmdline"]) if p.info["cwd"] == str(tmp_path)]
        assert not left, [p.info["cmdline"] for p in left]

    def test_deferred_module_is_imported_on_first_use(self):
        """The stand-ins behave as the module once used, submodule imports included."""
        code = (
            "import sys\n"
            "from pipelines.validator import defer_imports, _Deferred\n"
            "defer_imports(['colorsys', 'xml.dom'])\n"
            "import colorsys\n"
            "assert isinstance(colorsys, _Deferred)\n"
            "assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)\n"
            "assert not isinstance(sys.modules['colorsys'], _Deferred)\n"
            "import xml.dom.minidom\n"
            "assert xml.dom.minidom.parseString('<a>x</a>').documentElement.tagName == 'a'\n"
            "print('ok')\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip() == "ok", proc.stderr

    def test_validation_does_not_need_the_deferred_modules(self, tmp_path):
        """GX imported with scipy.stats and altair deferred validates both suites (survey with
        critical failures, programme with its per-group expectation) without importing them:
        the 0.65 s they cost is saved, and the results are those of a normal import."""
        import pickle

        bad = self.bad_survey()
        frames = tmp_path / "frames.pkl"
        frames.write_bytes(pickle.dumps([(bad, survey_staged()), (programme_frame(), prog_staged())]))
        code = (
            "import pickle, sys\n"
            "from pipelines.validator import defer_imports, _Deferred, DEFERRED_MODULES\n"
            "defer_imports()\n"
            "from pipelines.validate import validate_frame\n"
            f"out = [validate_frame(df, sf) for df, sf in pickle.loads(open({str(frames)!r}, 'rb').read())]\n"
            "still = [m for m in DEFERRED_MODULES if isinstance(sys.modules.get(m), _Deferred)]\n"
            "sys.stdout.buffer.write(pickle.dumps((out, still)))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        out, still = pickle.loads(proc.stdout)
        assert still == ["scipy.stats", "altair"]
        from pipelines.validate.stage import validate_frame

        local = [validate_frame(bad, survey_staged()), validate_frame(programme_frame(), prog_staged())]
        assert [[r.to_json() for r in rs] for rs in out] == [[r.to_json() for r in rs] for rs in local]
        assert any(r.success is False for r in out[0])


# --- the 設計効果 section (issue #22 item 4) -------------------------------------------------------


class TestDesignEffectsSection:
    """The quality page lists the design effect of every survey (estimated by Taylor linearisation,
    or the default with its basis) and the sensitivity line of the latest round, checked against a
    recomputation with the indicators functions."""

    @pytest.fixture(scope="class")
    def design_warehouse(self, tmp_path_factory) -> Path:
        from test_indicators import create_tables, generate_round

        from pipelines.io import warehouse as warehouse_db

        path = tmp_path_factory.mktemp("design") / "warehouse.duckdb"
        warehouse_db.connect(path, write=True).close()  # a Tsunagari warehouse
        con = duckdb.connect(str(path))
        create_tables(con)
        generate_round(con, 2023, 3_000, seed=0.31)
        generate_round(con, 2024, 4_000, seed=0.32, shift=0.02)
        generate_round(con, 2024, 500, seed=0.33, kind="prefecture", pref=27)
        # the 2024 national survey with a stratified cluster design (strata: 4 groups of prefectures)
        con.execute("""UPDATE survey_responses SET stratum = 'S' || CAST(pref_code % 4 AS VARCHAR),
                       psu = CAST(pref_code AS VARCHAR) || '-' || CAST(CASE WHEN q_loneliness >= 4 THEN 0
                             ELSE 1 + hash(respondent_id) % 3 END AS VARCHAR)
                       WHERE survey_id = 'national-2024'""")
        con.close()
        return path

    def test_section_shows_deffs_and_sensitivity(self, design_warehouse, tmp_path):
        from pipelines.domain import config
        from pipelines.indicators.stage import (
            compare_with_national,
            comparison_flags,
            design_effect_summary,
            load_catalogue,
            round_data,
        )

        write_quality_page(design_warehouse, tmp_path / "quality", design=quality_design(design_warehouse))
        html = (tmp_path / "quality" / "index.html").read_text(encoding="utf-8")
        section = html[html.index('<section id="design-effects">') :]
        section = section[: section.index("</section>")]
        assert '<h2>設計効果 <span class="en">Design effects</span></h2>' in section

        con = duckdb.connect(str(design_warehouse), read_only=True)
        summary = design_effect_summary(con).set_index("survey_id")
        inds = [i for i in load_catalogue() if i.source == "survey"]
        recomputed = {
            d: comparison_flags(compare_with_national(round_data(con, 2024, inds, {"*": d}).cells.copy()))
            for d in (1.0, 1.5, 2.0)
        }
        con.close()
        # every survey, with its deff: national-2024 estimated (range over indicators), the others default
        nat = summary.loc["national-2024"]
        assert nat.method == "estimated" and nat.n_strata == 4 and nat.deff_min < nat.deff_max
        row = section[section.index("<code>national-2024</code>") :]
        row = row[: row.index("</tr>")]
        assert f"{nat.deff_min:.2f}～{nat.deff_max:.2f}" in row and "推定値" in row
        assert f"4 層・{nat.n_psu} 第1次抽出単位" in row
        for sid in ("national-2023", "pref27-2024"):
            row = section[section.index(f"<code>{sid}</code>") :]
            row = row[: row.index("</tr>")]
            assert summary.loc[sid, "method"] == "default" and "既定値" in row and "1.50" in row
        assert "既定値 1.5 の根拠" in section and "Kish" in section
        # the sensitivity line: flags at deff 1.0 / 1.5 / 2.0 and the number expected by chance
        line = section[section.index('<p id="sensitivity-line"') :]
        line = line[: line.index("</p>")]
        for d, flags in recomputed.items():
            assert f"設計効果 {d:.1f} で <strong>{flags['n_flagged']}</strong>" in line
            assert f"{0.05 * flags['n_tests']:.1f}" in line
        assert recomputed[1.0]["n_flagged"] > recomputed[2.0]["n_flagged"]
        data = json.loads((tmp_path / "quality" / "results.json").read_text(encoding="utf-8"))
        sens = {r["setting"]: r for r in data["design_effects"]["sensitivity"]}
        assert {k: sens["1.0"][k] for k in recomputed[1.0]} == pytest.approx(recomputed[1.0])
        assert data["design_effects"]["default_deff"] == config.DEFAULT_DEFF
        assert {s["survey_id"] for s in data["design_effects"]["surveys"]} == set(summary.index)

    def test_configured_deff_is_shown(self, design_warehouse, tmp_path, monkeypatch):
        monkeypatch.setenv("TSUNAGARI_DEFF", "national=1.8")
        write_quality_page(design_warehouse, tmp_path / "q", design=quality_design(design_warehouse))
        html = (tmp_path / "q" / "index.html").read_text(encoding="utf-8")
        html = html[html.index('<section id="design-effects">') :]
        row = html[html.index("<code>national-2024</code>") :]
        row = row[: row.index("</tr>")]
        assert "指定値" in row and "1.80" in row
        assert "<code>national = 1.8</code>" in html

    def test_design_rules_in_the_suite(self, con):
        """Both design columns or neither on a row; a stratum with one PSU is a warning."""
        df = survey_frame()
        df["stratum"] = np.where(np.arange(N) < 40, "A", "B")
        df["psu"] = np.where(np.arange(N) < 20, "1", np.where(np.arange(N) < 40, "2", "9"))
        df.loc[3, "psu"] = None
        report = run_survey(con, df)
        fail = {r.rule: r for r in report.results if r.success is False}
        crit = fail["sample design: psu given wherever stratum is (both or neither)"]
        assert crit.severity == "critical" and crit.unexpected_count == 1 and crit.examples[0]["source_row"] == 4
        warn = next(r for r in fail.values() if r.rule.startswith("sample design: at least 2 PSUs"))
        assert warn.severity == "warning" and warn.unexpected_count == 1
        assert warn.examples == [{"value": "stratum=B: psu observed 1"}]

    def test_file_without_design_passes_the_design_rules(self, con):
        report = run_survey(con, survey_frame())
        design = [r for r in report.results if r.rule.startswith("sample design")]
        assert len(design) == 3 and all(r.success for r in design)
