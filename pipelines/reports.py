"""The reports stage: execute reports/report.ipynb per area with papermill, then render HTML + PDF.

Also the small data layer the report notebook uses (``load_report_data`` and the Markdown table
helpers), so that the notebook stays readable and a researcher can run it as is in Jupyter.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import config, schema
from .errors import UsageError, check_pref_code, check_year
from .indicators import OWN_SURVEY_MARK
from .reference import area_code as _area_code
from .reference import pref_name, pref_slug, prefectures

log = logging.getLogger("tsunagari.reports")

REPORT_NOTEBOOK = config.REPORTS_DIR / "report.ipynb"

# ---------------------------------------------------------------------------------------------
# Catalogue and data access (used inside the notebook)
# ---------------------------------------------------------------------------------------------


def catalogue() -> dict[str, dict]:
    """Indicator metadata by id, in catalogue order (pipelines/indicators.yml, validated by
    pipelines.indicators.load_catalogue: a broken catalogue is an error, not a silent fallback)."""
    from dataclasses import asdict

    from .indicators import load_catalogue

    return {i.id: asdict(i) for i in load_catalogue()}


def indicator_name(cat: dict[str, dict], ind: str, short: bool = True) -> str:
    name = str(cat.get(ind, {}).get("name_ja") or ind)
    if short:
        name = name.replace("（1=あり、0=なし）", "")
    return name


@dataclass
class ReportData:
    year: int
    pref_code: int
    area_code: str
    area_name: str
    indicators: pd.DataFrame          # every area, every year up to `year`
    distributions: pd.DataFrame       # every area, `year` and earlier
    catalogue: dict[str, dict]
    synthetic: bool
    uk: pd.DataFrame = field(default_factory=pd.DataFrame)
    _row_index: dict | None = field(default=None, repr=False, compare=False)
    _present: frozenset | None = field(default=None, repr=False, compare=False)

    @property
    def is_national(self) -> bool:
        return self.area_code == "00"

    def ind(self, year: int | None = None, area: str | None = None, breakdown: str = "total") -> pd.DataFrame:
        d = self.indicators
        d = d[(d.year == (year or self.year)) & (d.area_code == (area or self.area_code))]
        if breakdown is not None:
            d = d[d.breakdown == breakdown]
        return d

    def row(self, indicator_id: str, area: str | None = None, breakdown: str = "total",
            year: int | None = None) -> pd.Series | None:
        """The indicator row (year, area, breakdown, indicator), or None. A dictionary lookup: the
        report asks for ~100 rows, and filtering the whole table for each cost 0.2 s per area."""
        if self._row_index is None:
            self._row_index = row_index(self.indicators)
        pos = self._row_index.get((int(year or self.year), str(area or self.area_code), str(breakdown),
                                   str(indicator_id)))
        return None if pos is None else self.indicators.iloc[pos]

    def ids(self, source: str | None = None) -> list[str]:
        """Indicator ids present this year, in catalogue order (unknown ids last)."""
        if self._present is None:
            self._present = frozenset(self.indicators.loc[self.indicators.year == self.year, "indicator_id"].tolist())
        present = set(self._present)
        order = [i for i in self.catalogue if i in present] + sorted(present - set(self.catalogue))
        if source == "programme":
            return [i for i in order if self.unit(i) in ("per_10k", "flag")
                    or self.catalogue.get(i, {}).get("source") == "programme"]
        if source == "survey":
            return [i for i in order if not (self.unit(i) in ("per_10k", "flag")
                                             or self.catalogue.get(i, {}).get("source") == "programme")]
        return order

    def unit(self, ind: str) -> str:
        return str(self.catalogue.get(ind, {}).get("unit", "percent"))

    def name(self, ind: str) -> str:
        return indicator_name(self.catalogue, ind)

    def years(self) -> list[int]:
        return sorted(int(y) for y in self.indicators.year.unique())


# Context rows of a prefecture report (spine chart, programme chart): every prefecture's programme
# figures and the prefectures whose survey estimate comes from the national survey. Prefectures
# estimated from their own survey are left out of OTHER prefectures' context: their design differs
# (a separate sample, mode and weighting), so ranking them together would mix designs, and a
# correction to one prefecture's own survey then changes only that prefecture's report (and the
# national one). The build hashes exactly these rows (pipelines.build.report_hashes).
CONTEXT_SQL = f"""
SELECT area_code, indicator_id, breakdown, value, lower_ci95, upper_ci95, national_value, comparison,
       suppressed, note
