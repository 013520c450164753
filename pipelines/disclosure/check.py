"""Disclosure checks of what is about to be published (統計的開示管理の検査).

``check_published(site_dir, warehouse)`` scans a built site before it is published and returns one
``Finding`` per breach; ``tsunagari build`` does not publish a site with findings. What it checks:

* Downloads (every ``*.csv`` and ``*.xlsx`` sheet in the site, the charts' data files beside each
  report too: ``prefectures/13-tokyo-data/*.csv``, whose drawn value is headed ``(lead_value)``):
  - no value / interval, and nothing a label was tested against (reference, previous value,
    differences, p-values: ``VALUE_COLUMNS``), in a row whose unweighted base is < MIN_BASE or
    which is suppressed;
  - no exact base of a suppressed row (n_unweighted, n_effective, or "(n=...)" in the note);
  - no suppressed cell whose base, count or complement can be narrowed by arithmetic on the
    published cells (``audit.audit_published``: the LP audit of every partition, the relations
    across the national and UK age bands, and the totals; a count read from a share rounded to
    0.1 point is known to within ±0.05 point of its base);
  - no respondent_id column and no respondent id of the warehouse in any cell;
  - no more data rows than the warehouse's indicators table (a longer table is not aggregates).
* Notebooks (any ``*.ipynb``; the build keeps its executed notebooks beside the site and the
  publish scan refuses a site holding one, but a listed notebook is checked) and HTML pages:
  - no respondent id of the warehouse in any output (ids are tokens with a letter and a digit,
    e.g. ``N2024-000123``; purely numeric ids cannot be told from numbers and are not searched);
  - no microdata table: an HTML table or a text DataFrame dump with a respondent_id column, or with
    at least ``MICRODATA_MIN_COLUMNS`` respondent-level columns (age, sex, q_loneliness, weight,
    ...) and more than ``MICRODATA_MAX_ROWS`` rows.
* Report pages (``national.html``, ``prefectures/{code}-*.html``): every table cell that shows an
  indicator value of the area (headline table, breakdown tables) shows ``x`` where the published
  row is suppressed -- the cells are compared with the text ``formatting.fmt_value`` gives for the
  published row.

PDFs are not text-searched (no PDF text extractor is installed); they are rendered from the same
executed notebooks that are checked.

Two entry points: ``check_published`` (a folder, or the listed files of it) and ``check_files`` (the
listed files, with a ``CheckContext`` made once by ``make_context``: what the checks need from the
warehouse, so the files of one area can be checked in a worker process as soon as they exist).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from pipelines.domain import config, schema
from pipelines.domain.formatting import fmt_interval, fmt_num, fmt_value
from pipelines.engine import keys
from pipelines.io import warehouse as warehouse_db
from pipelines.io.xlsx import read_sheets

# The record of the files checked (the build's checked.json): one entry per site file, by its
# sha256, valid for the checker's code (the package fingerprint, this stage's key). The check context
# (the round's rows, the respondent ids) is not in the key: a data change checks the files it changed.
RECORD = keys.Stage("disclosure record", reads=(), writes=("checked.json",))

MICRODATA_COLUMNS = frozenset(
    {
        "respondent_id",
        "age",
        "sex",
        "household_single",
        "weight",
        "source_row",
        "file_id",
        *schema.QUESTIONS,
        "回答者ID",
        "年齢",
        "性別",
    }
)
MICRODATA_MIN_COLUMNS = 3
MICRODATA_MAX_ROWS = 0
ID_COLUMNS = ("respondent_id", "回答者ID")
# Tokens that may be respondent ids: a letter and a digit, 4+ characters of [A-Za-z0-9_-].
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_\-])(?=[A-Za-z0-9_\-]*[A-Za-z])(?=[A-Za-z0-9_\-]*[0-9])"
    r"[A-Za-z0-9][A-Za-z0-9_\-]{3,63}(?![A-Za-z0-9_\-])"
)
_TRUE = {"true", "1", "yes"}
# Columns that must be empty in a suppressed row: the value and its interval, and what a label was
# tested against (a reference, e.g. the rest of the nation, with the national value gives the value
# of the area; a difference with its reference gives it too).
VALUE_COLUMNS = ("value", "lower_ci95", "upper_ci95", *schema.TESTED_AGAINST_COLUMNS)


@dataclass(frozen=True)
class Finding:
    file: str  # path relative to the site folder
    rule: str  # which check
    detail: str  # count and examples, English / 日本語

    def __str__(self) -> str:
        return f"disclosure: {self.file}: {self.rule}: {self.detail}"


def _examples(items, k: int = 3) -> str:
    items = list(items)
    return ", ".join(str(i) for i in items[:k]) + (" ..." if len(items) > k else "")


# --- What the checks need from the warehouse ---------------------------------------------------

_ID_SHAPE = re.compile(r"(?=[A-Za-z0-9_\-]*[A-Za-z])(?=[A-Za-z0-9_\-]*[0-9])[A-Za-z0-9][A-Za-z0-9_\-]{3,63}")


@dataclass
class CheckContext:
    """Everything the checks need from the warehouse, read once (``make_context``). Picklable and
    small enough to send to a worker process with each task (the respondent ids travel as one
    string; the set is built on first use in the process that checks).

    * ``year``: the round whose report tables are checked (None: no indicators, no report check);
    * ``n_indicators``: rows of the indicators table (a published table with more is not aggregates);
    * ``report_rows``: (area_code, indicator_id, breakdown) -> (suppressed, the texts a report may
      show for the row's value, the texts it may show for its interval) for every indicators row of
      ``year``: ``formatting.fmt_value``'s ('x' when suppressed) and, when a pooled or model-based
      estimate leads (issue #24), that estimate as ``report_data.fmt_lead_value`` shows it, with or
      without its method mark, and its interval;
    * ``catalogue``: (id, name_ja, unit, source) of every catalogue indicator, in catalogue order;
    * ``ids_text``: the warehouse's respondent ids that have the shape of a token (a letter and a
      digit, 4-64 characters of [A-Za-z0-9_-]; no other id can be found), sorted, one per line.
    """

    year: int | None
    n_indicators: int
    report_rows: dict[tuple[str, str, str], tuple[bool, frozenset, frozenset]]
    catalogue: tuple[tuple[str, str, str, str], ...]
    ids_text: str = ""
    _ids: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)
    # results of checking one XLSX sheet, by the digest of its XML (the national sheet is the same in
    # all 47 per-prefecture workbooks): not pickled, lives as long as this object.
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ids"], state["_memo"] = None, {}
        return state

    @property
    def respondent_ids(self) -> frozenset[str]:
        if self._ids is None:
            self._ids = frozenset(self.ids_text.split("\n")) - {""}
        return self._ids


def _site_year(site_dir: Path | None) -> int | None:
    if site_dir is None:
        return None
    years = [
        int(m.group(1))
        for p in Path(site_dir).glob("downloads/indicators-*.csv")
        if (m := re.fullmatch(r"indicators-(\d{4})\.csv", p.name))
    ]
    return max(years) if years else None


def make_context(warehouse: Path, site_dir: Path | None = None, year: int | None = None) -> CheckContext:
    """The ``CheckContext`` of ``warehouse`` (opened read-only, once). The round checked: ``year``,
    else the latest ``downloads/indicators-YYYY.csv`` in ``site_dir``, else the latest round of the
    indicators table (pass ``year`` when the context is made before the downloads exist)."""
    con = warehouse_db.connect(warehouse)
    try:
        has_indicators = warehouse_db.has_table(con, "indicators")
        n_ind, latest = 0, None
        if has_indicators:
            n_ind, latest = con.execute("SELECT count(*), max(year) FROM indicators").fetchone()
        year = year if year is not None else _site_year(site_dir)
        if year is None and latest is not None:
            year = int(latest)
        # Plain tuples, not a DataFrame: to_dict(orient="records") is slow, and runs in every
        # process that checks (the build and each report worker).
        ind_cols = (
            "area_code",
            "indicator_id",
            "breakdown",
            "suppressed",
            "value",
            "n_unweighted",
            "estimate_method",
            "lead_value",
            "lead_lower_ci95",
            "lead_upper_ci95",
        )
        have = (
            {
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'indicators'"
                ).fetchall()
            }
            if has_indicators
            else set()
        )
        select = ", ".join(c if c in have else f"NULL AS {c}" for c in ind_cols)
        ind = (
            con.execute(f"SELECT {select} FROM indicators WHERE year = ?", [year]).fetchall()
            if has_indicators and year is not None
            else []
        )
        ids: list[str] = []
        if warehouse_db.has_table(con, "survey_responses"):
            ids = [
                str(r[0])
                for r in con.execute(
                    "SELECT DISTINCT respondent_id FROM survey_responses WHERE respondent_id IS NOT NULL"
                ).fetchall()
            ]
    finally:
        con.close()
    cat = _catalogue()
    units = {i.id: i.unit for i in cat}
    rows = {}
    for r in (dict(zip(ind_cols, t)) for t in ind):
        rows[(r["area_code"], r["indicator_id"], r["breakdown"])] = _shown(r, units.get(r["indicator_id"], "percent"))
    return CheckContext(
        year=year,
        n_indicators=int(n_ind or 0),
        report_rows=rows,
        catalogue=tuple((i.id, i.name_ja, i.unit, i.source) for i in cat),
        ids_text="\n".join(sorted(i for i in ids if _ID_SHAPE.fullmatch(i))),
    )


def _shown(r: dict, unit: str) -> tuple[bool, frozenset, frozenset]:
    """(suppressed, value texts, interval texts) a report may show for one indicators row."""
    from pipelines.domain.conventions import ESTIMATE_MARKS

    sup = bool(r["suppressed"])
    texts, cis = {fmt_value(r, unit)}, {"x"}
    m, v = r.get("estimate_method"), r.get("lead_value")
    if m in ESTIMATE_MARKS and v is not None and v == v:
        text = fmt_num(v)
        texts |= {text, text + ESTIMATE_MARKS[m]}
        interval = fmt_interval(r.get("lead_lower_ci95"), r.get("lead_upper_ci95"))
        if interval:
            cis.add(interval)
    return sup, frozenset(texts), frozenset(cis)


# --- Tables (CSV / XLSX) -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _header_names() -> tuple[frozenset[str], dict[str, str]]:
    """(the column codes of the downloads and of the indicators table, Japanese header -> code)."""
    from pipelines.domain.dictionary import COLUMNS, DICTIONARY_COLUMNS

    codes = (
        frozenset(c.code for c in COLUMNS)
        | frozenset(schema.INDICATOR_COLUMNS)
        | frozenset(code for _, code in DICTIONARY_COLUMNS)
    )
    return codes, {c.ja: c.code for c in COLUMNS}


def _col(df: pd.DataFrame, name: str) -> str | None:
    """The column of ``df`` named ``name``: by its code, a header ending in '(name)', or its
    Japanese header (a table whose row of codes is missing is still read)."""
    ja = _header_names()[1]
    for c in df.columns:
        text = str(c)
        if text == name or text.endswith(f"({name})") or ja.get(text.strip()) == name:
            return c
    return None


def _header_lines(first: list, second: list | None) -> int:
    """How many header rows a published table has: 2 when its second row is the row of column codes
    under the Japanese headers (the downloads' layout), else 1."""
    if second is None:
        return 1
    codes = _header_names()[0]

    def hits(row: list) -> int:
        return sum(1 for v in row if str(v).strip() in codes)

    return 2 if hits(second) >= 2 and hits(second) > hits(first) else 1


def _unique(names: list[str]) -> list[str]:
    """Column names made unique as pandas does (a, a.1, a.2, ...)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}.{k}")
    return out


def _table(raw: pd.DataFrame) -> pd.DataFrame:
    """A published table from its raw rows (``header=None``): its header is the row of codes when
    the table has one (``_header_lines``), the rows above are kept in ``attrs['above']`` (published
    text too) and ``attrs['first_line']`` is the file line (or sheet row) of the first data row."""
    if raw.empty:
        df = pd.DataFrame()
        df.attrs.update(first_line=2, above=[])
        return df
    first = raw.iloc[0].tolist()
    skip = _header_lines(first, raw.iloc[1].tolist() if len(raw) > 1 else None)
    header = _unique([str(h) if str(h) else f"column{i + 1}" for i, h in enumerate(raw.iloc[skip - 1].tolist())])
    df = raw.iloc[skip:].reset_index(drop=True)
    df.columns = header
    df.attrs.update(first_line=skip + 1, above=[" ".join(map(str, raw.iloc[i].tolist())) for i in range(skip - 1)])
    return df


def _line(df: pd.DataFrame, i: int) -> int:
    """The file line (sheet row) of data row ``i`` of a table read by ``_table``."""
    return i + df.attrs.get("first_line", 2)


def _frame(rows: list[list[str]]) -> pd.DataFrame:
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    return _table(pd.DataFrame(rows, dtype=object))


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s.astype(str).str.strip().str.lstrip("'"), errors="coerce")


def _id_findings(where: str, texts: Iterable[str], ctx: CheckContext) -> list[Finding]:
    """A finding when any text contains a respondent id of the warehouse."""
    tokens: set[str] = set()
    for t in texts:
        tokens.update(_TOKEN.findall(t))
    found = sorted(tokens & ctx.respondent_ids)
    if not found:
        return []
    return [
        Finding(
            where,
            "respondent ids / 回答者ID",
            f"{len(found)} respondent id(s) of the warehouse appear ({_examples(found)}) / 回答者IDが含まれています",
        )
    ]


def _check_table(where: str, df: pd.DataFrame, ctx: CheckContext) -> list[Finding]:
    out: list[Finding] = []
    ids = [c for c in df.columns if str(c) in ID_COLUMNS or str(c).endswith("(respondent_id)")]
    if ids:
        out.append(
            Finding(
                where,
                "respondent_id column / 回答者ID列",
                f"a published table has the column {ids[0]} / 公開表に回答者IDの列があります",
            )
        )
    n_ind = ctx.n_indicators
    if len(df) > n_ind:
        out.append(
            Finding(
                where,
                "more rows than the indicators table / 指標表より行が多い",
                f"{len(df):,} rows > {n_ind:,} rows of the indicators table (not aggregates?) "
                f"/ 指標表（{n_ind:,}行）より多い{len(df):,}行",
            )
        )
    value_cols = [c for c in (_col(df, k) for k in VALUE_COLUMNS) if c is not None]
    n_col, sup_col = _col(df, "n_unweighted"), _col(df, "suppressed")
    if value_cols:
        shown = np.zeros(len(df), dtype=bool)
        for c in value_cols:
            shown |= df[c].astype(str).str.strip().ne("").to_numpy()
        small = np.zeros(len(df), dtype=bool)
        if n_col is not None:
            n = _num(df[n_col])
            small = (n < config.MIN_BASE).fillna(False).to_numpy()
        sup = (
            df[sup_col].astype(str).str.strip().str.lower().isin(_TRUE).to_numpy()
            if sup_col is not None
            else np.zeros(len(df), dtype=bool)
        )
        bad = shown & (small | sup)
        if bad.any():
            rows = [_line(df, i) for i in np.flatnonzero(bad)]
            out.append(
                Finding(
                    where,
                    f"value on a base < {config.MIN_BASE} or suppressed / 非表示の値",
                    f"{int(bad.sum())} row(s) show a value whose base is < {config.MIN_BASE} or "
                    f"that is suppressed (file rows {_examples(rows)}) / 非表示の行に値があります",
                )
            )
        out += _check_recoverable(where, df, n_col, sup_col)
    # the leading estimate (a chart's data file has it without a value column: what a chart draws)
    out += _check_lead(where, df, sup_col)
    # Every cell, and the header too (a header is published text as well).
    out += _id_findings(
        where,
        [
            *df.attrs.get("above", []),
            " ".join(map(str, df.columns)),
            *(" ".join(df[c].astype(str).tolist()) for c in df.columns),
        ],
        ctx,
    )
    return out


def _check_sheet(where: str, rows: list[list[str]] | None, digest: str, ctx: CheckContext) -> list[Finding]:
    """``_check_table`` of one XLSX sheet; a sheet with the same XML (and shared strings) as one
    already checked with this context gets the same findings without being checked again."""
    hit = ctx._memo.get(digest)
    if hit is None:
        hit = ctx._memo[digest] = [(f.rule, f.detail) for f in _check_table(where, _frame(rows), ctx)]
    return [Finding(where, rule, detail) for rule, detail in hit]


_N_NOTE = re.compile(r"\(n=[0-9,]+\)")


def _check_lead(where: str, df: pd.DataFrame, sup_col) -> list[Finding]:
    """The leading estimate (issue #24; columns estimate_method, lead_value, lead_years): a
    suppressed row may lead with a pooled or model-based value (not counts of the suppressed cell;
    pipelines/domain/small_area.py), never with its direct value; a direct lead is the published value; a
    pooled lead names its years (its base is not published: the table has no column for it)."""
    m_col, v_col = _col(df, "estimate_method"), _col(df, "lead_value")
    if m_col is None or v_col is None or sup_col is None:
        return []
    method = df[m_col].astype(str).str.strip().str.lstrip("'").to_numpy()
    lead = _num(df[v_col]).to_numpy()
    sup = df[sup_col].astype(str).str.strip().str.lower().isin(_TRUE).to_numpy()
    shown = ~np.isnan(lead)
    out: list[Finding] = []
    bad = sup & shown & ~np.isin(method, ["pooled", "model"])
    if bad.any():
        rows = [_line(df, i) for i in np.flatnonzero(bad)]
        out.append(
            Finding(
                where,
                "direct value of a suppressed cell as the leading estimate / 非表示セルの直接推計",
                f"{int(bad.sum())} suppressed row(s) lead with a value that is not pooled or "
                f"model-based (file rows {_examples(rows)}) / 非表示の行が直接推計を表示しています",
            )
        )
    val_col = _col(df, "value")
    if val_col is not None:
        value = _num(df[val_col]).to_numpy()
        with np.errstate(invalid="ignore"):
            differ = (method == "direct") & shown & ~(np.abs(lead - value) <= 1e-9)
        if differ.any():
            rows = [_line(df, i) for i in np.flatnonzero(differ)]
            out.append(
                Finding(
                    where,
                    "direct lead differs from the value / 直接推計の不一致",
                    f"{int(differ.sum())} row(s) lead with a direct value other than the published "
                    f"value (file rows {_examples(rows)}) / 直接推計の値が公表値と異なります",
                )
            )
    y_col = _col(df, "lead_years")
    if y_col is not None:
        years = df[y_col].astype(str).str.strip()
        unnamed = (method == "pooled") & shown & ~years.str.fullmatch(r"\d{4}-\d{4}").to_numpy()
        if unnamed.any():
            rows = [_line(df, i) for i in np.flatnonzero(unnamed)]
            out.append(
                Finding(
                    where,
                    "pooled value without its years / プール推計の期間なし",
                    f"{int(unnamed.sum())} pooled row(s) do not name the rounds pooled "
                    f"(file rows {_examples(rows)}) / プール推計の期間がありません",
                )
            )
    return out


def _check_recoverable(where: str, df: pd.DataFrame, n_col, sup_col) -> list[Finding]:
    """No exact base published for a suppressed row (n_unweighted, n_effective or '(n=...)' in the
    note), and the LP audit of the published cells (``audit.audit_published``): no suppressed cell
    whose base, count or complement the published cells pin down."""
    from pipelines.domain.audit import audit_published

    cols = {
        k: _col(df, k)
        for k in ("area_code", "indicator_id", "breakdown", "note", "value", "n_effective", "design_effect", "year")
    }
    if sup_col is None:
        return []
    sup = df[sup_col].astype(str).str.strip().str.lower().isin(_TRUE).to_numpy()
    out: list[Finding] = []
    shown = np.zeros(len(df), dtype=bool)
    for c in (n_col, cols["n_effective"]):
        if c is not None:
            shown |= df[c].astype(str).str.strip().ne("").to_numpy()
    if cols["note"] is not None:
        shown |= df[cols["note"]].astype(str).str.contains(_N_NOTE).to_numpy()
    bad = shown & sup
    if bad.any():
        rows = [_line(df, i) for i in np.flatnonzero(bad)]
        out.append(
            Finding(
                where,
                "base of a suppressed cell / 非表示セルの回答者数",
                f"{int(bad.sum())} suppressed row(s) publish their exact base (n_unweighted, "
                f"n_effective or (n=...) in the note; file rows {_examples(rows)}) "
                f"/ 非表示の行の回答者数が公表されています",
            )
        )
    if (
        n_col is None
        or cols["area_code"] is None
        or cols["indicator_id"] is None
        or cols["breakdown"] is None
        or cols["value"] is None
    ):
        return out
    table = pd.DataFrame(
        {
            "area_code": df[cols["area_code"]].astype(str).str.lstrip("'").str.zfill(2).to_numpy(),
            "indicator_id": df[cols["indicator_id"]].astype(str).to_numpy(),
            "breakdown": df[cols["breakdown"]].astype(str).to_numpy(),
            "value": _num(df[cols["value"]]).to_numpy(),
            "n_unweighted": _num(df[n_col]).to_numpy(),
            "suppressed": sup,
        }
    )
    if cols["year"] is not None:
        table["year"] = df[cols["year"]].astype(str).to_numpy()
    if cols["note"] is not None:
        table["note"] = df[cols["note"]].astype(str).to_numpy()
    if cols["n_effective"] is not None and cols["design_effect"] is not None:
        # n_effective x design_effect = n_unweighted only for equal weights: which counts follow
        table["n_effective"] = _num(df[cols["n_effective"]]).to_numpy()
        table["design_effect"] = _num(df[cols["design_effect"]]).to_numpy()
    # rows with neither a base nor a suppression flag (programme indicators) are not survey cells
    table = table[table["suppressed"] | table["n_unweighted"].notna()]
    exposures = audit_published(table)
    if exposures:
        out.append(
            Finding(
                where,
                "suppressed cell recoverable / 差し引きで絞り込める非表示セル",
                f"{len(exposures)} suppressed cell quantity(ies) can be narrowed by arithmetic on "
                f"published cells (e.g. {_examples(exposures, 2)}) / 公表値の加減算で非表示セルの"
                f"値が絞り込めます（二次秘匿が不足）",
            )
        )
    return out


# --- HTML and notebook text ----------------------------------------------------------------------


class _Tables(HTMLParser):
    """Every <table> of an HTML text as a list of rows of cell texts (header row first)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._stack: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._stack.append([])
        elif tag == "tr" and self._stack:
            self._stack[-1].append([])
        elif tag in ("td", "th") and self._stack:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._stack:
            if not self._stack[-1]:
                self._stack[-1].append([])
            self._stack[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._stack:
            self.tables.append([r for r in self._stack.pop() if r])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_tables(text: str) -> list[list[list[str]]]:
    p = _Tables()
    p.feed(text)
    p.close()
    return p.tables


def _microdata_in_rows(header: list[str], n_rows: int) -> str | None:
    names = {h.strip() for h in header}
    if names & set(ID_COLUMNS) and n_rows > 0:
        return f"a table with a respondent_id column and {n_rows} row(s)"
    micro = sorted(names & MICRODATA_COLUMNS)
    if len(micro) >= MICRODATA_MIN_COLUMNS and n_rows > MICRODATA_MAX_ROWS:
        return f"a table of {n_rows} row(s) with respondent-level columns {', '.join(micro)}"
    return None


def _table_dumps(tables: list[list[list[str]]]) -> list[str]:
    out = []
    for t in tables:
        if t:
            # pandas puts the index name in a second header row; a header is the first row.
            hit = _microdata_in_rows(t[0], len(t) - 1)
            if hit:
                out.append(hit)
    return out


def _plain_dumps(plain: str) -> list[str]:
    out = []
    lines = plain.splitlines()
    for i, line in enumerate(lines):
        names = set(line.split())
        if (names & set(ID_COLUMNS)) or len(names & MICRODATA_COLUMNS) >= MICRODATA_MIN_COLUMNS:
            rows = 0
            for nxt in lines[i + 1 :]:
                if not nxt.strip() or nxt.lstrip().startswith("["):
                    break
                rows += 1
            hit = _microdata_in_rows(line.split(), rows)
            if hit:
                out.append(hit.replace("a table", "a text dump"))
    return out


def microdata_dumps(html: str = "", plain: str = "") -> list[str]:
    """Descriptions of the microdata tables in an HTML text and a plain-text DataFrame dump."""
    return (_table_dumps(html_tables(html)) if html else []) + _plain_dumps(plain)


def _notebook_texts(path: Path) -> tuple[list[str], list[str]]:
    """(html outputs, plain-text outputs) of a notebook's code cells."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    html, plain = [], []
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []) or []:
            if o.get("output_type") == "stream":
                plain.append("".join(o.get("text", "")))
            data = o.get("data", {}) or {}
            for mime, v in data.items():
                text = "".join(v) if isinstance(v, list) else v if isinstance(v, str) else json.dumps(v)
                if mime == "text/html":
                    html.append(text)
                elif mime.startswith("text/") or mime.endswith("json"):
                    plain.append(text)
            if o.get("output_type") == "error":
                plain.append("\n".join(o.get("traceback", [])) + "\n" + str(o.get("evalue", "")))
    return html, plain


# Embedded files (data: URIs). Most of a report page is base64 PNG charts and the embedded font;
# scanning those payloads as text is most of the cost of checking a page and can
# find nothing: what is checked is text -- respondent-id tokens, microdata tables / text dumps,
# the figures in report table cells -- and the base64 of a binary image or font does not contain
# the text it encodes (a value drawn in a chart's pixels, or a string in a PNG text chunk or a font
# table, is not readable in base64 and was never found by this check; a token the base64 alphabet
# happens to spell is noise). So the payloads of *binary raster image and font* media types are
# skipped. Not skipped: any other payload -- SVG (XML whose <text> is readable), HTML, CSV,
# JSON, plain text, unknown types -- and non-base64 (percent-encoded) data URIs, whose text is
# readable as it stands. The base64 payloads of the readable types (text/*, SVG, JSON, XML,
# JavaScript) are also decoded and checked as text/HTML (previously they were only scanned encoded,
# where nothing could be found).
_BINARY_DATA = re.compile(
    r"(data:(?i:image/(?:png|jpe?g|gif|webp|avif|bmp|tiff|x-icon|vnd\.microsoft\.icon)|font/[\w.+\-]+"
    r"|application/(?:font-woff2?|font-sfnt|x-font-[\w.+\-]+|vnd\.ms-fontobject))"
    r"(?:;[\w.+\-]+=[\w.+\-]*)*;(?i:base64),)[A-Za-z0-9+/=]+"
)
_B64_DATA = re.compile(r"data:([\w.+\-]+/[\w.+\-]+)?(?:;[\w.+\-]+=[\w.+\-]*)*;(?i:base64),([A-Za-z0-9+/=]+)")
_HTML_MEDIA = re.compile(r"text/html|image/svg\+xml|application/xhtml\+xml", re.I)
_TEXT_MEDIA = re.compile(
    r"text/[\w.+\-]+|application/(?:[\w.\-]+\+)?(?:json|xml)|application/(?:java|ecma)script", re.I
)


def _without_binary_data(text: str) -> tuple[str, list[str], list[str]]:
    """(``text`` with the payloads of base64 image/font data URIs removed, the decoded HTML/SVG
    payloads, the decoded text payloads)."""
    if "data:" not in text:  # (an upper-case "DATA:" URI is left in the text, checked as it stands)
        return text, [], []
    text = _BINARY_DATA.sub(r"\1", text)
    html, plain = [], []
    for m in _B64_DATA.finditer(text):
        media = m.group(1) or "text/plain"
        if not (_HTML_MEDIA.fullmatch(media) or _TEXT_MEDIA.fullmatch(media)):
            continue
        try:
            decoded = base64.b64decode(m.group(2) + "=" * (-len(m.group(2)) % 4)).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            continue
        (html if _HTML_MEDIA.fullmatch(media) else plain).append(decoded)
    return text, html, plain


def _text_findings(where: str, html: list[tuple[str, list]], plain: list[str], ctx: CheckContext) -> list[Finding]:
    """``html``: (text, its html_tables) pairs."""
    out = []
    dumps = []
    for _, tables in html:
        dumps += _table_dumps(tables)
    for p in plain:
        dumps += _plain_dumps(p)
    if dumps:
        out.append(
            Finding(
                where,
                "microdata / 個票データ",
                f"{len(dumps)} output(s) contain respondent-level data: {_examples(dumps, 2)} "
                f"/ 個票（回答者単位）のデータが出力されています",
            )
        )
    out += _id_findings(where, [h for h, _ in html] + plain, ctx)
    return out


def _check_text(where: str, html: list[str], plain: list[str], ctx: CheckContext) -> list[Finding]:
    h_items, p_items = [], []
    for h in html:
        text, more_html, more_plain = _without_binary_data(h)
        h_items += [(t, html_tables(t)) for t in (text, *more_html)]
        p_items += more_plain
    for p in plain:
        text, more_html, more_plain = _without_binary_data(p)
        p_items += [text, *more_plain]
        h_items += [(t, html_tables(t)) for t in more_html]
    return _text_findings(where, h_items, p_items, ctx)


# --- Report pages: suppressed cells show 'x' -----------------------------------------------------


@functools.lru_cache(maxsize=1)
def _breakdown_labels() -> dict[str, str]:
    labels = {
        "男性": "sex=1",
        "女性": "sex=2",
        "全体": "total",
        "一人暮らし": "household_single=1",
        "一人暮らし以外": "household_single=0",
    }
    labels.update({v: f"age={k}" for k, v in schema.AGE_BAND_LABELS.items()})
    labels.update({(b + "歳" if b != "75+" else "75歳以上"): f"uk_age={b}" for b in schema.UK_AGE_BANDS})
    return labels


@functools.lru_cache(maxsize=1)
def _catalogue():
    from pipelines.domain.catalogue import load_catalogue

    return tuple(load_catalogue())


def _report_area_rel(rel: str) -> str | None:
    if rel == "national.html":
        return "00"
    m = re.fullmatch(r"prefectures/(\d{2})-[a-z]+\.html", rel)
    return m.group(1) if m else None


def _check_report(where: str, tables: list[list[list[str]]], area: str, ctx: CheckContext) -> list[Finding]:
    rows = ctx.report_rows  # (area, indicator, breakdown) -> (suppressed, value texts, interval texts)
    if not rows:
        return []
    cat = ctx.catalogue  # (id, name_ja, unit, source)
    survey = [i for i, _, _, source in cat if source == "survey"]
    labels = _breakdown_labels()
    bad: list[str] = []

    def expected(code: str, ind_id: str, bd: str) -> frozenset | None:
        r = rows.get((code, ind_id, bd))
        return None if r is None else r[1]

    for t in tables:
        if len(t) < 2:
            continue
        head = t[0]
        years = [re.fullmatch(r"(\d{4})年（%）", h.strip()) for h in head[1:]]
        if head[0] == "指標" and any(years):
            # trend table: one column per round; the column of the round checked (the others'
            # suppression is not in the context), no interval column
            col = next((k + 1 for k, m in enumerate(years) if m and int(m.group(1)) == ctx.year), None)
            for r in t[1:] if col is not None else []:
                ids = [i for i, name_ja, _, _ in cat if name_ja and name_ja in r[0]]
                for i in ids[:1]:
                    row = rows.get((area, i, "total"))
                    if row is not None and row[0] and len(r) > col and r[col] not in row[1]:
                        bad.append(f"{i} total ({ctx.year}) shows {r[col]!r}")
        elif head[0] == "指標":  # headline table: one row per indicator (total)
            for r in t[1:]:
                ids = [i for i, name_ja, _, _ in cat if name_ja and name_ja in r[0]]
                for i in ids[:1]:
                    row = rows.get((area, i, "total"))
                    if row is not None and row[0]:
                        if len(r) > 1 and r[1] not in row[1]:
                            bad.append(f"{i} total shows {r[1]!r}")
                        if len(r) > 2 and r[2] not in row[2]:  # its 95% interval
                            bad.append(f"{i} total interval shows {r[2]!r}")
        elif head[0] == "区分":  # breakdown table of one indicator: find which one
            body = [r for r in t[1:] if r and r[0] in labels]
            if not body:
                continue
            nat_col = next((k for k, h in enumerate(head) if h.strip() == "全国（%）"), None)
            cols = [(1, area)] + ([(nat_col, "00")] if area != "00" and nat_col is not None else [])
            best, best_bad = None, None
            for i in survey:
                shown = [(r, c, code, expected(code, i, labels[r[0]])) for r in body for c, code in cols if len(r) > c]
                if all(e is None for *_, e in shown):
                    # An indicator without these breakdowns matches every cell vacuously; taking it
                    # as the table's indicator let a tampered UK-age table (only the UK-comparable
                    # indicators have those rows) pass unchecked.
                    continue
                mism = [(r, c, code) for r, c, code, e in shown if e is not None and r[c] not in e]
                if best_bad is None or len(mism) < len(best_bad):
                    best, best_bad = i, mism
                    if not mism:  # no later indicator can fit better (the first best is kept)
                        break
            for r, c, code in best_bad or []:
                row = rows.get((code, best, labels[r[0]]))
                if row is not None and row[0] and r[c] not in row[1]:
                    bad.append(f"{best} {code} {labels[r[0]]} shows {r[c]!r}")
            # The area's 95% interval (column 2) of a suppressed row is as disclosive as its value.
            for r in body if best is not None else []:
                row = rows.get((area, best, labels[r[0]]))
                if row is not None and row[0] and len(r) > 2 and r[2] not in row[2]:
                    bad.append(f"{best} {area} {labels[r[0]]} interval shows {r[2]!r}")
    if not bad:
        return []
    return [
        Finding(
            where,
            "suppressed cell shown / 非表示セルに数値",
            f"{len(bad)} table cell(s) show a number for a suppressed row ({_examples(bad)}) "
            f"/ 非表示の行の数値が表示されています（「x」であるべき）",
        )
    ]


# --- Entry points --------------------------------------------------------------------------------

_TEXT_SUFFIXES = (".json", ".txt", ".md", ".qmd", ".typ", ".svg")


def _check_file(site_dir: Path, rel: str, ctx: CheckContext) -> list[Finding]:
    path = site_dir / rel
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", header=None)
            return _check_table(rel, _table(raw), ctx)
        if suffix == ".xlsx":
            out = []
            for title, rows, digest in read_sheets(path, known=ctx._memo):
                if rows or digest in ctx._memo:
                    out += _check_sheet(f"{rel}[{title}]", rows, digest, ctx)
            return out
        if suffix == ".ipynb":
            html, plain = _notebook_texts(path)
            return _check_text(rel, html, plain, ctx)
        if suffix in (".html", ".htm"):
            text = path.read_text(encoding="utf-8", errors="replace")
            text, more_html, more_plain = _without_binary_data(text)
            tables = html_tables(text)
            out = _text_findings(rel, [(text, tables), *((h, html_tables(h)) for h in more_html)], more_plain, ctx)
            area = _report_area_rel(rel)
            if area is not None and ctx.year is not None:
                out += _check_report(rel, tables, area, ctx)
            return out
        if suffix in _TEXT_SUFFIXES:
            return _check_text(rel, [], [path.read_text(encoding="utf-8", errors="replace")], ctx)
    except (OSError, ValueError, KeyError, IndexError, json.JSONDecodeError, zipfile.BadZipFile, ET.ParseError) as exc:
        return [
            Finding(
                rel,
                "unreadable / 読み込めません",
                f"could not be checked ({type(exc).__name__}: {exc}) / 検査できません",
            )
        ]
    return []


def check_files(site_dir: Path, paths: Iterable[str | Path], context: CheckContext) -> list[Finding]:
    """Every disclosure breach in the files ``paths`` of the site being built in ``site_dir``.

    * ``paths``: paths relative to ``site_dir`` (posix strings or Paths), or absolute paths inside
      it; checked in the order given. A path that does not exist is a finding (unreadable). Files of
      a type that is not checked (PDF, fonts, ...) give nothing.
    * ``context``: ``make_context(warehouse, site_dir)``, made once per build (read-only warehouse
      access happens there, not here). It pickles, so a worker process can check one area's files
      (``prefectures/{code}-{slug}.html``, ...) right
      after they are rendered: the function reads only those files and the context.
    * Returns the same findings ``check_published(site_dir, warehouse, only=set(paths))`` returns
      (same files, rules, details and order), as ``Finding`` objects with ``file`` relative to
      ``site_dir``. Which round's report tables are checked is decided by the context.
    """
    site_dir = Path(site_dir)
    out: list[Finding] = []
    for p in paths:
        p = Path(p)
        if p.is_absolute():
            p = p.resolve().relative_to(site_dir.resolve())
        out += _check_file(site_dir, p.as_posix(), context)
    return out


def check_published(site_dir: Path, warehouse: Path, only: set[str] | None = None) -> list[Finding]:
    """Every disclosure breach found in ``site_dir`` (empty list = safe to publish).

    ``only``: relative paths (posix) to check; None checks every file. The build passes the files
    that differ from the ones it already checked (an unchanged report's inputs are unchanged too:
    its hash covers its rows)."""
    site_dir = Path(site_dir)
    ctx = make_context(Path(warehouse), site_dir)
    rels = []
    for path in sorted(site_dir.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(site_dir).as_posix()
        if only is None or rel in only:
            rels.append(rel)
    return check_files(site_dir, rels, ctx)
