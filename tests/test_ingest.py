"""Ingest: every format and encoding, mapping, normalisation, reload/replace, errors, CLI.

Every test writes its own small fixture files and loads them into a real DuckDB file in tmp_path.
Tests about ingest alone pass validate=False (the validation stage has its own tests).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml
from ingest_helpers import (
    JA_HEADERS,
    PROGRAMME_JA,
    labelled,
    programme_rows,
    snapshot,
    survey_rows,
    table_rows,
    write_csv,
    write_parquet,
    write_xlsx,
)

from pipelines.domain import schema
from pipelines.domain.errors import DataError, UsageError
from pipelines.ingest.stage import IngestResult, detect_encoding, ingest_dir, ingest_files, load_mapping, norm

ROOT = Path(__file__).resolve().parents[1]
ORDER = "respondent_id"


def expected_survey(rows: list[dict]) -> list[tuple]:
    """The warehouse rows the coded fixture rows must become (without file_id), computed in Python."""
    out = []
    for i, r in enumerate(rows, start=1):
        kind = "national" if r["survey_id"].startswith("national") else "prefecture"
        out.append(
            (
                r["survey_id"],
                r["survey_year"],
                kind,
                r["respondent_id"],
                r["pref_code"],
                r["sex"],
                r["age"],
                schema.age_band(r["age"]),
                schema.uk_age_band(r["age"]),
                r["household_single"],
                float(r.get("weight", 1.0)),
                *[r[q] for q in schema.QUESTIONS],
                i,
                # the sample design columns (last in the table): NULL when the file has none
                *[None if r.get(c) is None else str(r[c]) for c in schema.SURVEY_DESIGN_COLUMNS],
            )
        )
    return sorted(out, key=lambda t: t[3])


def loaded_survey(warehouse: Path) -> list[tuple]:
    """survey_responses without file_id (it is the sha256 and differs between formats)."""
    return [r[:21] + r[22:] for r in table_rows(warehouse, "survey_responses", ORDER)]


def ingest(paths, warehouse, **kw) -> IngestResult:
    return ingest_files([Path(p) for p in paths], warehouse, validate=False, **kw)


class TestFormatsAndEncodings:
    """UTF-8, UTF-8 with BOM, CP932 CSV, XLSX and Parquet give identical warehouse rows."""

    ROWS = survey_rows(20)

    @pytest.mark.parametrize("fmt", ["utf-8", "utf-8-sig", "cp932", "xlsx", "parquet"])
    @pytest.mark.parametrize("japanese", [False, True], ids=["coded", "japanese"])
    def test_same_rows(self, tmp_path, warehouse, fmt, japanese):
        rows = labelled(self.ROWS) if japanese else self.ROWS
        if fmt == "xlsx":
            path = write_xlsx(tmp_path / "in" / "national-2024.xlsx", rows)
        elif fmt == "parquet":
            path = write_parquet(tmp_path / "in" / "national-2024.parquet", rows)
        else:
            path = write_csv(tmp_path / "in" / "national-2024.csv", rows, encoding=fmt)
        result = ingest([path], warehouse)
        assert result.loaded == ["national-2024" + path.suffix]
        assert loaded_survey(warehouse) == expected_survey(self.ROWS)
        (encoding,) = duckdb.connect(str(warehouse)).execute("SELECT encoding FROM files").fetchone()
        if fmt in ("xlsx", "parquet"):
            assert encoding is None
        elif japanese or fmt == "utf-8-sig":  # an ASCII-only CP932 file is also valid UTF-8
            assert encoding == fmt

    def test_detect_encoding(self, tmp_path):
        text = "性別,年齢\n男性,45\n"
        for enc, want in (("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp932", "cp932")):
            p = tmp_path / f"{enc}.csv"
            p.write_bytes(text.encode(enc))
            assert detect_encoding(p) == want

    def test_encoding_option_overrides_detection(self, tmp_path, warehouse):
        # shift_jis decodes 〜 as WAVE DASH (U+301C), cp932 as FULLWIDTH TILDE: both map to the same label
        path = write_csv(tmp_path / "national-2024.csv", labelled(self.ROWS), encoding="cp932")
        ingest([path], warehouse, encoding="shift_jis")
        assert loaded_survey(warehouse) == expected_survey(self.ROWS)
        with pytest.raises(DataError) as exc:
            ingest([path], tmp_path / "other.duckdb", encoding="utf-8")
        assert str(exc.value).startswith("national-2024.csv: cannot decode / 文字コードを判別できません. not utf-8")

    def test_undecodable_file(self, tmp_path, warehouse):
        path = tmp_path / "national-2024.csv"
        path.write_bytes("回答者ID\n".encode("utf-8") + b"\xff\xfe\xfd\x80\n")
        with pytest.raises(DataError) as exc:
            ingest([path], warehouse)
        assert str(exc.value) == (
            "national-2024.csv: cannot decode / 文字コードを判別できません. neither UTF-8 nor "
            "CP932 (Shift_JIS); give --encoding / UTF-8でもCP932でもありません。--encoding を指定してください"
        )


class TestMapping:
    """Japanese headers and labels, prefecture names, the user's own mapping file."""

    def test_mapping_file_covers_contract_labels(self):
        m = load_mapping()
        for q, labels in schema.QUESTIONS.items():
            assert {m.labels[q][norm(label)] for label in labels.values()} == set(labels), q
        assert {m.labels["sex"][label] for label in schema.SEX.values()} == set(schema.SEX)
        assert {m.labels["household_single"][label] for label in schema.YES_NO.values()} == {0, 1, 9}
        for contract, ja in {**JA_HEADERS, **PROGRAMME_JA}.items():
            assert m.columns[ja] == contract

    def test_yes_no_labels_for_participation(self, tmp_path, warehouse):
        rows = labelled(survey_rows(4))
        for r, label in zip(rows, ["はい", "いいえ", "特に参加はしていない", "何らかの活動に参加"]):
            r["社会活動に参加していない"] = label
        ingest([write_csv(tmp_path / "national-2024.csv", rows)], warehouse)
        got = [
            r[0]
            for r in duckdb.connect(str(warehouse))
            .execute("SELECT q_participation_none FROM survey_responses ORDER BY respondent_id")
            .fetchall()
        ]
        assert got == [1, 0, 1, 0]

    def test_prefecture_by_name(self, tmp_path, warehouse):
        rows = labelled(survey_rows(5))
        for r, name in zip(rows, ["東京都", "東京", "大阪府", "北海道", "１３"]):
            r["都道府県コード"] = name
        ingest([write_xlsx(tmp_path / "national-2024.xlsx", rows)], warehouse)
        got = [
            r[0]
            for r in duckdb.connect(str(warehouse))
            .execute("SELECT pref_code FROM survey_responses ORDER BY respondent_id")
            .fetchall()
        ]
        assert got == [13, 13, 27, 1, 13]

    def test_user_mapping_extends_and_overrides(self, tmp_path, warehouse):
        rows = labelled(survey_rows(3))
        for r, label in zip(rows, ["よくある", "まったくない", "常にある"]):
            r["孤独を感じるか"] = label
            del r["孤独感"]
        path = write_csv(tmp_path / "national-2024.csv", rows, encoding="cp932")
        user = tmp_path / "my-mapping.yml"
        user.write_text(
            yaml.safe_dump(
                {
                    "columns": {"孤独を感じるか": "q_loneliness"},
                    "labels": {"q_loneliness": {"よくある": 5, "まったくない": 1, "常にある": 5}},
                },
                allow_unicode=True,
            ),
            encoding="utf-8",
        )
        with pytest.raises(DataError):  # without the user mapping the header is unknown
            ingest([path], warehouse)
        ingest([path], warehouse, mapping=user)
        got = [
            r[0]
            for r in duckdb.connect(str(warehouse))
            .execute("SELECT q_loneliness FROM survey_responses ORDER BY respondent_id")
            .fetchall()
        ]
        assert got == [5, 1, 5]

    def test_user_mapping_to_unknown_column(self, tmp_path, warehouse):
        user = tmp_path / "bad.yml"
        user.write_text("columns:\n  備考: remarks\n", encoding="utf-8")
        path = write_csv(tmp_path / "national-2024.csv", survey_rows(2))
        with pytest.raises(DataError) as exc:
            ingest([path], warehouse, mapping=user)
        assert str(exc.value).startswith(
            "bad.yml: mapping file refers to an unknown column / 対応表に未知の列 (examples '備考 -> remarks')"
        )