FROM indicators
WHERE year = ? AND breakdown = 'total' AND area_code <> '00'
  AND coalesce(note, '') NOT LIKE '%{OWN_SURVEY_MARK}%'
"""


def context_rows(indicators: pd.DataFrame, year: int, area_code: str) -> pd.DataFrame:
    """The prefecture rows a report may show beside its own (same rule as CONTEXT_SQL), plus its own."""
    d = indicators[(indicators.year == year) & (indicators.breakdown == "total") & (indicators.area_code != "00")]
    own_survey = d.note.fillna("").str.contains(OWN_SURVEY_MARK, regex=False)
    return d[~own_survey | (d.area_code == area_code)].copy()


def row_index(d: pd.DataFrame) -> dict[tuple, int]:
    """(year, area_code, breakdown, indicator_id) -> position of the first such row of `d`."""
    keys = zip(d.year.astype(int).tolist(), d.area_code.astype(str).tolist(), d.breakdown.astype(str).tolist(),
               d.indicator_id.astype(str).tolist())
    index: dict[tuple, int] = {}
    for pos, key in enumerate(keys):
        index.setdefault(key, pos)   # first match, as a filter would give
    return index


def _file_key(path: Path) -> tuple:
    """Identity of the warehouse contents for the cache: the file and its write-ahead log."""
    key = []
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            key.append(config.file_key(p))
        except FileNotFoundError:
            key.append(None)
    return tuple(key)


_CACHE: dict[str, tuple] = {}


def _read_warehouse(warehouse: Path, year: int) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """The indicators and distributions up to `year`, and the synthetic flag, from the warehouse.

    Cached per process while the warehouse file (and its WAL) is unchanged: a warm kernel renders
    the 48 areas of one build from the same tables, which were read 48 times before (0.1 s each).
    Callers get the cached frames; pandas' copy-on-write keeps them from changing one another's."""
    import duckdb

    key = _file_key(warehouse)
    hit = _CACHE.get("data")
    if hit is not None and hit[0] == (key, year):
        return hit[1]
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        ind = con.execute("SELECT * FROM indicators WHERE year <= ? ORDER BY year, area_code", [year]).df()
        dist = con.execute("SELECT * FROM distributions WHERE year <= ?", [year]).df()
        synthetic = False
        try:
            synthetic = bool(con.execute("SELECT coalesce(bool_or(synthetic), false) FROM files").fetchone()[0])
        except Exception:  # no files table: treat as real data
            synthetic = False
    finally:
        con.close()
    if _file_key(warehouse) == key:   # not written meanwhile
        _CACHE["data"] = ((key, year), (ind, dist, synthetic))
        _CACHE.pop("index", None)
    return ind, dist, synthetic


def _cached_index(ind: pd.DataFrame) -> dict[tuple, int]:
    """row_index of `ind`, kept for the next report of the same warehouse read (the frames handed
    to reports are shallow copies of the cached one: same rows, same positions)."""
    hit = _CACHE.get("index")
    if hit is None or hit[0] is not ind:
        hit = (ind, row_index(ind))
        _CACHE["index"] = hit
    return hit[1]


def _read_uk() -> pd.DataFrame:
    uk_path = config.REFERENCE_DIR / "uk_cls.csv"
    if not uk_path.exists():
        return pd.DataFrame()
    key = config.file_key(uk_path)
    hit = _CACHE.get("uk")
    if hit is None or hit[0] != key:
        hit = (key, pd.read_csv(uk_path, encoding="utf-8", dtype={"year": str}))
        _CACHE["uk"] = hit
    return hit[1]


def load_report_data(warehouse: str | Path, year: int, pref_code: int) -> ReportData:
    """Read what one area's report needs from the warehouse (read-only)."""
    year = check_year(year, "year")
    pref_code = 0 if str(pref_code).strip() in ("0", "00") else check_pref_code(pref_code, "pref_code")
    code = _area_code(pref_code)
    warehouse = Path(warehouse)
    ind, dist, synthetic = _read_warehouse(warehouse, year)
    if ind[ind.year == year].empty:
        raise UsageError("--year", f"no indicators for {year} in {warehouse} / この年の指標がありません")
    return ReportData(year=year, pref_code=int(pref_code), area_code=code, area_name=pref_name(pref_code),
                      indicators=ind.copy(deep=False), distributions=dist.copy(deep=False),
                      catalogue=catalogue(), synthetic=synthetic, uk=_read_uk().copy(deep=False),
                      _row_index=_cached_index(ind))


