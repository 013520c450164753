"""Small survey/programme fixture files for the ingest tests, written in every supported format."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.domain import schema
from pipelines.ingest.sample import JA_HEADERS  # noqa: F401 (tests import it from here)

# Contract column -> Japanese header: the sample-data writer's own.
PROGRAMME_JA = {
    "fiscal_year": "年度",
    "pref_code": "都道府県コード",
    "metric_id": "指標ID",
    "value": "値",
    "unit": "単位",
    "source": "出典",
}


def survey_rows(n: int = 12, survey_id: str = "national-2024", seed: int = 1) -> list[dict]:
    """Coded survey rows (contract columns, weight included), deterministic."""
    rng = random.Random(seed)
    year = int(survey_id[-4:])
    rows = []
    for i in range(n):
        row = {
            "survey_id": survey_id,
            "survey_year": year,
            "respondent_id": f"R{i + 1:05d}",
            "pref_code": rng.choice([1, 11, 13, 27, 47]),
            "sex": rng.choice([1, 2, 3, 9]),
            "age": rng.choice([16, 19, 20, 35, 49, 64, 75, 80, 99]),
            "household_single": rng.choice([0, 1, 9]),
            "weight": rng.choice([0.5, 1.0, 1.25, 2.0]),
        }
        for q, labels in schema.QUESTIONS.items():
            row[q] = rng.choice(sorted(labels))
        rows.append(row)
    return rows


def labelled(rows: list[dict]) -> list[dict]:
    """The same rows with Japanese headers and Japanese value labels instead of codes."""
    out = []
    for r in rows:
        o = {}
        for col, v in r.items():
            if col == "sex":
                v = schema.SEX[v]
            elif col == "household_single":
                v = schema.YES_NO[v]
            elif col in schema.QUESTIONS:
                v = schema.QUESTIONS[col][v]
            o[JA_HEADERS[col]] = v
        out.append(o)
    return out


def write_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[dict]) -> Path:
    import openpyxl

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(list(rows[0]))
    for r in rows:
        ws.append(list(r.values()))
    wb.save(path)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def programme_rows(year: int = 2024) -> list[dict]:
    return [
        {"fiscal_year": year, "pref_code": p, "metric_id": m, "value": v, "unit": u, "source": "合成データ"}
        for p in (1, 13)
        for m, v, u in (("consultations_phone", 1200 + p, "count"), ("platform", 1, "flag"))
    ]


def table_rows(warehouse: Path, table: str, order: str = "1, 2, 3, 4") -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


def snapshot(warehouse: Path) -> dict[str, list[tuple]]:
    """Every table's full contents (sorted), to compare a warehouse before and after a failure."""
    if not warehouse.exists():
        return {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