class TestNormalisation:
    """Full-width digits, full-width and stray spaces, full-width tilde in labels."""

    def test_full_width_and_spaces(self, tmp_path, warehouse):
        base = survey_rows(3)
        rows = labelled(base)
        rows[0]["年齢"] = "４５"
        rows[0]["性別"] = "　男性　"
        rows[1]["都道府県コード"] = " １１ "
        rows[1]["直接会って話す頻度"] = "週4~5回以上"  # ASCII tilde for the full-width one
        rows[2]["ウェイト"] = "１．５"
        rows[2]["孤独感"] = " ５ "  # a code instead of a label
        rows = [{(" " + k + "　" if k == "単身世帯" else k): v for k, v in r.items()} for r in rows]
        path = write_csv(tmp_path / "national-2024.csv", rows, encoding="cp932")
        ingest([path], warehouse)
        got = (
            duckdb.connect(str(warehouse))
            .execute(
                "SELECT age, age_band, sex, pref_code, q_contact_inperson, weight, q_loneliness "
                "FROM survey_responses ORDER BY respondent_id"
            )
            .fetchall()
        )
        assert got[0][:3] == (45, "40-49", 1)
        assert got[1][3:5] == (11, 1)
        assert got[2][5:] == (1.5, 5)

    def test_blank_rows_dropped_row_numbers_kept(self, tmp_path, warehouse):
        rows = survey_rows(4)
        blank = {k: "" for k in rows[0]}
        path = write_csv(tmp_path / "national-2024.csv", [rows[0], blank, rows[1], blank, rows[2], rows[3]])
        ingest([path], warehouse)
        got = (
            duckdb.connect(str(warehouse))
            .execute("SELECT respondent_id, source_row FROM survey_responses ORDER BY 1")
            .fetchall()
        )
        assert got == [("R00001", 1), ("R00002", 3), ("R00003", 5), ("R00004", 6)]