def is_synthetic(warehouse: Path) -> bool:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return bool(con.execute("SELECT coalesce(bool_or(synthetic), false) FROM files").fetchone()[0])
    except Exception:
        return False
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Formatting (Markdown that pandoc and Quarto render natively in HTML and Typst)
# ---------------------------------------------------------------------------------------------

SUPPRESSED = "x"
MISSING = "―"
REFERENCE_MARK = "※"
FOOTNOTE_SUPPRESSED = (f"「{SUPPRESSED}」：集計対象が{config.MIN_BASE}人未満のため、または他の値からの差し引きで"
                       "算出されるのを防ぐため（二次秘匿）数値を表示していません。")
FOOTNOTE_REFERENCE = (f"「{REFERENCE_MARK}」：集計対象が{config.MIN_BASE}～{config.REFERENCE_BASE - 1}人のため"
                      "参考値です（誤差が大きい）。")
FOOTNOTE_MISSING = f"「{MISSING}」：データなし・比較できない。"


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or (
        not isinstance(v, str) and pd.isna(v))


def is_suppressed(row) -> bool:
    return row is not None and bool(row.get("suppressed", False))


def is_reference(row) -> bool:
    n = None if row is None else row.get("n_unweighted")
    return (row is not None and not is_suppressed(row) and not _isnan(n)
            and config.MIN_BASE <= int(n) < config.REFERENCE_BASE)


def fmt_num(v, unit: str = "percent", digits: int = 1) -> str:
    if _isnan(v):
        return MISSING
    if unit == "flag":
        return "あり" if float(v) >= 0.5 else "なし"
    return f"{float(v):,.{digits}f}"


def fmt_value(row, unit: str = "percent") -> str:
    """The value of an indicators row as shown: 'x' if suppressed, '―' if missing, '12.3※' if 参考値."""
    if row is None:
        return MISSING
    if is_suppressed(row):
        return SUPPRESSED
    text = fmt_num(row.get("value"), unit)
    return text + REFERENCE_MARK if is_reference(row) and text != MISSING else text


def fmt_ci(row) -> str:
    if row is None or is_suppressed(row):
        return SUPPRESSED if row is not None else MISSING
    lo, hi = row.get("lower_ci95"), row.get("upper_ci95")
    if _isnan(lo) or _isnan(hi):
        return MISSING
    return f"{lo:.1f}～{hi:.1f}"


def fmt_base(row) -> str:
    if row is None or _isnan(row.get("n_unweighted")):
        return MISSING
    n = int(row["n_unweighted"])
    return f"{config.MIN_BASE}人未満" if n < config.MIN_BASE else f"{n:,}"


def fmt_national(row, unit: str = "percent") -> str:
    if row is None:
        return MISSING
    v = row.get("national_value")
    if unit == "flag":
        return MISSING if _isnan(v) else f"{float(v):.0f}%が設置"
    return fmt_num(v, unit)


def direction_symbol(row) -> str:
    """▲ the area's value is above national, ▼ below, ● similar; ― not compared."""
    if row is None:
        return MISSING
    comp = str(row.get("comparison") or "not_compared")
    if comp in ("not_compared",) or is_suppressed(row):
        return MISSING
    if comp == "similar":
        return "●"
    if comp in ("higher", "lower"):
        return "▲" if comp == "higher" else "▼"
    v, nat = row.get("value"), row.get("national_value")
    if _isnan(v) or _isnan(nat):
        return "●"
    return "▲" if float(v) > float(nat) else "▼"


def fmt_comparison(row) -> str:
    """Comparison as a bracketed span with a class (colour in HTML and Typst via the Lua filter)."""
    if row is None or is_suppressed(row):
        return MISSING
    comp = str(row.get("comparison") or "not_compared")
    if comp == "not_compared":
        return MISSING
    label = md_escape(schema.COMPARISON_LABELS.get(comp, comp))
    return MdText(f"[{direction_symbol(row)} {label}]{{.cmp-{_css_class(comp)}}}")


