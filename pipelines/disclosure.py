"""Disclosure checks of what is about to be published (統計的開示管理の検査).

``check_published(site_dir, warehouse)`` scans a built site before it is published and returns one
``Finding`` per breach; ``tsunagari build`` does not publish a site with findings. What it checks:

* Downloads (every ``*.csv`` and ``*.xlsx`` sheet in the site):
  - no value / interval in a row whose unweighted base is < MIN_BASE or which is suppressed;
  - no suppressed cell that can be recovered by subtraction from a published total (the
    secondary-suppression rule of ``stats.secondary_suppression`` re-applied to the published
    bases and flags: it must find nothing more to suppress);
  - no respondent_id column and no respondent id of the warehouse in any cell;
  - no more data rows than the warehouse's indicators table (a longer table is not aggregates).
* Executed notebooks (``.work/executed``, ``runs`` and any other ``*.ipynb``) and HTML pages:
  - no respondent id of the warehouse in any output (ids are tokens with a letter and a digit,
    e.g. ``N2024-000123``; purely numeric ids cannot be told from numbers and are not searched);
  - no microdata table: an HTML table or a text DataFrame dump with a respondent_id column, or with
    at least ``MICRODATA_MIN_COLUMNS`` respondent-level columns (age, sex, q_loneliness, weight,
    ...) and more than ``MICRODATA_MAX_ROWS`` rows.
* Report pages (``national.html``, ``prefectures/{code}-*.html``): every table cell that shows an
  indicator value of the area (headline table, breakdown tables) shows ``x`` where the published
  row is suppressed -- the cells are compared with the text ``reports.fmt_value`` gives for the
  published row.

PDFs are not text-searched (no PDF text extractor is installed); they are rendered from the same
executed notebooks that are checked.
"""

from __future__ import annotations

import functools
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from . import config, schema, stats

MICRODATA_COLUMNS = frozenset(
    {"respondent_id", "age", "sex", "household_single", "weight", "source_row", "file_id",
     *schema.QUESTIONS, "回答者ID", "年齢", "性別"})
MICRODATA_MIN_COLUMNS = 3
MICRODATA_MAX_ROWS = 0
ID_COLUMNS = ("respondent_id", "回答者ID")
# Tokens that may be respondent ids: a letter and a digit, 4+ characters of [A-Za-z0-9_-].
_TOKEN = re.compile(r"(?<![A-Za-z0-9_\-])(?=[A-Za-z0-9_\-]*[A-Za-z])(?=[A-Za-z0-9_\-]*[0-9])"
                    r"[A-Za-z0-9][A-Za-z0-9_\-]{3,63}(?![A-Za-z0-9_\-])")
_TRUE = {"true", "1", "yes"}


@dataclass(frozen=True)
class Finding:
    file: str       # path relative to the site folder
    rule: str       # which check
    detail: str     # count and examples, English / 日本語

    def __str__(self) -> str:
        return f"disclosure: {self.file}: {self.rule}: {self.detail}"


def _examples(items, k: int = 3) -> str:
    items = list(items)
    return ", ".join(str(i) for i in items[:k]) + (" ..." if len(items) > k else "")


# --- Warehouse facts -----------------------------------------------------------------------------