class TestDefaultsAndProvenance:
    def test_optional_columns_and_age_bands(self, tmp_path, warehouse):
        rows = survey_rows(9, survey_id="pref11-2023")
        for r, age in zip(rows, [None, 16, 24, 25, 49, 50, 79, 80, 120]):
            r["age"] = "" if age is None else age
            del r["weight"], r["survey_id"], r["survey_year"]
        ingest([write_csv(tmp_path / "pref11-2023.csv", rows)], warehouse)
        got = (
            duckdb.connect(str(warehouse))
            .execute(
                "SELECT survey_id, survey_year, survey_kind, age, age_band, uk_age_band, weight "
                "FROM survey_responses ORDER BY respondent_id"
            )
            .fetchall()
        )
        assert got[0] == ("pref11-2023", 2023, "prefecture", None, None, None, 1.0)
        assert [g[4:6] for g in got[1:]] == [
            ("16-19", "16-24"),
            ("20-29", "16-24"),
            ("20-29", "25-34"),
            ("40-49", "35-49"),
            ("50-59", "50-64"),
            ("70-79", "75+"),
            ("80+", "75+"),
            ("80+", "75+"),
        ]

    def test_survey_id_from_column_and_provenance(self, tmp_path, warehouse):
        folder = tmp_path / "in"
        path = write_parquet(folder / "survey-saitama.parquet", survey_rows(4, survey_id="pref11-2023"))
        (folder / "SYNTHETIC").write_text("synthetic\n")
        (folder / "README.md").write_text("ignored\n")
        result = ingest_dir(folder, warehouse, validate=False)
        assert result.loaded == ["survey-saitama.parquet"]
        (sf,) = result.staged
        assert (sf.kind, sf.survey_id, sf.survey_year, sf.row_count, sf.synthetic) == (
            "survey",
            "pref11-2023",
            2023,
            4,
            True,
        )
        row = (
            duckdb.connect(str(warehouse))
            .execute("SELECT file_id, file_name, path, kind, survey_id, survey_year, row_count, synthetic FROM files")
            .fetchone()
        )
        import hashlib

        assert row == (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            "survey-saitama.parquet",
            str(path),
            "survey",
            "pref11-2023",
            2023,
            4,
            True,
        )
        assert result.summary() == (
            "survey-saitama.parquet: loaded 4 rows (survey pref11-2023) / 読み込み 4行（調査 pref11-2023）"
        )

    def test_several_surveys_in_one_unnamed_file(self, tmp_path, warehouse):
        rows = survey_rows(2) + survey_rows(2, survey_id="national-2023")
        with pytest.raises(DataError) as exc:
            ingest([write_csv(tmp_path / "mixed.csv", rows)], warehouse)
        assert str(exc.value).startswith(
            "mixed.csv, column 'survey_id': survey not identified / 調査を特定できません "
            "(examples 'national-2024', 'national-2023')"
        )