def _css_class(value: str) -> str:
    """A class name from a data value: letters, digits, _ and - only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(value))


CHANGE_SYMBOLS = {"increase": "↑", "decrease": "↓", "no_change": "→", "not_compared": MISSING}


def fmt_change(row) -> str:
    if row is None or is_suppressed(row):
        return MISSING
    ch = str(row.get("change_vs_previous") or "not_compared")
    if ch == "not_compared":
        return MISSING
    text = md_escape(f"{CHANGE_SYMBOLS.get(ch, '')} {schema.CHANGE_LABELS.get(ch, ch)}")
    return MdText(f"[{text}]{{.chg-{ch}}}" if ch in ("increase", "decrease") else text)


class MdText(str):
    """Markdown built by our own helpers (e.g. the coloured comparison spans): md_table keeps it as
    is. Every other cell is data and is escaped with md_escape."""


_MD_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def md_escape(text: object) -> str:
    """Text from data (names, notes, survey ids, file names) as Markdown that shows it literally.

    pandoc's Markdown lets every ASCII punctuation character be backslash-escaped, so escaping all
    of them neutralises HTML tags, raw attributes (`x`{=html}), links and images, citations (@x),
    math ($x$), emphasis, headings, list markers and fenced divs; the Typst and HTML writers then
    escape the literal text for their own syntax (# [ ] etc.). Line breaks and control characters
    become a space (a value cannot start a new block or table row); | becomes ｜ (pipe tables)."""
    s = _MD_CONTROL.sub(" ", str(text)).replace("|", "｜")
    return _MD_PUNCT.sub(r"\\\1", s)


def md_table(header: list[str], rows: list[list[str]], align: list[str] | None = None,
             caption: str | None = None, widths: list[int] | None = None) -> str:
    """A pipe table. align: 'l' | 'r' | 'c' per column; widths: relative column widths (pandoc
    reads them from the dashes of the separator line, so wide tables wrap inside the page).
    Header and cells are escaped (md_escape) unless they are MdText; the caption is ours."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    widths = widths or [4] + [2] * (len(header) - 1)

    def mark(a: str, w: int) -> str:
        dashes = "-" * max(3, 4 * w)
        return {"l": ":" + dashes, "r": dashes + ":", "c": ":" + dashes + ":"}[a]

    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |",
             "|" + "|".join(mark(a, w) for a, w in zip(align, widths)) + "|"]
    lines += ["| " + " | ".join(c if isinstance(c, MdText) else md_escape(c) for c in r) + " |" for r in rows]
    out = "\n".join(lines)
    if caption:
        out += f"\n\n: {caption}"
    return out


def footnotes(*cells: str) -> str:
    """The footnotes that apply to the cells shown (only the symbols that occur)."""
    text = " ".join(cells)
    notes = []
    if any(c == SUPPRESSED or c.startswith(SUPPRESSED + " ") for c in cells):
        notes.append(FOOTNOTE_SUPPRESSED)
    if REFERENCE_MARK in text:
        notes.append(FOOTNOTE_REFERENCE)
    if MISSING in text:
        notes.append(FOOTNOTE_MISSING)
    return "\n\n".join(f"[{n}]{{.footnote}}" for n in notes)


def headline_table(R: ReportData) -> str:
    """The key indicators for the area (survey indicators, total)."""
    rows, cells = [], []
    for ind in R.ids("survey"):
        r = R.row(ind)
        unit = R.unit(ind)
        row = [R.name(ind), fmt_value(r, unit), fmt_ci(r), fmt_base(r)]  # md_table escapes
        if R.is_national:
            prev = R.row(ind, year=max([y for y in R.years() if y < R.year], default=0))
            row += [fmt_value(prev, unit) if prev is not None else MISSING, fmt_change(r)]
        else:
            row += [fmt_national(r, unit), fmt_comparison(r), fmt_change(r)]
        rows.append(row)
        cells += row
    if R.is_national:
        header = ["指標", "全国（%）", "95%信頼区間", "集計対象（人）", "前回（%）", "前回からの変化"]
    else:
        header = ["指標", f"{R.area_name}（%）", "95%信頼区間", "集計対象（人）", "全国（%）", "全国との比較",
                  "前回からの変化"]
    widths = [7, 2, 3, 2, 2, 2, 3][: len(header)]
    return (md_table(header, rows, ["l", "r", "r", "r", "r", "c", "c"][: len(header)], widths=widths)
            + "\n\n" + footnotes(*cells))


