"""The bad-input corpus (tests/bad_inputs): every case through the real `tsunagari ingest` command, a few
through `tsunagari build`.

Each case starts from the same committed warehouse (national-2023, national-2024 and programme data
already loaded, so a bad file named like a loaded one would *replace* it) and asserts the exit code,
the exact message (file, column, rule, rows), and that every table of the warehouse is unchanged for a
refused file; an accepted file is checked value by value. The build cases also assert that the
previously published site is byte-identical afterwards. tests/bad_inputs/README.md lists the outcomes.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import duckdb
import pytest
from bad_inputs.make import make, programme_rows, survey_rows, write_csv
from ingest_helpers import snapshot

from pipelines.domain import schema
from pipelines.domain.errors import DataError
from pipelines.ingest.stage import ingest_files
from tests.shared_builds import copy_build, shared_build

NEXT_YEAR = datetime.now().year + 1
ENC = "check --encoding (leave it out to detect UTF-8/CP932) / --encoding の指定を確認してください（省略すると自動判別します）"
CRIT0 = "0 other critical failures / ほかの重大な不合格 0 件"
ROWS_25 = {"TSUNAGARI_MAX_INPUT_ROWS": "25"}


@dataclass
class Case:
    writer: str  # a writer of tests/bad_inputs/make.py
    code: int  # exit code
    message: str  # rejected: the last stderr line; accepted: stdout
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    check: Callable[[Path], None] | None = None  # accepted files: the committed values


def survey_values(wh: Path, survey_id: str = "national-2024") -> list[tuple]:
    cols = ["respondent_id", "pref_code", "sex", "age", "household_single", "weight", *schema.QUESTIONS]
    with duckdb.connect(str(wh), read_only=True) as con:
        return con.execute(
            f"SELECT survey_year, {', '.join(cols)} FROM survey_responses WHERE survey_id = ? ORDER BY respondent_id",
            [survey_id],
        ).fetchall()


def expected_values(rows: list[dict]) -> list[tuple]:
    cols = ["survey_year", "respondent_id", "pref_code", "sex", "age", "household_single", "weight", *schema.QUESTIONS]
    return sorted((tuple(float(r[c]) if c == "weight" else r[c] for c in cols) for r in rows), key=lambda t: t[1])


def committed_as_coded(wh: Path) -> None:
    """The file's 40 rows are committed with exactly the values of the coded fixture rows."""
    assert survey_values(wh) == expected_values(survey_rows())


def pref_names_to_codes(wh: Path) -> None:
    got = survey_values(wh)
    assert got == expected_values(survey_rows())
    assert {r[2] for r in got} == {1, 13, 27, 31, 47}
    # 東京都 and 東京 both became 13
    assert sum(r[2] == 13 for r in got) == sum(r["pref_code"] == 13 for r in survey_rows())