class TestReloadAndReplace:
    def test_identical_file_is_a_no_op(self, tmp_path, warehouse):
        path = write_csv(tmp_path / "national-2024.csv", survey_rows(10))
        first = ingest([path], warehouse)
        before = snapshot(warehouse)
        second = ingest([path], warehouse)
        assert first.loaded == ["national-2024.csv"] and second.loaded == []
        assert second.skipped == ["national-2024.csv"]
        assert second.summary() == "national-2024.csv: skipped, already loaded / 読み込み済みのためスキップ"
        assert snapshot(warehouse) == before

    def test_corrected_file_replaces_earlier_version(self, tmp_path, warehouse):
        rows = survey_rows(10)
        path = write_csv(tmp_path / "national-2024.csv", rows)
        ingest([path], warehouse)
        rows[3]["sex"] = 2 if rows[3]["sex"] != 2 else 1
        corrected = rows[:9]
        write_csv(path, corrected)
        result = ingest([path], warehouse)
        assert result.replaced == ["national-2024.csv"] and result.loaded == []
        assert loaded_survey(warehouse) == expected_survey(corrected)
        assert len(table_rows(warehouse, "files")) == 1

    def test_same_survey_other_format_replaces(self, tmp_path, warehouse):
        ingest([write_csv(tmp_path / "a" / "national-2024.csv", survey_rows(10))], warehouse)
        ingest([write_csv(tmp_path / "a" / "national-2023.csv", survey_rows(5, "national-2023"))], warehouse)
        new = survey_rows(6, seed=2)
        result = ingest([write_xlsx(tmp_path / "b" / "national-2024.xlsx", labelled(new))], warehouse)
        assert result.replaced == ["national-2024.xlsx"]
        got = (
            duckdb.connect(str(warehouse))
            .execute("SELECT survey_id, count(*) FROM survey_responses GROUP BY 1 ORDER BY 1")
            .fetchall()
        )
        assert got == [("national-2023", 5), ("national-2024", 6)]
        assert [r[1] for r in table_rows(warehouse, "files", "2")] == ["national-2023.csv", "national-2024.xlsx"]

    def test_programme_rows_replaced_by_key(self, tmp_path, warehouse):
        rows = programme_rows()
        ja = [{PROGRAMME_JA[k]: v for k, v in r.items()} for r in rows]
        ingest([write_csv(tmp_path / "programme-2024.csv", ja, encoding="cp932")], warehouse)
        fix = [
            {
                "fiscal_year": 2024,
                "pref_code": "東京都",
                "metric_id": "電話相談件数",
                "value": "１,５００",
                "unit": "件",
                "source": "訂正",
            }
        ]
        ingest([write_csv(tmp_path / "programme-2024-fix.csv", fix)], warehouse)
        got = (
            duckdb.connect(str(warehouse))
            .execute("SELECT pref_code, metric_id, value, unit, source FROM programme ORDER BY 1, 2")
            .fetchall()
        )
        assert got == [
            (1, "consultations_phone", 1201.0, "count", "合成データ"),
            (1, "platform", 1.0, "flag", "合成データ"),
            (13, "consultations_phone", 1500.0, "count", "訂正"),
            (13, "platform", 1.0, "flag", "合成データ"),
        ]