def breakdown_table(R: ReportData, ind: str, prefix: str, labels: dict[str, str]) -> str:
    """Area (and national) values by breakdown group, suppressed cells shown as 'x'."""
    rows, cells = [], []
    for key, label in labels.items():
        r = R.row(ind, breakdown=f"{prefix}={key}")
        n = R.row(ind, area="00", breakdown=f"{prefix}={key}")
        row = [label, fmt_value(r), fmt_ci(r), fmt_base(r)]
        if not R.is_national:
            row += [fmt_value(n), fmt_comparison(r)]
        rows.append(row)
        cells += row
    header = ["区分", f"{R.area_name}（%）", "95%信頼区間", "集計対象（人）"]
    if not R.is_national:
        header += ["全国（%）", "全国との比較"]
    return md_table(header, rows) + "\n\n" + footnotes(*cells)


def shown_value(row) -> float | None:
    """The value a chart may plot: None when suppressed or missing."""
    if row is None or is_suppressed(row) or _isnan(row.get("value")):
        return None
    return float(row["value"])


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


@dataclass
class AreaResult:
    slug: str
    ok: bool
    execute_seconds: float = 0.0
    render_seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None


@dataclass
class ReportsResult:
    areas: list[AreaResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.areas)

    @property
    def built(self) -> list[str]:
        return [a.slug for a in self.areas if a.ok]

    @property
    def failed(self) -> list[str]:
        return [a.slug for a in self.areas if not a.ok]

    def summary(self) -> str:
        lines = [f"reports: {len(self.built)} built, {len(self.failed)} failed"]
        for a in self.areas:
            state = "ok" if a.ok else f"FAILED: {a.error}"
            lines.append(f"  {a.slug}: execute {a.execute_seconds:.2f}s, render {a.render_seconds:.2f}s, {state}")
        return "\n".join(lines)


def _execute(src: Path, dst: Path, parameters: dict, cwd: Path) -> Path:
    try:
        from .execute import execute_notebook
    except ImportError:  # pragma: no cover - execute.py is another stage's module
        import papermill as pm

        dst.parent.mkdir(parents=True, exist_ok=True)
        pm.execute_notebook(str(src), str(dst), parameters=parameters, cwd=str(cwd), progress_bar=False)
        return dst
    return execute_notebook(src, dst, parameters, cwd=cwd)


def area_meta(pref_code: int, year: int, synthetic: bool) -> dict:
    name = pref_name(pref_code)
    return {
        "title": f"{name} 孤独・孤立の状況 {year}年",
        "area_name": name,
        "area_code": _area_code(pref_code),
        "year": int(year),
        "synthetic": bool(synthetic),
    }


# Run in each report kernel while it warms up (before the first area): the notebook's imports and
# the chart font, ~0.9 s that the first area of each worker paid before.
KERNEL_PRELOAD = """
import duckdb, pandas
from IPython.display import Markdown, display
from pipelines import charts, indicators, reports, schema
charts.warm_up()
import gc
gc.collect()
gc.freeze()
"""


def warm_renderer() -> None:
    """Run in each report worker while it warms up: the built-in renderer's base font subset."""
    from .render import pandoc

    pandoc._base_font()


def render_area(renderer: str, executed: Path, html: Path, pdf: Path, meta: dict) -> list[str]:
    """Render one executed notebook to HTML and PDF (never re-executes). Each file is written under
    a temporary name and renamed, so a published name never holds a half-written file."""
    from .render import get_renderer

    rend = get_renderer(renderer)
    html.parent.mkdir(parents=True, exist_ok=True)
    for target, fn in ((html, rend.render_html), (pdf, rend.render_pdf)):
        tmp = target.with_name(target.stem + ".tmp" + target.suffix)
        fn(executed, tmp, meta)
        tmp.replace(target)
    return [str(html), str(pdf)]