def original_file_loaded_not_its_copy(wh: Path) -> None:
    committed_as_coded(wh)
    with duckdb.connect(str(wh), read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT file_name FROM files ORDER BY 1").fetchall()]
    assert names == ["national-2023.csv", "national-2024.csv", "programme.csv"]


def formula_results_read(wh: Path) -> None:
    """Formula cells with stored results (every weight) are read as those results."""
    committed_as_coded(wh)


def weight_rule(rule: str, rule_ja: str, rows: str, examples: str, hi: str, lo: str, ratio: str) -> str:
    return (
        f"national-2024.csv, column 'weight': {rule} / {rule_ja} [critical / 重大] (rows {rows}; examples {examples}). "
        f"respondent_id {', '.join('B%04d' % int(r) for r in rows.split(', '))}. largest weight {hi} / smallest {lo} "
        f"= {ratio} > limit 50 (TSUNAGARI_MAX_WEIGHT_RATIO): a few respondents would carry the estimates / "
        f"最大ウェイトが最小の{ratio}倍です（上限50倍）。少数の回答者が結果を左右します. "
        "1 other critical failure / ほかの重大な不合格 1 件"
    )


BOUND = ("weight positive and at most 1,000,000,000", "ウェイトは正で10億以下")
RATIO = ("largest weight at most 50 times the smallest (per file)", "最大ウェイトは最小の50倍以下（ファイルごと）")
XLSX_LIMIT = "national-2024.xlsx: XLSX over a safety limit / XLSXが安全上の上限を超えています. "
MAPPING = "mapping.yml: mapping file not valid / 対応表の形式が不正です. "
FUTURE = f"is after {NEXT_YEAR} (next year): a typing error in the file name or the data? / "
LOADED = "national-2024{}: replaced earlier version with 40 rows (survey national-2024) / 旧版を置き換え 40行（調査 national-2024）"

CASES: dict[str, Case] = {
    # --- empty, truncated, corrupt ---------------------------------------------------------------
    "empty_csv": Case(
        "empty_csv",
        1,
        "national-2024.csv: no data rows / データ行がありません. empty file (0 bytes) / 空のファイル（0バイト）",
    ),
    "empty_xlsx": Case(
        "empty_xlsx",
        1,
        "national-2024.xlsx: no data rows / データ行がありません. empty file (0 bytes) / 空のファイル（0バイト）",
    ),
    "header_only": Case("header_only", 1, "national-2024.csv: no data rows / データ行がありません"),
    "truncated_csv": Case(
        "truncated_csv",
        1,
        "national-2024.csv: wrong number of fields / 列数が見出しと合いません (1 row; rows 21). the last row has 7 of 18 "
        "fields: the file was probably cut short; copy or export it again / 最後の行が18列中7列で終わっています。"
        "ファイルが途中で切れている可能性があります",
    ),
    "truncated_csv_mid_character": Case(
        "truncated_csv_mid_character",
        1,
        "national-2024.csv: cannot decode / 文字コードを判別できません. the file ends inside a character (line 21): it "
        "was probably cut short; copy or export it again / ファイルが文字の途中で終わっています（21行目）。"
        "途中で切れている可能性があります。もう一度コピーしてください",
    ),
    "truncated_xlsx": Case(
        "truncated_xlsx",
        1,
        "national-2024.xlsx: unreadable file / 読み込めません. not a valid XLSX file, truncated or corrupt (BadZipFile: "
        "File is not a zip file) / XLSXファイルとして読めません（壊れているか途中で切れています）",
    ),
    "truncated_parquet": Case(
        "truncated_parquet",
        1,
        "national-2024.parquet: unreadable file / 読み込めません. not a valid Parquet file, truncated or corrupt (Parquet "
        "magic bytes not found in footer. Either the file is corrupted or this is not a parquet file.) / "
        "Parquetファイルとして読めません（壊れているか途中で切れています）",
    ),
    # --- encodings -------------------------------------------------------------------------------
    "utf8_declared_on_cp932": Case(
        "cp932_file",
        1,
        "national-2024.csv: cannot decode / 文字コードを判別できません. not utf-8: invalid start byte (line 1); the file "
        f"looks like CP932 (Shift_JIS) / utf-8 ではありません（1行目）. {ENC}",
        args=("--encoding", "utf-8"),
    ),
    "cp932_declared_on_utf8": Case(
        "utf8_file",
        1,
        "national-2024.csv: cannot decode / 文字コードを判別できません. not cp932: illegal multibyte sequence (line 1); "
        f"the file looks like UTF-8 / cp932 ではありません（1行目）. {ENC}",
        args=("--encoding", "cp932"),
    ),
    "cp932_declared_on_utf8_mojibake": Case(
        "utf8_programme",
        1,
        "programme.csv: cannot decode / 文字コードを判別できません. the file is UTF-8, not cp932: read as cp932 its "
        "Japanese text would be garbled (mojibake) / このファイルはUTF-8です（cp932として読むと文字化けします）. "
        f"{ENC}",
        args=("--encoding", "cp932"),
    ),
    "latin1_declared_on_cp932": Case(
        "cp932_file",
        1,
        "national-2024.csv: unknown file kind / ファイルの種類を判別できません (examples '\\x92²\\x8d¸ID', "
        "'\\x92²\\x8d¸\\x94N', '\\x89ñ\\x93\\x9a\\x8eÒID', '\\x93s\\x93¹\\x95{\\x8c§\\x83R\\x81[\\x83h', "
        "'\\x90«\\x95Ê'). no respondent_id (survey) or metric_id (programme) column / respondent_id（調査）も "
        "metric_id（施策）の列もありません. the file decodes as CP932 (Shift_JIS), not latin-1: " + ENC,
        args=("--encoding", "latin-1"),
    ),
    "mixed_encodings": Case(
        "mixed_encodings",
        1,
        "national-2024.csv: cannot decode / 文字コードを判別できません. mixed encodings: UTF-8 up to line 21, CP932 "
        "(Shift_JIS) from line 22; save the whole file in one encoding / 文字コードが混在しています（21行目までUTF-8、"
        "22行目からCP932）。ファイル全体を1つの文字コードで保存してください",
    ),
    "mixed_encodings_cp932_first": Case(
        "mixed_encodings_cp932_first",
        1,
        "national-2024.csv: cannot decode / 文字コードを判別できません. mixed encodings: CP932 (Shift_JIS) up to line "
        "21, UTF-8 from line 22; save the whole file in one encoding / 文字コードが混在しています（21行目までCP932、"
        "22行目からUTF-8）。ファイル全体を1つの文字コードで保存してください",
    ),
    # --- Excel -----------------------------------------------------------------------------------
    "xlsx_merged_header": Case("xlsx_merged_header", 0, LOADED.format(".xlsx"), check=committed_as_coded),
    "xlsx_notes_and_data": Case("xlsx_notes_and_data", 0, LOADED.format(".xlsx"), check=committed_as_coded),
    "xlsx_two_data_sheets": Case(
        "xlsx_two_data_sheets",
        1,
        "national-2024.xlsx: several sheets with data / データのシートが複数あります (examples '2024年6月', '2024年7月'). "
        "one table per file: keep the data on one sheet (others may hold notes) / 1ファイルに1つの表です。"
        "データは1つのシートにしてください（他のシートは注記のみ可）",
    ),
    "xlsx_no_data_sheet": Case(
        "xlsx_no_data_sheet",
        1,
        "national-2024.xlsx: unknown file kind / ファイルの種類を判別できません (examples '表紙', '集計'). no sheet has a "
        "respondent_id (survey) or metric_id (programme) column in its first 10 rows / respondent_id（調査）か "
        "metric_id（施策）の列があるシートがありません",
    ),
    # --- values ----------------------------------------------------------------------------------
    "duplicate_ids": Case(
        "duplicate_ids",
        1,
        "national-2024.csv, column 'respondent_id': respondent_id unique within the survey / 回答者IDが調査内で一意 "
        "[critical / 重大] (3 rows; rows 3, 7, 31; examples 'survey_id=national-2024, respondent_id=B0003', "
        "'survey_id=national-2024, respondent_id=B0003', 'survey_id=national-2024, respondent_id=B0003'). "
        f"respondent_id B0003, B0003, B0003. {CRIT0}",
    ),
    "code_out_of_range": Case(
        "code_out_of_range",
        1,
        "national-2024.csv, column 'q_loneliness': impossible code / ありえないコード (2 rows; rows 5, 12; examples '6'). "
        "allowed codes / 有効なコード: 1, 2, 3, 4, 5, 9",
    ),
    "full_width_digits": Case("full_width_digits", 0, LOADED.format(".csv"), check=committed_as_coded),
    "pref_by_name": Case("pref_by_name", 0, LOADED.format(".csv"), check=pref_names_to_codes),
    "year_contradicts_round": Case(
        "year_contradicts_round",
        1,
        "national-2024.csv, column 'survey_year': survey_year equals the file's declared round / 調査年がファイルの"
        "調査回と一致 [critical / 重大] (40 rows; rows 1, 2, 3, 4, 5; examples 2023, 2023, 2023, 2023, 2023). "
        f"respondent_id B0001, B0002, B0003, B0004, B0005. {CRIT0}",
    ),
    "unknown_pref_code": Case(
        "unknown_pref_code",
        1,
        "national-2024.csv, column 'pref_code': impossible code / ありえないコード (1 row; rows 10; examples '48'). "
        "allowed codes / 有効なコード: 1–47",
    ),
    "unknown_pref_file": Case(
        "unknown_pref_file",
        1,
        "pref48-2024.csv, column 'survey_id': unknown prefecture / 存在しない都道府県 (examples 'pref48-2024'). pref48 "
        "is not a prefecture: prefecture surveys are pref01-… to pref47-… (JIS X 0401) / 都道府県コードは01～47です",
    ),
    "programme_negative": Case(
        "programme_negative",
        1,
        f"programme.csv, column 'value': value non-negative / 値が0以上 [critical / 重大] (1 row; rows 1; examples -120.0). {CRIT0}",
    ),
    "programme_non_numeric": Case(
        "programme_non_numeric",
        1,
        "programme.csv, column 'value': wrong type / 型が不正 (1 row; rows 3; examples '多数'). expected a number / 数値ではありません",
    ),
    # --- guards ----------------------------------------------------------------------------------
    "huge_sparse": Case(
        "huge_sparse",
        1,
        "national-2024.csv: file too large / ファイルが大きすぎます. 2,147,483,648 bytes > limit 1,500,000,000 bytes "
        "(TSUNAGARI_MAX_INPUT_BYTES) / 上限 1,500,000,000 バイトを超えています",
    ),
    "huge_sparse_env_limit": Case(
        "huge_sparse",
        1,
        "national-2024.csv: file too large / ファイルが大きすぎます. 2,147,483,648 bytes > limit 1,000,000 bytes "
        "(TSUNAGARI_MAX_INPUT_BYTES) / 上限 1,000,000 バイトを超えています",
        env={"TSUNAGARI_MAX_INPUT_BYTES": "1000000"},
    ),
    "many_rows_csv": Case(
        "many_rows",
        1,
        "national-2024.csv: too many rows / 行数が多すぎます. 40 lines after the header > limit 25 rows "
        "(TSUNAGARI_MAX_INPUT_ROWS) / 上限 25 行を超えています",
        env=ROWS_25,
    ),
    "many_rows_xlsx": Case(
        "many_rows_xlsx",
        1,
        "national-2024.xlsx: too many rows / 行数が多すぎます. 26 rows or more > limit 25 rows "
        "(TSUNAGARI_MAX_INPUT_ROWS) / 上限 25 行を超えています",
        env=ROWS_25,
    ),
    "many_rows_parquet": Case(
        "many_rows_parquet",
        1,
        "national-2024.parquet: too many rows / 行数が多すぎます. 40 rows > limit 25 rows "
        "(TSUNAGARI_MAX_INPUT_ROWS) / 上限 25 行を超えています",
        env=ROWS_25,
    ),
    # --- the same file twice ---------------------------------------------------------------------
    "dropped_twice": Case(
        "dropped_twice",
        0,
        "national-2024 - コピー.csv: skipped, same content as national-2024.csv / national-2024.csv と同じ内容のためスキップ\n"
        + LOADED.format(".csv"),
        check=original_file_loaded_not_its_copy,
    ),
    # --- issue #15: weights ----------------------------------------------------------------------
    "weight_1e308": Case(
        "weight_1e308",
        1,
        f"national-2024.csv, column 'weight': {BOUND[0]} / {BOUND[1]} [critical / 重大] (1 row; rows 7; examples "
        "1e+308). respondent_id B0007. 2 other critical failures / ほかの重大な不合格 2 件",
    ),
    "weights_all_1e300": Case(
        "weights_all_1e300",
        1,
        f"national-2024.csv, column 'weight': {BOUND[0]} / {BOUND[1]} [critical / 重大] (40 rows; rows 1, 2, 3, 4, 5; "
        "examples 1e+300, 1e+300, 1e+300, 1e+300, 1e+300). respondent_id B0001, B0002, B0003, B0004, B0005. " + CRIT0,
    ),
    "weight_1e9": Case("weight_1e9", 1, weight_rule(*RATIO, "7, 1", "1000000000.0, 1.0", "1e+09", "1", "1e+09")),
    "weights_others_tiny": Case(
        "weights_others_tiny", 1, weight_rule(*RATIO, "7, 1", "1.0, 1e-300", "1", "1e-300", "1e+300")
    ),
    # --- issue #15: XLSX bombs and formulas ------------------------------------------------------
    "xlsx_zip_bomb": Case(
        "xlsx_zip_bomb",
        1,
        XLSX_LIMIT
        + "6 parts, the largest 'xl/sharedStrings.xml' (4,687,987 bytes expanding to 2,147,352,691): 2,147,372,967 bytes "
        "in all > limit 1,000,000,000 bytes uncompressed (TSUNAGARI_MAX_XLSX_BYTES); refused before reading / "
        "上限 1,000,000,000 を超えているため読み込みません（TSUNAGARI_MAX_XLSX_BYTES）",
    ),
    "xlsx_zip_bomb_env_limit": Case(
        "xlsx_high_ratio",
        1,
        XLSX_LIMIT
        + "6 parts, the largest 'xl/sharedStrings.xml' (146,611 bytes expanding to 67,104,883): 67,125,159 bytes in all "
        "> limit 50,000,000 bytes uncompressed (TSUNAGARI_MAX_XLSX_BYTES); refused before reading / "
        "上限 50,000,000 を超えているため読み込みません（TSUNAGARI_MAX_XLSX_BYTES）",
        env={"TSUNAGARI_MAX_XLSX_BYTES": "50000000"},
    ),
    "xlsx_high_ratio": Case(
        "xlsx_high_ratio",
        1,
        XLSX_LIMIT
        + "'xl/sharedStrings.xml' expands from 146,611 to 67,104,883 bytes: 458:1 > limit 100 compression ratio "
        "(TSUNAGARI_MAX_XLSX_RATIO); refused before reading / 上限 100 を超えているため読み込みません（TSUNAGARI_MAX_XLSX_RATIO）",
    ),
    "xlsx_shared_strings": Case(
        "xlsx_shared_strings",
        1,
        XLSX_LIMIT
        + "xl/sharedStrings.xml: more than 30 strings > limit 30 shared strings (TSUNAGARI_MAX_XLSX_STRINGS); refused "
        "before reading / 上限 30 を超えているため読み込みません（TSUNAGARI_MAX_XLSX_STRINGS）",
        env={"TSUNAGARI_MAX_XLSX_STRINGS": "30"},
    ),
    "xlsx_shared_string_chars": Case(
        "xlsx_shared_strings",
        1,
        XLSX_LIMIT + "xl/sharedStrings.xml: more than 100 characters > limit 100 characters of shared strings "
        "(TSUNAGARI_MAX_XLSX_STRING_CHARS); refused before reading / 上限 100 を超えているため読み込みません"
        "（TSUNAGARI_MAX_XLSX_STRING_CHARS）",
        env={"TSUNAGARI_MAX_XLSX_STRING_CHARS": "100"},
    ),
    "xlsx_shared_strings_default": Case("xlsx_shared_strings", 0, LOADED.format(".xlsx"), check=committed_as_coded),
    "xlsx_formula_uncached": Case(
        "xlsx_formula_uncached",
        1,
        "national-2024.xlsx, column 'weight': formula without a stored result / 計算結果が保存されていない数式 (2 rows; "
        "rows 4, 8; examples 'データ!H5', 'データ!H9'). 3 such cells in the sheet in all. the file was saved without "
        "the formulas' results (e.g. written by a program): open it in Excel and save it again, or paste the cells as "
        "values / 数式の計算結果が保存されていません。Excelで開いて保存し直すか、値として貼り付けてください",
    ),
    "xlsx_formula_cached": Case("xlsx_formula_cached", 0, LOADED.format(".xlsx"), check=formula_results_read),
    # --- issue #15: mapping YAML -----------------------------------------------------------------
    "mapping_billion_laughs": Case(
        "mapping_billion_laughs",
        1,
        MAPPING + "the document expands to more than 200,000 values (YAML aliases *name repeat what they refer to) / "
        "エイリアスの展開で値が200,000個を超えます",
        args=("--mapping", "in/mapping.yml"),
    ),
    "mapping_wrong_shape": Case(
        "mapping_wrong_shape",
        1,
        MAPPING
        + "labels → sex → 男性: expected a code (a number or text), got a list / labels → sex → 男性 の形式が不正です. "
        "the file has two sections: columns: {source header: contract column} and labels: {contract column: "
        "{label: code}} / columns と labels の2つの節からなります",
        args=("--mapping", "in/mapping.yml"),
    ),
    # --- issue #15: names and rounds -------------------------------------------------------------
    "newline_in_name": Case(
        "newline_in_name",
        1,
        "national-2024\\n2026-01-01 00:00:00 INFO build OK.csv, column 'q_loneliness': impossible code / ありえないコード "
        "(1 row; rows 5; examples '6'). allowed codes / 有効なコード: 1, 2, 3, 4, 5, 9",
    ),
    "future_round": Case(
        "future_round",
        1,
        "national-2099.csv, column 'survey_id': year in the future / 未来の年 (examples 'national-2099'). survey round "
        f"2099 {FUTURE}調査年2099年は来年（{NEXT_YEAR}年）より後です。ファイル名またはデータの誤りではありませんか",
    ),
    "future_fiscal_year": Case(
        "future_fiscal_year",
        1,
        "programme.csv, column 'fiscal_year': year in the future / 未来の年 (1 row; rows 2; examples 2099). fiscal year "
        f"2099 {FUTURE}年度2099年は来年（{NEXT_YEAR}年）より後です。ファイル名またはデータの誤りではありませんか",
    ),
}


# --- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> tuple[Path, dict]:
    """A committed warehouse: national-2023, national-2024 (other respondents) and programme data."""
    d = tmp_path_factory.mktemp("baseline")
    write_csv(d / "in" / "national-2023.csv", survey_rows(survey_id="national-2023", seed=3))
    write_csv(d / "in" / "national-2024.csv", survey_rows(seed=4))
    write_csv(d / "in" / "programme.csv", programme_rows(2023))
    wh = d / "warehouse.duckdb"
    ingest_files([d / "in"], wh)
    return wh, snapshot(wh)


def cli(*args, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def without_national_2024(snap: dict) -> dict:
    """The committed tables without the survey an accepted file replaced (staging is scratch space)."""
    out = {t: rows for t, rows in snap.items() if not t.startswith("staging_")}
    out["survey_responses"] = [r for r in snap["survey_responses"] if r[0] != "national-2024"]
    out["files"] = [r for r in snap["files"] if not str(r[1]).startswith("national-2024")]
    replaced = {r[0] for r in snap["files"] if str(r[1]).startswith("national-2024")}
    out["validation_results"] = [r for r in snap.get("validation_results", []) if r[0] not in replaced]
    return out


# --- Every case through `tsunagari ingest` ---------------------------------------------------------


@pytest.mark.parametrize("case_id", list(CASES))
def test_ingest(case_id: str, tmp_path: Path, baseline) -> None:
    case = CASES[case_id]
    wh0, before = baseline
    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(wh0, wh)
    make(case.writer, tmp_path / "in")
    proc = cli("ingest", tmp_path / "in", "--warehouse", wh, "--quiet", *case.args, env=case.env, cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == case.code, proc.stderr
    if case.code:
        assert last_line(proc.stderr) == f"error: {case.message}"
        assert proc.stdout == ""
        assert snapshot(wh) == before  # every table, every row
    else:
        assert proc.stdout.strip() == case.message
        case.check(wh)
        assert without_national_2024(snapshot(wh)) == without_national_2024(before)


def test_same_file_ingested_twice_is_a_no_op(tmp_path: Path, baseline) -> None:
    wh0, before = baseline
    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(wh0, wh)
    files = make("full_width_digits", tmp_path / "in")
    first = cli("ingest", *files, "--warehouse", wh, "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    loaded = snapshot(wh)
    second = cli("ingest", *files, "--warehouse", wh, "--quiet", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "national-2024.csv: skipped, already loaded / 読み込み済みのためスキップ"
    assert snapshot(wh) == loaded


def test_row_guard_default_is_generous() -> None:
    from pipelines.ingest.stage import DEFAULT_MAX_INPUT_ROWS, max_input_rows

    assert DEFAULT_MAX_INPUT_ROWS == 20_000_000
    assert max_input_rows() == int(os.environ.get("TSUNAGARI_MAX_INPUT_ROWS", DEFAULT_MAX_INPUT_ROWS))


def test_corpus_covers_every_writer() -> None:
    from bad_inputs.make import CASES as WRITERS

    assert {c.writer for c in CASES.values()} == set(WRITERS)


def test_readme_lists_every_case() -> None:
    readme = (Path(__file__).parent / "bad_inputs" / "README.md").read_text(encoding="utf-8")
    missing = [c for c in CASES if f"`{c}`" not in readme]
    assert not missing, missing


# --- A few through `tsunagari build`: exit 1, site byte-identical ---------------------------------

BUILD_CASES = [
    "mixed_encodings",
    "truncated_csv",
    "duplicate_ids",
    "unknown_pref_file",
    "xlsx_two_data_sheets",
    "huge_sparse",
    "weight_1e308",
    "xlsx_zip_bomb",
    "xlsx_formula_uncached",
    "newline_in_name",
    "future_round",
]


def tree(d: Path) -> dict[str, str]:
    """Every file of the published site (build log included) -> sha256."""
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A small sample input folder built and published (Tottori only): the session's shared build
    (``shared_build``), copied once for this module, whose tests build on the copy."""
    from pipelines.domain.config import BuildConfig

    root = copy_build(shared_build(tmp_path_factory, "tottori", prefs=[31]), tmp_path_factory.mktemp("build") / "b")
    cfg = BuildConfig(
        input_dir=root / "in",
        out_dir=root / "site",
        warehouse=root / "wh.duckdb",
        jobs=1,
        prefs=[31],
        quiet=True,
        renderer="pandoc",
    )
    return cfg, tree(cfg.out_dir), snapshot(cfg.warehouse)


@pytest.mark.parametrize("case_id", BUILD_CASES)
def test_build_refuses_and_keeps_the_site(case_id: str, tmp_path: Path, published) -> None:
    from dataclasses import replace

    from pipelines.build import run_build

    cfg, site_before, wh_before = published
    case = CASES[case_id]
    inp = tmp_path / "input"
    shutil.copytree(cfg.input_dir, inp)
    make(case.writer, inp)  # the bad file lands beside (or over) the sample files
    with pytest.raises(DataError) as exc:
        run_build(replace(cfg, input_dir=inp))
    assert exc.value.exit_code == 1
    assert str(exc.value) == case.message
    assert tree(cfg.out_dir) == site_before
    assert snapshot(cfg.warehouse) == wh_before


def test_build_cli_exit_1(tmp_path: Path, published) -> None:
    cfg, site_before, wh_before = published
    inp = tmp_path / "input"
    shutil.copytree(cfg.input_dir, inp)
    make("mixed_encodings", inp)
    proc = cli(
        "build",
        "--input",
        inp,
        "--out",
        cfg.out_dir,
        "--warehouse",
        cfg.warehouse,
        "--pref",
        "31",
        "--renderer",
        "pandoc",
        "--jobs",
        "1",
        "--quiet",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert last_line(proc.stderr) == f"error: {CASES['mixed_encodings'].message}"
    assert tree(cfg.out_dir) == site_before
    assert snapshot(cfg.warehouse) == wh_before


# --- Bombs in bounded memory (issue #15) -----------------------------------------------------------

MEMORY_LIMIT = int(1.5 * 1024**3)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.parametrize("case_id", ["xlsx_zip_bomb", "xlsx_high_ratio", "mapping_billion_laughs"])
def test_bombs_fail_fast_in_bounded_memory(case_id: str, tmp_path: Path, baseline) -> None:
    """`tsunagari ingest` with its address space limited to 1.5 GB: a clean exit 1 with the message (before
    the fix the mapping reached MemoryError under this limit and the XLSX read went past 5.4 GB)."""
    case = CASES[case_id]
    wh0, before = baseline
    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(wh0, wh)
    make(case.writer, tmp_path / "in")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "ingest",
            str(tmp_path / "in"),
            "--warehouse",
            str(wh),
            "--quiet",
            *case.args,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, **case.env, "MALLOC_ARENA_MAX": "2"},
        preexec_fn=_limit_memory,
    )
    assert "MemoryError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert last_line(proc.stderr) == f"error: {case.message}"
    assert snapshot(wh) == before


# --- A cell carried by one respondent is not published (issue #15) --------------------------------


def test_a_cell_carried_by_one_respondent_is_suppressed(tmp_path: Path) -> None:
    """Weights inside the file limits (ratio 45 <= 50, file n_eff/n 52% >= 25%), but Osaka's 40
    respondents include one weighted 45: n = 40 >= 30, n_eff = 84²/2,064 = 3.4. Suppressed, like a
    base under 30; no published cell has n_eff under 30 or missing."""
    from pipelines.indicators.stage import compute_indicators

    rows = survey_rows(n=2000, seed=5)
    for i, r in enumerate(rows):
        r["pref_code"] = 27 if i < 40 else (1, 13, 31, 47)[i % 4]
        r["weight"] = 1.0
    rows[0]["weight"] = 45.0
    wh = tmp_path / "warehouse.duckdb"
    ingest_files([write_csv(tmp_path / "in" / "national-2024.csv", rows)], wh)
    with duckdb.connect(str(wh), read_only=True) as con:
        ind, _ = compute_indicators(con, 2024)
    # n = 40 >= 30: suppressed on its effective size (n_eff 3.4), and its bases are not published
    osaka = ind[(ind.area_code == "27") & (ind.breakdown == "total") & ind.note.str.contains("n_eff<30", regex=False)]
    assert len(osaka) >= 8  # the indicators whose base is every respondent
    assert osaka.suppressed.all() and osaka.value.isna().all()
    assert osaka.n_unweighted.isna().all() and osaka.n_effective.isna().all()
    national = ind[(ind.area_code == "00") & (ind.breakdown == "total") & ind.n_unweighted.notna()]
    assert len(national) and not national.suppressed.any()
    shown = ind[(~ind.suppressed) & ind.n_unweighted.notna()]
    # The rule is on Kish's n_eff (weights only); n_effective is published after the design effect.
    assert len(shown) and (shown.n_effective * shown.design_effect >= 30 - 1e-9).all()


def test_latest_round_after_next_year_is_not_picked(tmp_path: Path) -> None:
    """A warehouse that already holds a national round after next year (loaded before ingest refused
    it): the build does not take it as the latest round; --year must be given."""
    from pipelines.build import latest_year
    from pipelines.domain.errors import UsageError

    wh = tmp_path / "warehouse.duckdb"
    ingest_files([write_csv(tmp_path / "in" / "national-2024.csv", survey_rows())], wh)
    with duckdb.connect(str(wh)) as con:
        assert latest_year(con) == 2024
        con.execute("UPDATE survey_responses SET survey_year = 2099")
        with pytest.raises(UsageError) as exc:
            latest_year(con)
    assert str(exc.value) == (
        f"--year: the latest national round in the warehouse, 2099, is after next year ({NEXT_YEAR}); give --year "
        "explicitly / 最新の全国調査 2099年が来年より後です。--year を指定してください"
    )
    assert exc.value.exit_code == 2