class TestErrors:
    """Each error: exact message, and the warehouse exactly as before (it already holds data)."""

    @pytest.fixture
    def loaded(self, tmp_path, warehouse):
        ingest(
            [
                write_csv(tmp_path / "old" / "national-2023.csv", survey_rows(5, "national-2023")),
                write_csv(tmp_path / "old" / "programme-2024.csv", programme_rows()),
            ],
            warehouse,
        )
        return snapshot(warehouse)

    def check(self, tmp_path, warehouse, before, rows, message, name="national-2024.csv", **kw):
        path = write_csv(tmp_path / "new" / name, rows, encoding="cp932")
        with pytest.raises(DataError) as exc:
            ingest([path], warehouse, **kw)
        assert str(exc.value) == message
        assert snapshot(warehouse) == before

    def test_unknown_column(self, tmp_path, warehouse, loaded):
        rows = labelled(survey_rows(3))
        for r in rows:
            r["備考"] = "x"
            r["メモ"] = ""
        self.check(
            tmp_path,
            warehouse,
            loaded,
            rows,
            "national-2024.csv, column '備考, メモ': unknown column / 未知の列. not a survey column; "
            "add it to a mapping file (--mapping) / 対応表（--mapping）に追加してください",
        )

    def test_unknown_file_kind(self, tmp_path, warehouse, loaded):
        self.check(
            tmp_path,
            warehouse,
            loaded,
            [{"氏名": "a", "性別": "男性"}],
            "national-2024.csv: unknown file kind / ファイルの種類を判別できません (examples '氏名'). "
            "no respondent_id (survey) or metric_id (programme) column / "
            "respondent_id（調査）も metric_id（施策）の列もありません",
        )

    def test_unmapped_label(self, tmp_path, warehouse, loaded):
        rows = labelled(survey_rows(12))
        rows[2]["性別"] = "男"  # a mapped short label
        rows[5]["性別"] = "F"
        rows[8]["性別"] = "不明"
        self.check(
            tmp_path,
            warehouse,
            loaded,
            rows,
            "national-2024.csv, column 'sex': unmapped label / 対応表にない値 "
            "(2 rows; rows 6, 9; examples 'F', '不明'). "
            "add it to a mapping file (--mapping) / 対応表（--mapping）に追加してください",
        )

    def test_impossible_code(self, tmp_path, warehouse, loaded):
        rows = survey_rows(8)
        for i in (1, 4, 7):
            rows[i]["q_ucla_2"] = 5 if i != 4 else 0
        self.check(
            tmp_path,
            warehouse,
            loaded,
            rows,
            "national-2024.csv, column 'q_ucla_2': impossible code / ありえないコード "
            "(3 rows; rows 2, 5, 8; examples '5', '0'). allowed codes / 有効なコード: 1, 2, 3, 4, 9",
        )

    def test_impossible_prefecture_code(self, tmp_path, warehouse, loaded):
        rows = survey_rows(3)
        rows[2]["pref_code"] = 48
        self.check(
            tmp_path,
            warehouse,
            loaded,
            rows,
            "national-2024.csv, column 'pref_code': impossible code / ありえないコード "
            "(1 row; rows 3; examples '48'). allowed codes / 有効なコード: 1–47",
        )

    def test_wrong_type_non_numeric(self, tmp_path, warehouse, loaded):
        rows = labelled(survey_rows(4))
        rows[1]["年齢"] = "四十五"
        rows[3]["年齢"] = "45歳"
        self.check(
            tmp_path,
            warehouse,
            loaded,
            rows,
            "national-2024.csv, column 'age': wrong type / 型が不正 "
            "(2 rows; rows 2, 4; examples '四十五', '45歳'). expected an integer / 整数ではありません",
        )

    def test_wrong_type_blank_in_required_column(self, tmp_path, warehouse, loaded):
        rows = labelled(survey_rows(4))
        rows[2]["孤独感"] = "　"
        self.check(
            tmp_path,
            warehouse,
            loaded,
            rows,
            "national-2024.csv, column 'q_loneliness': wrong type / 型が不正 (1 row; rows 3). "
            "blank in a required column / 必須の列が空欄です",
        )

    def test_wrong_type_weight(self, tmp_path, warehouse, loaded):
        rows = survey_rows(5)
        rows[1]["weight"] = "nan"
        rows[4]["weight"] = "1.2.3"
        self.check(
            tmp_path,
            warehouse,
            loaded,
            rows,
            "national-2024.csv, column 'weight': wrong type / 型が不正 "
            "(2 rows; rows 2, 5; examples 'nan', '1.2.3'). expected a number / 数値ではありません",
        )

    def test_missing_column(self, tmp_path, warehouse, loaded):
        rows = survey_rows(2)
        for r in rows:
            del r["q_help_intention"], r["sex"]
        self.check(
            tmp_path,
            warehouse,
            loaded,
            rows,
            "national-2024.csv, column 'sex, q_help_intention': missing column / 必須の列がありません",
        )

    def test_file_too_large(self, tmp_path, warehouse, loaded, monkeypatch):
        path = write_csv(tmp_path / "new" / "national-2024.csv", survey_rows(50))
        size = path.stat().st_size
        monkeypatch.setenv("TSUNAGARI_MAX_INPUT_BYTES", "1000")
        with pytest.raises(DataError) as exc:
            ingest([path], warehouse)
        assert str(exc.value) == (
            f"national-2024.csv: file too large / ファイルが大きすぎます. {size:,} bytes > "
            "limit 1,000 bytes (TSUNAGARI_MAX_INPUT_BYTES) / 上限 1,000 バイトを超えています"
        )
        assert snapshot(warehouse) == loaded

    def test_second_bad_file_rolls_back_the_first(self, tmp_path, warehouse, loaded):
        good = write_csv(tmp_path / "new" / "national-2024.csv", survey_rows(5))
        bad_rows = survey_rows(3, "pref13-2024")
        bad_rows[0]["sex"] = 7
        bad = write_csv(tmp_path / "new" / "pref13-2024.csv", bad_rows)
        with pytest.raises(DataError, match="pref13-2024.csv, column 'sex': impossible code"):
            ingest([good, bad], warehouse)
        assert snapshot(warehouse) == loaded

    def test_critical_validation_rolls_back(self, tmp_path, warehouse, loaded, monkeypatch):
        """The validation hook sees the staged rows inside the transaction; critical -> nothing committed."""
        seen = {}

        class Report:
            has_critical = True

            def to_error(self):
                return DataError("national-2024.csv", "critical expectation failed", column="age")

        def fake_validate(con, staged):
            seen["rows"] = con.execute("SELECT count(*) FROM staging_survey").fetchone()[0]
            seen["files"] = [s.file_name for s in staged]
            return Report()

        monkeypatch.setattr("pipelines.ingest.stage._validator", lambda: fake_validate)
        path = write_csv(tmp_path / "new" / "national-2024.csv", survey_rows(7))
        with pytest.raises(DataError, match="critical expectation failed"):
            ingest_files([path], warehouse, validate=True)
        assert seen == {"rows": 7, "files": ["national-2024.csv"]}
        assert snapshot(warehouse) == loaded

    def test_same_survey_in_two_files(self, tmp_path, warehouse, loaded):
        a = write_csv(tmp_path / "new" / "national-2024.csv", survey_rows(3))
        b = write_parquet(tmp_path / "new" / "national-2024.parquet", survey_rows(4))
        with pytest.raises(DataError) as exc:
            ingest([a, b], warehouse)
        assert str(exc.value) == (
            "national-2024.parquet, column 'survey_id': same survey in two files / "
            "同じ調査が2つのファイルにあります (examples 'national-2024'). also in national-2024.csv"
        )
        assert snapshot(warehouse) == loaded

    def test_two_headers_for_one_column(self, tmp_path, warehouse, loaded):
        rows = survey_rows(2)
        for r in rows:
            r["性別"] = r["sex"]
        self.check(
            tmp_path,
            warehouse,
            loaded,
            rows,
            "national-2024.csv, column 'sex': duplicate column / 列名の重複 (examples 'sex', '性別'). "
            "two headers map to the same column / 2つの見出しが同じ列に対応しています",
        )

    def test_unknown_encoding_is_a_usage_error(self, tmp_path, warehouse):
        path = write_csv(tmp_path / "national-2024.csv", survey_rows(2))
        with pytest.raises(UsageError, match="--encoding: 'klingon' is not a known encoding"):
            ingest([path], warehouse, encoding="klingon")

    def test_missing_path_is_a_usage_error(self, tmp_path, warehouse):
        with pytest.raises(UsageError, match="does not exist"):
            ingest([tmp_path / "nope.csv"], warehouse)