def build_area(pref_code: int, year: int, warehouse: Path, out_dir: Path, renderer: str = "pandoc",
               synthetic: bool | None = None) -> AreaResult:
    """Execute and render one area; never raises (the error is in the result)."""
    from .render import get_renderer

    slug = pref_slug(pref_code)
    res = AreaResult(slug=slug, ok=False)
    executed = out_dir / ".work" / "executed" / f"{slug}.ipynb"
    target_dir = out_dir if pref_code == 0 else out_dir / "prefectures"
    try:
        if synthetic is None:
            synthetic = is_synthetic(warehouse)
        t0 = time.perf_counter()
        _execute(REPORT_NOTEBOOK, executed,
                 {"year": int(year), "pref_code": int(pref_code), "warehouse": str(Path(warehouse).resolve())},
                 cwd=config.REPORTS_DIR)
        res.execute_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        html, pdf = target_dir / f"{slug}.html", target_dir / f"{slug}.pdf"
        render_area(renderer, executed, html, pdf, area_meta(pref_code, year, synthetic))
        res.render_seconds = time.perf_counter() - t1
        res.outputs = [html, pdf]
        res.ok = True
    except Exception as exc:  # one area's failure must not stop the others
        if hasattr(exc, "ename") and hasattr(exc, "evalue"):  # PapermillExecutionError
            res.error = f"{executed}: cell {getattr(exc, 'exec_count', '?')}: {exc.ename}: {exc.evalue}"[:500]
        else:
            msg = [x for x in str(exc).strip().splitlines() if x.strip()]
            res.error = f"{type(exc).__name__}: {msg[0] if msg else ''}"[:500]
        log.error("report %s failed: %s", slug, res.error)
    return res


def _build_area_star(args: tuple) -> AreaResult:
    return build_area(*args)


def run_reports(year: int, warehouse: Path, out_dir: Path, prefs: list[int] | None = None,
                renderer: str = "auto", jobs: int = 1) -> ReportsResult:
    """Execute reports/report.ipynb per area and render HTML + PDF.

    prefs empty -> national and all 47 prefectures (JIS order). Invalid codes raise UsageError.
    Writes out_dir/prefectures/{slug}.html|pdf and out_dir/national.html|pdf; executed notebooks
    under out_dir/.work/executed/. One area's failure is recorded and the others continue.
    """
    year = check_year(year)  # it names output files and is bound into SQL: digits only
    codes = [0 if str(p).strip() in ("0", "00") else check_pref_code(p) for p in (prefs or [])]  # 0 = national
    if not codes:
        codes = [0] + [int(c) for c in prefectures().pref_code]
    warehouse = Path(warehouse)
    if not warehouse.exists():
        raise UsageError("--warehouse", f"'{warehouse}' does not exist / ウェアハウスがありません")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from .render import get_renderer

    name = get_renderer(renderer).name  # resolve 'auto' once
    synthetic = is_synthetic(warehouse)
    args = [(c, int(year), warehouse, out_dir, name, synthetic) for c in codes]
    result = ReportsResult()
    if jobs <= 1 or len(args) == 1:
        for a in args:
            r = build_area(*a)
            log.info("%s: execute %.2fs render %.2fs %s", r.slug, r.execute_seconds, r.render_seconds,
                     "ok" if r.ok else r.error)
            result.areas.append(r)
    else:
        # Parallel: one warm kernel per worker (pipelines/executor.py), rendering in the worker.
        from .executor import Task, run_tasks

        tasks = []
        for code, *_ in args:
            slug = pref_slug(code)
            executed = out_dir / ".work" / "executed" / f"{slug}.ipynb"
            target_dir = out_dir if code == 0 else out_dir / "prefectures"
            tasks.append(Task(slug, REPORT_NOTEBOOK, executed,
                              {"year": int(year), "pref_code": int(code), "warehouse": str(warehouse.resolve())},
                              cwd=config.REPORTS_DIR, after=render_area,
                              after_args=(name, executed, target_dir / f"{slug}.html", target_dir / f"{slug}.pdf",
                                          area_meta(code, year, synthetic))))
        for o in run_tasks(tasks, jobs=jobs):
            result.areas.append(AreaResult(slug=o.key, ok=o.ok, execute_seconds=o.seconds,
                                           outputs=[Path(p) for p in (o.result or [])], error=o.error))
    log.info(result.summary())
    return result