class _Warehouse:
    def __init__(self, path: Path) -> None:
        self.con = duckdb.connect(str(path), read_only=True)
        tables = {r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        self.has_resp = "survey_responses" in tables
        self.indicators = (self.con.execute("SELECT * FROM indicators").df() if "indicators" in tables
                           else pd.DataFrame(columns=schema.INDICATOR_COLUMNS))

    def close(self) -> None:
        self.con.close()

    def respondent_ids(self, tokens: set[str]) -> list[str]:
        """The tokens that are respondent ids in the warehouse (one bound-table join)."""
        if not tokens or not self.has_resp:
            return []
        self.con.register("_tokens", pd.DataFrame({"t": sorted(tokens)}))
        try:
            rows = self.con.execute("SELECT DISTINCT t FROM _tokens JOIN survey_responses "
                                    "ON respondent_id = t ORDER BY t").fetchall()
        finally:
            self.con.unregister("_tokens")
        return [r[0] for r in rows]


# --- Tables (CSV / XLSX) -------------------------------------------------------------------------

def _col(df: pd.DataFrame, name: str) -> str | None:
    for c in df.columns:
        if str(c) == name or str(c).endswith(f"({name})"):
            return c
    return None


_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RNS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"


def _col_index(ref: str) -> int:
    k = 0
    for ch in ref:
        if not ch.isalpha():
            break
        k = k * 26 + (ord(ch.upper()) - 64)
    return k - 1


def _xlsx_sheets(path: Path) -> list[tuple[str, list[list[str]]]]:
    """(sheet name, rows of cell texts) of every sheet: a direct read of the sheet XML, ~10x
    faster than openpyxl (the check reads every download of every build)."""
    import posixpath
    import xml.etree.ElementTree as ET
    import zipfile

    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        shared: list[str] = []
        if "xl/sharedStrings.xml" in names:
            root = ET.fromstring(z.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{_NS}t")) for si in root.iter(f"{_NS}si")]
        rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        targets = {r.get("Id"): r.get("Target") for r in rels}
        wb = ET.fromstring(z.read("xl/workbook.xml"))
        out = []
        for sh in wb.iter(f"{_NS}sheet"):
            target = targets.get(sh.get(f"{_RNS}id"), "")
            member = target.lstrip("/") if target.startswith("/") else posixpath.normpath("xl/" + target)
            rows: list[list[str]] = []
            for _, el in ET.iterparse(z.open(member)):
                if el.tag != f"{_NS}row":
                    continue
                row: list[str] = []
                for c in el.iter(f"{_NS}c"):
                    t, v = c.get("t"), c.find(f"{_NS}v")
                    if t == "s" and v is not None:
                        text = shared[int(v.text)]
                    elif t == "inlineStr":
                        text = "".join(x.text or "" for x in c.iter(f"{_NS}t"))
                    else:
                        text = "" if v is None or v.text is None else v.text
                    i = _col_index(c.get("r", "")) if c.get("r") else len(row)
                    row += [""] * (i + 1 - len(row))
                    row[i] = text
                rows.append(row)
                el.clear()
            out.append((sh.get("name", ""), rows))
    return out


def _read_tables(path: Path) -> list[tuple[str, pd.DataFrame]]:
    if path.suffix.lower() == ".csv":
        return [("", pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig"))]
    out = []
    for title, rows in _xlsx_sheets(path):
        if rows:
            width = max(len(r) for r in rows)
            rows = [r + [""] * (width - len(r)) for r in rows]
            header = [h or f"column{i + 1}" for i, h in enumerate(rows[0])]
            out.append((f"[{title}]", pd.DataFrame(rows[1:], columns=header)))
    return out


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s.astype(str).str.strip().str.lstrip("'"), errors="coerce")


def _id_findings(where: str, texts, wh: "_Warehouse") -> list[Finding]:
    """A finding when any text contains a respondent id of the warehouse."""
    tokens: set[str] = set()
    for t in texts:
        tokens.update(_TOKEN.findall(t))
    found = wh.respondent_ids(tokens)
    if not found:
        return []
    return [Finding(where, "respondent ids / 回答者ID",
                    f"{len(found)} respondent id(s) of the warehouse appear ({_examples(found)}) "
                    f"/ 回答者IDが含まれています")]


def _check_table(where: str, df: pd.DataFrame, wh: _Warehouse) -> list[Finding]:
    out: list[Finding] = []
    ids = [c for c in df.columns if str(c) in ID_COLUMNS or str(c).endswith("(respondent_id)")]
    if ids:
        out.append(Finding(where, "respondent_id column / 回答者ID列",
                           f"a published table has the column {ids[0]} / 公開表に回答者IDの列があります"))
    n_ind = len(wh.indicators)
    if len(df) > n_ind:
        out.append(Finding(where, "more rows than the indicators table / 指標表より行が多い",
                           f"{len(df):,} rows > {n_ind:,} rows of the indicators table (not aggregates?) "
                           f"/ 指標表（{n_ind:,}行）より多い{len(df):,}行"))
    value_cols = [c for c in (_col(df, k) for k in ("value", "lower_ci95", "upper_ci95")) if c is not None]
    n_col, sup_col = _col(df, "n_unweighted"), _col(df, "suppressed")
    if value_cols:
        shown = np.zeros(len(df), dtype=bool)
        for c in value_cols:
            shown |= df[c].astype(str).str.strip().ne("").to_numpy()
        small = np.zeros(len(df), dtype=bool)
        if n_col is not None:
            n = _num(df[n_col])
            small = (n < config.MIN_BASE).fillna(False).to_numpy()
        sup = (df[sup_col].astype(str).str.strip().str.lower().isin(_TRUE).to_numpy()
               if sup_col is not None else np.zeros(len(df), dtype=bool))
        bad = shown & (small | sup)
        if bad.any():
            rows = [i + 2 for i in np.flatnonzero(bad)]
            out.append(Finding(where, f"value on a base < {config.MIN_BASE} or suppressed / 非表示の値",
                               f"{int(bad.sum())} row(s) show a value whose base is < {config.MIN_BASE} or "
                               f"that is suppressed (file rows {_examples(rows)}) / 非表示の行に値があります"))
        out += _check_recoverable(where, df, n_col, sup_col)
    out += _id_findings(where, (" ".join(df[c].astype(str).tolist()) for c in df.columns), wh)
    return out


def _check_recoverable(where: str, df: pd.DataFrame, n_col, sup_col) -> list[Finding]:
    """Re-apply the secondary-suppression rule to the published bases and flags."""
    from .indicators import NATIONAL, suppression_groups

    cols = {k: _col(df, k) for k in ("area_code", "indicator_id", "breakdown", "note")}
    if n_col is None or sup_col is None or cols["area_code"] is None or cols["indicator_id"] is None \
            or cols["breakdown"] is None:
        return []
    n = _num(df[n_col])
    keep = n.notna().to_numpy()
    if not keep.any():
        return []
    cells = pd.DataFrame({
        "indicator_id": df[cols["indicator_id"]].astype(str).to_numpy()[keep],
        "area_code": df[cols["area_code"]].astype(str).str.lstrip("'").str.zfill(2).to_numpy()[keep],
        "breakdown": df[cols["breakdown"]].astype(str).to_numpy()[keep],
        "n": n.to_numpy()[keep]})
    sup = df[sup_col].astype(str).str.strip().str.lower().isin(_TRUE).to_numpy()[keep]
    subsample: set[str] = set()
    if cols["note"] is not None:
        notes = df[cols["note"]].astype(str).to_numpy()[keep]
        subsample = {a for a, t in zip(cells.area_code, notes)
                     if a != NATIONAL and t.startswith("出典: 全国調査の当該県回答者")}
    groups, rem = suppression_groups(cells, ["indicator_id"], subsample)
    more = stats.secondary_suppression(cells["n"].to_numpy(), sup, groups, rem)
    if not more.any():
        return []
    # Name the exposed suppressed cells: those sharing a group with a cell the rule would add.
    ex = cells[more][["area_code", "indicator_id", "breakdown"]].astype(str).agg(" ".join, axis=1)
    return [Finding(where, "suppressed cell recoverable by subtraction / 差し引きで復元できる非表示セル",
                    f"{int(more.sum())} published cell(s) must also be suppressed so that no suppressed "
                    f"cell can be recovered from a published total (e.g. {_examples(ex)}) "
                    f"/ 二次秘匿が不足しています")]


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


def microdata_dumps(html: str = "", plain: str = "") -> list[str]:
    """Descriptions of the microdata tables in an HTML text and a plain-text DataFrame dump."""
    out = []
    for t in html_tables(html) if html else []:
        if t:
            # pandas puts the index name in a second header row; a header is the first row.
            hit = _microdata_in_rows(t[0], len(t) - 1)
            if hit:
                out.append(hit)
    lines = plain.splitlines()
    for i, line in enumerate(lines):
        names = set(line.split())
        if (names & set(ID_COLUMNS)) or len(names & MICRODATA_COLUMNS) >= MICRODATA_MIN_COLUMNS:
            rows = 0
            for nxt in lines[i + 1:]:
                if not nxt.strip() or nxt.lstrip().startswith("["):
                    break
                rows += 1
            hit = _microdata_in_rows(line.split(), rows)
            if hit:
                out.append(hit.replace("a table", "a text dump"))
    return out


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


def _check_text(where: str, html: list[str], plain: list[str], wh: _Warehouse) -> list[Finding]:
    out = []
    dumps = []
    for h in html:
        dumps += microdata_dumps(html=h)
    for p in plain:
        dumps += microdata_dumps(plain=p)
    if dumps:
        out.append(Finding(where, "microdata / 個票データ",
                           f"{len(dumps)} output(s) contain respondent-level data: {_examples(dumps, 2)} "
                           f"/ 個票（回答者単位）のデータが出力されています"))
    out += _id_findings(where, html + plain, wh)
    return out


# --- Report pages: suppressed cells show 'x' -----------------------------------------------------

def _breakdown_labels() -> dict[str, str]:
    labels = {"男性": "sex=1", "女性": "sex=2", "全体": "total", "一人暮らし": "household_single=1",
              "一人暮らし以外": "household_single=0"}
    labels.update({v: f"age={k}" for k, v in schema.AGE_BAND_LABELS.items()})
    labels.update({(b + "歳" if b != "75+" else "75歳以上"): f"uk_age={b}" for b in schema.UK_AGE_BANDS})
    return labels


@functools.lru_cache(maxsize=1)
def _catalogue():
    from .indicators import load_catalogue

    return tuple(load_catalogue())


def _report_area(path: Path, site_dir: Path) -> str | None:
    rel = path.relative_to(site_dir).as_posix()
    if rel == "national.html":
        return "00"
    m = re.fullmatch(r"prefectures/(\d{2})-[a-z]+\.html", rel)
    return m.group(1) if m else None


def _check_report(where: str, html: str, area: str, year: int, wh: _Warehouse) -> list[Finding]:
    from .indicators import load_catalogue
    from .reports import fmt_value

    ind = wh.indicators[wh.indicators.year == year]
    if ind.empty:
        return []
    ind = ind[ind.area_code.isin([area, "00"])]   # only this report's rows (to_dict of all is slow)
    rows = {(r["area_code"], r["indicator_id"], r["breakdown"]): r for r in ind.to_dict(orient="records")}
    cat = _catalogue()
    units = {i.id: i.unit for i in cat}
    survey = [i.id for i in cat if i.source == "survey"]
    labels = _breakdown_labels()
    bad: list[str] = []

    def expected(code: str, ind_id: str, bd: str) -> str | None:
        r = rows.get((code, ind_id, bd))
        return None if r is None else fmt_value(r, units.get(ind_id, "percent"))

    for t in html_tables(html):
        if len(t) < 2:
            continue
        head = t[0]
        if head[0] == "指標":   # headline table: one row per indicator (total)
            for r in t[1:]:
                ids = [i.id for i in cat if i.name_ja and i.name_ja in r[0]]
                for i in ids[:1]:
                    row = rows.get((area, i, "total"))
                    if row is not None and bool(row["suppressed"]) and len(r) > 1 and r[1] != "x":
                        bad.append(f"{i} total shows {r[1]!r}")
        elif head[0] == "区分":   # breakdown table of one indicator: find which one
            body = [r for r in t[1:] if r and r[0] in labels]
            if not body:
                continue
            cols = [(1, area)] + ([(4, "00")] if area != "00" and len(head) > 4 else [])
            best, best_bad = None, None
            for i in survey:
                mism = [(r, c, code) for r in body for c, code in cols
                        if len(r) > c and expected(code, i, labels[r[0]]) not in (None, r[c])]
                if best_bad is None or len(mism) < len(best_bad):
                    best, best_bad = i, mism
            for r, c, code in best_bad or []:
                row = rows.get((code, best, labels[r[0]]))
                if row is not None and bool(row["suppressed"]) and r[c] != "x":
                    bad.append(f"{best} {code} {labels[r[0]]} shows {r[c]!r}")
    if not bad:
        return []
    return [Finding(where, "suppressed cell shown / 非表示セルに数値",
                    f"{len(bad)} table cell(s) show a number for a suppressed row ({_examples(bad)}) "
                    f"/ 非表示の行の数値が表示されています（「x」であるべき）")]


# --- Entry point ---------------------------------------------------------------------------------

def check_published(site_dir: Path, warehouse: Path, only: set[str] | None = None) -> list[Finding]:
    """Every disclosure breach found in ``site_dir`` (empty list = safe to publish).

    ``only``: relative paths (posix) to check; None checks every file. The build passes the files
    that differ from the ones it already checked (an unchanged report's inputs are unchanged too:
    its hash covers its rows)."""
    site_dir = Path(site_dir)
    wh = _Warehouse(Path(warehouse))
    findings: list[Finding] = []
    try:
        years = [int(m.group(1)) for p in site_dir.glob("downloads/indicators-*.csv")
                 if (m := re.fullmatch(r"indicators-(\d{4})\.csv", p.name))]
        year = max(years) if years else (int(wh.indicators.year.max()) if len(wh.indicators) else None)
        for path in sorted(site_dir.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(site_dir).as_posix()
            if only is not None and rel not in only:
                continue
            suffix = path.suffix.lower()
            try:
                if suffix in (".csv", ".xlsx"):
                    for sheet, df in _read_tables(path):
                        findings += _check_table(rel + sheet, df, wh)
                elif suffix == ".ipynb":
                    html, plain = _notebook_texts(path)
                    findings += _check_text(rel, html, plain, wh)
                elif suffix in (".html", ".htm"):
                    text = path.read_text(encoding="utf-8", errors="replace")
                    findings += _check_text(rel, [text], [], wh)
                    area = _report_area(path, site_dir)
                    if area is not None and year is not None:
                        findings += _check_report(rel, text, area, year, wh)
                elif suffix in (".json", ".txt", ".md", ".qmd", ".typ", ".svg"):
                    findings += _check_text(rel, [], [path.read_text(encoding="utf-8", errors="replace")], wh)
            except (OSError, ValueError, KeyError, IndexError, json.JSONDecodeError, zipfile.BadZipFile,
                    ET.ParseError) as exc:
                findings.append(Finding(rel, "unreadable / 読み込めません",
                                        f"could not be checked ({type(exc).__name__}: {exc}) / 検査できません"))
    finally:
        wh.close()
    return findings