class TestCli:
    """`tsunagari ingest` through the real entry point (main() maps errors to exit codes)."""

    def run(self, *args, cwd):
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "ingest", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=120,
        )

    def test_rejected_file_exit_1(self, tmp_path):
        rows = labelled(survey_rows(3))
        rows[1]["性別"] = "不詳"
        path = write_csv(tmp_path / "in" / "national-2024.csv", rows, encoding="cp932")
        wh = tmp_path / "wh" / "warehouse.duckdb"
        proc = self.run(path, "--warehouse", wh, "--quiet", cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            "error: national-2024.csv, column 'sex': unmapped label / 対応表にない値 (1 row; rows 2; "
            "examples '不詳'). add it to a mapping file (--mapping) / 対応表（--mapping）に追加してください"
        )
        # nothing committed: every table empty but the warehouse's identity (pipelines/io/warehouse.py)
        data = {t: rows for t, rows in snapshot(wh).items() if t != "tsunagari_meta"}
        assert data == {t: [] for t in data}

    def test_accepted_file_exit_0_with_validation(self, tmp_path):
        """The whole path: CP932 Japanese file -> staging -> validation stage (when present) -> commit."""
        path = write_csv(tmp_path / "in" / "national-2024.csv", labelled(survey_rows(40)), encoding="cp932")
        wh = tmp_path / "warehouse.duckdb"
        proc = self.run(path, "--warehouse", wh, "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == (
            "national-2024.csv: loaded 40 rows (survey national-2024) / 読み込み 40行（調査 national-2024）"
        )
        assert len(table_rows(wh, "survey_responses", ORDER)) == 40

    def test_missing_path_exit_2(self, tmp_path):
        proc = self.run(tmp_path / "nope.csv", "--warehouse", tmp_path / "w.duckdb", cwd=tmp_path)
        assert proc.returncode == 2
        assert "does not exist" in proc.stderr


