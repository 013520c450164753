"""Downloads for prefecture staff: CSV (UTF-8 with BOM, so Excel shows the Japanese) and XLSX
(one tidy sheet with readable headers plus a notes sheet: methods, sources, synthetic-data statement).

Text cells that a spreadsheet would read as a formula (starting with = + - @, tab or CR) are
neutralised by a leading apostrophe.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from . import schema
from .errors import UsageError, check_pref_code, check_year

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Readable headers for the XLSX sheet: Japanese with the contract name.
HEADERS_JA = {
    "year": "調査年 (year)",
    "area_code": "地域コード (area_code)",
    "area_name": "地域名 (area_name)",
    "indicator_id": "指標ID (indicator_id)",
    "indicator_name_ja": "指標名 (indicator_name_ja)",
    "indicator_name_en": "Indicator (indicator_name_en)",
    "unit": "単位 (unit)",
    "breakdown": "内訳 (breakdown)",
    "breakdown_ja": "内訳の説明 (breakdown_ja)",
    "value": "値 (value)",
    "lower_ci95": "95%信頼区間 下限 (lower_ci95)",
    "upper_ci95": "95%信頼区間 上限 (upper_ci95)",
    "n_unweighted": "回答者数 (n_unweighted)",
    "n_effective": "有効標本サイズ (n_effective)",
    "national_value": "全国値 (national_value)",
    "comparison": "全国との比較 (comparison)",
    "comparison_ja": "全国との比較 表示 (comparison_ja)",
    "change_vs_previous": "前回調査からの変化 (change_vs_previous)",
    "change_vs_previous_ja": "前回調査からの変化 表示 (change_vs_previous_ja)",
    "suppressed": "非表示 (suppressed)",
    "note": "注記 (note)",
}
UNIT_JA = {"percent": "%", "per_10k": "16歳以上人口1万人当たり", "flag": "1=あり 0=なし（全国行は%）"}


def neutralise(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` whose text cells cannot be read as spreadsheet formulas."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_PREFIXES) else v
            ).astype(object)
    return out


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """UTF-8 with BOM, comma separated, header row of the frame's column names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralise(df).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    return path