class TestSampleDesign:
    """The optional design columns stratum / psu (issue #22 item 4): Japanese headers, both or
    neither, no blanks, and a warehouse made before them."""

    def test_japanese_headers_and_codes_stored_as_text(self, tmp_path, warehouse):
        rows = labelled(survey_rows(6))
        for i, r in enumerate(rows):
            r["層"] = "関東・大都市" if i < 3 else "１２"  # full width: NFKC -> '12'
            r["調査地点"] = 101 + i % 2
        result = ingest([write_csv(tmp_path / "in" / "national-2024.csv", rows, encoding="cp932")], warehouse)
        assert result.loaded == ["national-2024.csv"]
        got = (
            duckdb.connect(str(warehouse))
            .execute("SELECT respondent_id, stratum, psu FROM survey_responses ORDER BY respondent_id")
            .fetchall()
        )
        assert got == [(f"R{i + 1:05d}", "関東・大都市" if i < 3 else "12", str(101 + i % 2)) for i in range(6)]

    @pytest.mark.parametrize("header", ["地点番号", "第1次抽出単位", "PSU"])
    def test_psu_aliases(self, tmp_path, warehouse, header):
        rows = survey_rows(4)
        for r in rows:
            r["層番号"], r[header] = 1, "a"
        ingest([write_csv(tmp_path / "in" / "national-2024.csv", rows)], warehouse)
        assert duckdb.connect(str(warehouse)).execute(
            "SELECT DISTINCT stratum, psu FROM survey_responses"
        ).fetchall() == [("1", "a")]

    def test_file_without_design_has_null(self, tmp_path, warehouse):
        ingest([write_csv(tmp_path / "in" / "national-2024.csv", survey_rows(3))], warehouse)
        assert duckdb.connect(str(warehouse)).execute(
            "SELECT count(*) FROM survey_responses WHERE stratum IS NULL AND psu IS NULL"
        ).fetchone() == (3,)

    def test_one_design_column_alone_is_refused(self, tmp_path, warehouse):
        rows = survey_rows(3)
        for r in rows:
            r["stratum"] = "A"
        with pytest.raises(DataError) as exc:
            ingest([write_csv(tmp_path / "in" / "national-2024.csv", rows)], warehouse)
        assert str(exc.value).startswith(
            "national-2024.csv, column 'psu': sample design incomplete / "
            "標本設計の列が片方だけです. the file has stratum but not psu"
        )

    def test_blank_psu_is_refused(self, tmp_path, warehouse):
        rows = survey_rows(4)
        for i, r in enumerate(rows):
            r["stratum"], r["psu"] = "A", "" if i == 2 else "p1"
        with pytest.raises(DataError) as exc:
            ingest([write_csv(tmp_path / "in" / "national-2024.csv", rows)], warehouse)
        assert str(exc.value) == (
            "national-2024.csv, column 'psu': wrong type / 型が不正 (1 row; rows 3). "
            "blank in a required column / 必須の列が空欄です"
        )

    def test_warehouse_made_before_the_design_columns(self, tmp_path, warehouse):
        """An older warehouse (survey tables without stratum/psu) gets the columns at its next ingest;
        its rows keep NULL there and new rows are inserted by name."""
        ingest([write_csv(tmp_path / "old" / "national-2023.csv", survey_rows(2, "national-2023"))], warehouse)
        con = duckdb.connect(str(warehouse))
        for name in ("survey_responses", "staging_survey"):  # as made before the design columns
            for col in schema.SURVEY_DESIGN_COLUMNS:
                con.execute(f"ALTER TABLE {name} DROP COLUMN {col}")
        con.close()
        rows = survey_rows(3)
        for r in rows:
            r["stratum"], r["psu"] = "A", "p1"
        ingest([write_csv(tmp_path / "in" / "national-2024.csv", rows)], warehouse)
        con = duckdb.connect(str(warehouse))
        cols = [r[0] for r in con.execute("DESCRIBE survey_responses").fetchall()]
        assert cols[-2:] == schema.SURVEY_DESIGN_COLUMNS
        assert con.execute(
            "SELECT survey_id, stratum, psu, count(*) FROM survey_responses GROUP BY ALL ORDER BY 1"
        ).fetchall() == [("national-2023", None, None, 2), ("national-2024", "A", "p1", 3)]