def write_xlsx(sheets: dict[str, pd.DataFrame], path: Path) -> Path:
    """One sheet per entry, header frozen, columns sized to their header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        for name, df in sheets.items():
            safe = neutralise(df)
            safe.to_excel(xw, sheet_name=name, index=False)
            ws = xw.sheets[name]
            ws.freeze_panes = "A2"
            for i, col in enumerate(safe.columns, start=1):
                width = max(10, min(60, len(str(col)) + 4))
                ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width = width
    return path


def check_area_code(value: object, parameter: str = "area_code") -> str:
    """Guard: an area code '00' (national) or '01'..'47'."""
    text = str(value).strip()
    if text in ("0", "00"):
        return "00"
    try:
        return f"{check_pref_code(text, parameter):02d}"
    except UsageError:
        raise UsageError(parameter, f"'{value}' is not an area code (00 national, 01–47) / 地域コードではありません") from None


def _breakdown_ja(b: str) -> str:
    if b == "total":
        return "全体"
    key, _, val = b.partition("=")
    if key == "sex":
        return schema.SEX.get(int(val), val)
    if key == "age":
        return schema.AGE_BAND_LABELS.get(val, val)
    if key == "uk_age":
        return f"英国比較用年齢区分 {val}歳"
    if key == "household_single":
        return "一人暮らし" if val == "1" else "一人暮らし以外"
    return b


def download_table(indicators: pd.DataFrame, catalogue) -> pd.DataFrame:
    """The contract columns (in contract order) plus names joined from the catalogue and Japanese
    labels of the comparison columns."""
    cat = {i.id: i for i in catalogue}
    df = indicators[schema.INDICATOR_COLUMNS].copy()
    df.insert(4, "indicator_name_ja", df["indicator_id"].map(lambda i: cat[i].name_ja if i in cat else ""))
    df.insert(5, "indicator_name_en", df["indicator_id"].map(lambda i: cat[i].name_en if i in cat else ""))
    df.insert(6, "unit", df["indicator_id"].map(lambda i: cat[i].unit if i in cat else ""))
    df.insert(8, "breakdown_ja", df["breakdown"].map(_breakdown_ja))
    pos = df.columns.get_loc("comparison") + 1
    df.insert(pos, "comparison_ja", df["comparison"].map(schema.COMPARISON_LABELS))
    pos = df.columns.get_loc("change_vs_previous") + 1
    df.insert(pos, "change_vs_previous_ja", df["change_vs_previous"].map(schema.CHANGE_LABELS))
    return df


def notes_table(con: duckdb.DuckDBPyConnection, year: int, catalogue) -> pd.DataFrame:
    """The notes sheet: methods, sources, synthetic-data statement, the catalogue."""
    from .indicators import POP_16PLUS_FACTOR, previous_year

    prev = previous_year(con, year)
    files = pd.DataFrame(columns=["file_name", "kind", "survey_id", "survey_year", "synthetic"])
    has_files = con.execute("SELECT count(*) FROM information_schema.tables "
                            "WHERE table_name = 'files'").fetchone()[0]
    if has_files:
        files = con.execute(
            "SELECT file_name, kind, survey_id, survey_year, synthetic FROM files "
            "WHERE kind = 'programme' OR survey_year IN (?, ?) ORDER BY kind, survey_year, file_name",
            [year, prev if prev is not None else year]).df()
    synthetic = bool(files["synthetic"].astype(bool).any()) if len(files) else False
    rows: list[tuple[str, str]] = [("表題 / Title", f"孤独・孤立対策 評価指標 {year}年調査 / Loneliness and isolation indicators, {year}")]
    if synthetic:
        rows.append(("【注意】合成データ / SYNTHETIC DATA",
                     "この表は合成（架空）データから作成した見本です。実際の調査結果ではありません。"
                     " / These figures are computed from synthetic sample data, not real survey results."))
    rows += [
        ("集計方法 / Method", "割合は全回答者（無回答を含む）を分母とする。部分集団を分母とする指標はその旨を記載"
                              "（例: 不安や悩みがある人のうち）。ウエイトがある場合は加重集計。"),
        ("信頼区間 / CI", "95%信頼区間: 有効標本サイズ n_eff = (Σw)²/Σw² に基づくWilsonスコア区間"
                         "（ウエイトが等しい場合は通常のWilson区間と一致）。"),
        ("全国との比較 / vs national", "都道府県の95%信頼区間が全国値を含まない場合のみ 良い/悪い（良し悪しを判定しない指標は 高い/低い）、"
                                      "それ以外は 同程度。値がない場合は 比較なし。"),
        ("前回比 / change", f"前回調査（{prev if prev else 'なし'}年）との比率の差の検定（信頼度95%、有効標本サイズ）: 増加/減少/有意差なし。"),
        ("少数標本 / small bases", "回答者数30人未満は非表示（n<30 非表示）、30～99人は参考値。"),
        ("二次秘匿 / secondary suppression", "合計から差し引いて非表示の値が分からないよう、男女・年齢階級・"
                                            "一人暮らしの別・都道府県（全国値の内訳）の各組で、非表示のセルが他の非公表の"
                                            "回答者（他の非表示セルと、性別「その他・無回答」等の公表しない残り）30人以上と"
                                            "まとまるまで、最も小さいセルも非表示にする（注記 secondary suppression / 二次秘匿）。"),
        ("都道府県値の出典 / area source", "当該年に県独自調査（全国調査と同じ調査票）がある県はその結果、ない県は全国調査の当該県回答者。各行の注記に出典と回答者数を記載。"),
        ("16歳以上人口 / population 16+", f"推計値: 2020年国勢調査の総人口 × {POP_16PLUS_FACTOR}（全国の0～14歳 15,031,602人と15歳約107万人を除いた割合）。"),
        ("英国との比較 / UK", "直接質問のみ（選択肢が1対1で対応）。調査方法が異なるため参考値であり、有意差の主張はしない。UCLA尺度は日本4件法・英国3件法のため比較しない。"),
        ("列 / columns", "CSVの列名はデータ契約の列名（year, area_code, …）。値の単位は unit 列: percent=%、per_10k=16歳以上人口1万人当たり、flag=1/0。"),
    ]
    for _, f in files.iterrows():
        label = f"出典ファイル / source file ({f['kind']})"
        sid = f" {f['survey_id']}" if isinstance(f["survey_id"], str) else ""
        rows.append((label, f"{f['file_name']}{sid}" + (" [合成データ / synthetic]" if f["synthetic"] else "")))
    for ind in catalogue:
        rows.append((f"指標 {ind.id}",
                     f"{ind.name_ja} / {ind.name_en}。{ind.pillar_label}。分母: {ind.denominator_ja or ind.denominator}。"
                     f"{ind.description_ja}"))
    return pd.DataFrame(rows, columns=["項目 (item)", "内容 (text)"])


def write_indicator_downloads(con: duckdb.DuckDBPyConnection, year: int, dest_dir: Path,
                              area_code: str | None = None) -> tuple[Path, Path]:
    """Write ``indicators-{year}.csv`` and ``.xlsx`` (or ``indicators-{year}-{area}.*`` with
    ``area_code``: that area's rows, national value in the same row) from the warehouse."""
    from .indicators import BREAKDOWNS_COMMON, BREAKDOWNS_UK, load_catalogue

    # Both name the output files: digits only (no path traversal); both are bound into the SQL.
    year = check_year(year, "year")
    if area_code is not None:
        area_code = check_area_code(area_code)
    catalogue = load_catalogue()
    sql = "SELECT * FROM indicators WHERE year = ?"
    params: list = [year]
    if area_code is not None:
        sql += " AND area_code = ?"
        params.append(area_code)
    ind = con.execute(sql + " ORDER BY area_code", params).df()
    order = {i.id: k for k, i in enumerate(catalogue)}
    bd_order = {b: k for k, b in enumerate(BREAKDOWNS_COMMON + BREAKDOWNS_UK)}
    ind = (ind.assign(_i=ind.indicator_id.map(order), _b=ind.breakdown.map(bd_order))
              .sort_values(["area_code", "_i", "_b"], kind="stable").drop(columns=["_i", "_b"]))
    table = download_table(ind, catalogue)
    stem = f"indicators-{year}" + (f"-{area_code}" if area_code is not None else "")
    dest_dir = Path(dest_dir)
    csv = write_csv(table, dest_dir / f"{stem}.csv")
    xlsx = write_xlsx({"指標 (indicators)": table.rename(columns=HEADERS_JA),
                       "注記 (notes)": notes_table(con, year, catalogue)}, dest_dir / f"{stem}.xlsx")
    return csv, xlsx
