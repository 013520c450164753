"""The published site: index (tile map + table), methodology, downloads (docs/DESIGN.md "Outputs").

`build_site` reads the committed `indicators` table of one round and writes, under `out_dir`:
``index.html``, ``compare.html``, ``methodology.html``, ``downloads/index.html``, one XLSX per prefecture
(``downloads/{slug}-{year}.xlsx``) and, only when the validation stage has not written one, a
placeholder ``quality/index.html``. The area reports (``national.html|pdf``,
``prefectures/{slug}.html|pdf``) and the all-area downloads come from the reports and indicators stages;
the site links to them only when they exist, so every local link resolves.

Every page is ``lang="ja"``, shares one navigation, inlines its CSS/JS (no network asset, works
offline) and escapes all input text (Jinja2 autoescape). Synthetic data show a banner on every page.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pipelines.domain import config, conventions, method_statement, schema
from pipelines.domain.catalogue import Indicator, catalogue_path, load_catalogue
from pipelines.domain.config import build_time
from pipelines.domain.errors import DataError, check_pref_code, check_year
from pipelines.domain.formatting import as_number, fmt_interval, fmt_site_value, fmt_size
from pipelines.domain.reference import area_code, pref_slug, prefectures
from pipelines.engine import keys
from pipelines.io import warehouse as warehouse_db
from pipelines.io.xlsx import data_sheet, neutralise, text_sheet, write_workbook
from pipelines.outputs.downloads import DOWNLOAD_ROWS

log = logging.getLogger("tsunagari.site")

TEMPLATES_DIR = config.TEMPLATES_DIR

# Comparison classes: colour + symbol + Japanese text, never colour alone (pipelines.domain.conventions).
COMPARISON_SYMBOLS = {k: st.symbol for k, st in conventions.COMPARISON.items()}
COMPARISON_TEXT = {k: st.label for k, st in conventions.COMPARISON.items()}
LEGEND_ORDER = conventions.COMPARISON_ORDER
POLARITY_LABELS = {"low_is_good": "低いほど良い", "high_is_good": "高いほど良い", "no_judgement": "良否を判断しない"}
KEY_COLUMNS = 3

# The pages read every column of the round's rows (build_site: SELECT *) and the files table.
SITE_INDICATORS = keys.Reads("indicators", rows="the round")
SITE = keys.Stage(
    "site", reads=(SITE_INDICATORS, keys.FILES), writes=("index.html", "methodology.html", "downloads.html")
)
# The per-prefecture workbooks: the columns of the downloads, the synthetic flag of the files.
WORKBOOKS = keys.Stage("workbooks", reads=(DOWNLOAD_ROWS, keys.FILES), writes=("downloads/{slug}-{year}.xlsx",))


# --- data ----------------------------------------------------------------------------------------


def _read(warehouse: Path, year: int) -> tuple[pd.DataFrame, bool]:
    if not Path(warehouse).exists():
        raise DataError(
            str(warehouse),
            "warehouse not found / ウェアハウスがありません",
            detail="Run `tsunagari build` (or ingest + indicators) first.",
        )
    con = warehouse_db.connect(warehouse)
    try:
        if not warehouse_db.has_table(con, "indicators"):
            raise DataError(
                str(warehouse),
                "no indicators table / 指標テーブルがありません",
                detail="Run `tsunagari indicators --year Y` first.",
            )
        df = con.execute(
            "SELECT * FROM indicators WHERE year = ? ORDER BY area_code, indicator_id, breakdown", [year]
        ).df()
        synthetic = False
        if warehouse_db.has_table(con, "files"):
            synthetic = bool(con.execute("SELECT coalesce(bool_or(synthetic), false) FROM files").fetchone()[0])
    finally:
        con.close()
    if df.empty:
        raise DataError(
            str(warehouse),
            f"no indicators for year {year} / {year}年の指標がありません",
            column="year",
            detail="Run `tsunagari indicators --year Y` for this round.",
        )
    return df, synthetic


def _cell(row: pd.Series | None, ind: Indicator, national: bool = False) -> dict[str, Any]:
    """Display fields of one area x indicator (total breakdown). For a flag indicator the national row
    holds the share of prefectures with the flag set (percent)."""
    if row is None:
        return {
            "v": None,
            "text": conventions.MISSING_MARK,
            "ci": "",
            "cmp": "not_compared",
            "sup": False,
            "ref": False,
            "method": "",
            "mark": "",
        }
    suppressed = bool(row["suppressed"])
    note = row["note"] if isinstance(row["note"], str) else ""
    cmp_ = str(row["comparison"] or "not_compared")
    if cmp_ not in schema.COMPARISON_LABELS:
        cmp_ = "not_compared"
    unit = "percent" if national and ind.unit == "flag" else ind.unit
    method = row.get("estimate_method")
    if isinstance(method, str) and method in ("pooled", "model") and as_number(row.get("lead_value")) is not None:
        # the leading estimate is pooled or model-based (issue #24): shown with its method, no
        # comparison (labels are about the direct estimate)
        mark = conventions.ESTIMATE_MARKS[method]
        return {
            "v": as_number(row["lead_value"]),
            "text": fmt_site_value(row["lead_value"], unit) + mark,
            "ci": fmt_interval(row["lead_lower_ci95"], row["lead_upper_ci95"]),
            "cmp": "not_compared",
            "sup": False,
            "ref": False,
            "mark": mark,
            "method": conventions.estimate_method_label(method, row.get("lead_years")),
        }
    if suppressed:
        return {
            "v": None,
            "text": conventions.SUPPRESSED_MARK,
            "ci": "",
            "cmp": "suppressed",
            "sup": True,
            "ref": False,
            "method": "",
            "mark": "",
        }
    n = as_number(row["n_unweighted"])
    ref = "参考値" in note or (n is not None and n < config.REFERENCE_BASE)
    return {
        "v": as_number(row["value"]),
        "text": fmt_site_value(row["value"], unit),
        "ci": fmt_interval(row["lower_ci95"], row["upper_ci95"]),
        "cmp": cmp_,
        "sup": False,
        "ref": ref,
        "method": conventions.estimate_method_label("direct") if row.get("source") != "programme" else "",
        "mark": "",
    }


def breakdown_order(b: str) -> tuple[int, int, str]:
    """total, sex, national age bands, UK age bands, anything else."""
    key, _, val = str(b).partition("=")
    if b == "total":
        return (0, 0, "")
    if key == "sex":
        return (1, int(val) if val.isdigit() else 99, val)
    if key == "age":
        return (2, schema.AGE_BANDS.index(val) if val in schema.AGE_BANDS else 99, val)
    if key == "uk_age":
        return (3, schema.UK_AGE_BANDS.index(val) if val in schema.UK_AGE_BANDS else 99, val)
    return (4, 0, str(b))


def short_name(name_ja: str) -> str:
    """Tile label: 東京都 -> 東京, 大阪府 -> 大阪, 青森県 -> 青森; 北海道 stays."""
    if name_ja == "北海道":
        return name_ja
    return name_ja[:-1] if name_ja[-1] in "都府県" else name_ja


# --- the downloads page ------------------------------------------------------------------------

_ROUND_FILE = re.compile(r"indicators-(\d{4})\.(csv|xlsx)")
_PREF_FILE = re.compile(r"(\d{2})-([a-z]+)-(\d{4})\.xlsx")


def download_files(out_dir: Path) -> list[tuple[str, int]]:
    """(name, size in bytes) of every file the downloads page lists: each file in
    ``out_dir/downloads`` but the page itself, dot files and files being written."""
    d = Path(out_dir) / "downloads"
    if not d.is_dir():
        return []
    return sorted(
        (p.name, p.stat().st_size)
        for p in d.iterdir()
        if p.is_file()
        and p.name != "index.html"
        and not p.name.startswith(".")
        and not p.name.endswith(".tmp")
        and ".tmp." not in p.name
    )


def downloads_listing(out_dir: Path) -> dict[str, Any]:
    """What the downloads page lists, from the files in ``out_dir/downloads`` at build time (each
    {"name", "bytes", "size"}): the series of every round, one row per round (csv, xlsx), the
    per-prefecture workbooks by area and round, the data dictionary, and any other file."""
    from pipelines.outputs.downloads import DICTIONARY_FILE

    def entry(name: str, size: int) -> dict[str, Any]:
        return {"name": name, "bytes": size, "size": fmt_size(size)}

    series: list[dict] = []
    rounds: dict[int, dict[str, dict]] = {}
    prefs: dict[str, dict[int, dict]] = {}
    dictionary, other = None, []
    for name, size in download_files(out_dir):
        e = entry(name, size)
        if name in ("indicators.csv", "indicators.xlsx"):
            series.append(e)
        elif m := _ROUND_FILE.fullmatch(name):
            rounds.setdefault(int(m.group(1)), {})[m.group(2)] = e
        elif m := _PREF_FILE.fullmatch(name):
            prefs.setdefault(m.group(1), {})[int(m.group(3))] = e
        elif name == DICTIONARY_FILE:
            dictionary = e
        else:
            other.append(e)
    pref_years = sorted({y for by_year in prefs.values() for y in by_year}, reverse=True)
    return {
        "series": sorted(series, key=lambda e: e["name"].endswith(".xlsx")),
        "rounds": [{"year": y, **rounds[y]} for y in sorted(rounds, reverse=True)],
        "pref_years": pref_years,
        "prefs": prefs,
        "dictionary": dictionary,
        "other": other,
    }


# --- pages ---------------------------------------------------------------------------------------

NAV = [
    ("index.html", "トップ"),
    ("national.html", "全国"),
    ("compare.html", "比較"),
    ("methodology.html", "方法"),
    ("quality/index.html", "データ品質"),
    ("downloads/index.html", "ダウンロード"),
]
# The pages build_site writes: live in the navigation of every page it writes, whichever is written first.
SITE_PAGES = frozenset({"index.html", "compare.html", "methodology.html", "downloads/index.html"})


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt_value"] = fmt_site_value
    env.globals["level"] = config.confidence_percent()  # the intervals' level, e.g. 95
    return env


def _picker(out_dir: Path, depth: int) -> Markup:
    """The prefecture picker of the site header (pipelines.domain.conventions.prefecture_picker): the
    prefectures whose report exists."""
    options = [
        (f"{'../' * depth}{rel}", f"{int(r.pref_code):02d} {r.name_ja}")
        for r in prefectures().itertuples()
        if (out_dir / (rel := f"prefectures/{pref_slug(int(r.pref_code))}.html")).is_file()
    ]
    return Markup(conventions.prefecture_picker(options, ident="site-pref-picker")) if options else Markup("")


def _nav(out_dir: Path, depth: int, current: str, planned: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The navigation items; a page that does not exist (and is not in `planned`, the pages being
    written now) is shown disabled."""
    prefix = "../" * depth
    return [
        {
            "href": prefix + href,
            "text": text,
            "exists": (out_dir / href).exists() or href == current or href in planned,
            "current": href == current,
        }
        for href, text in NAV
    ]


HEADER_MARKER = "<!-- tsunagari-site-header -->"
FONT_DIR = "assets/fonts"
# The subset of site.css the header needs, for pages whose stylesheet is not ours.
HEADER_CSS = """.site-header{border-bottom:1px solid #c8c8c8;padding:8px 24px;display:flex;flex-wrap:wrap;
align-items:center;justify-content:space-between;gap:8px}
.site-title{margin:0;font-weight:bold}.site-title a{color:#1a1a1a;text-decoration:none}
.site-title span{font-weight:normal;color:#555;font-size:.9em;margin-left:.5em}
.nav{list-style:none;display:flex;flex-wrap:wrap;gap:4px 18px;margin:0;padding:0}
.nav a{color:#005a9c}.nav a[aria-current=page]{font-weight:bold;color:#1a1a1a;border-bottom:3px solid #005a9c}
.nav .disabled{color:#888}
.picker{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin-top:4px;font-size:.9em}.picker select,.picker button{font:inherit;padding:2px 6px;max-width:100%}
.synthetic-banner{background:#fff3b0;border-bottom:2px solid #8a6d00;padding:8px 24px;color:#3d3000}
.table-wrap{overflow-x:auto;max-width:100%}.table-wrap:focus-visible{outline:3px solid #000;outline-offset:2px}"""


def site_header_html(out_dir: Path, page: str, year: int, synthetic: bool) -> str:
    """The shared navigation (and synthetic banner) for `page` (path relative to out_dir, e.g.
    'quality/index.html'), with its own small inline style: for pages other stages write."""
    depth = page.count("/")
    html = (
        _env()
        .get_template("site-header.html.j2")
        .render(
            depth=depth, nav=_nav(out_dir, depth, page), year=year, synthetic=synthetic, picker=_picker(out_dir, depth)
        )
    )
    return f"<style>{HEADER_CSS}</style>\n{html}"


def inject_site_header(path: Path, out_dir: Path, year: int, synthetic: bool) -> bool:
    """Insert the shared navigation after <body> of a page written by another stage, and put its
    tables in scroll regions (idempotent: a page that has both is left alone). Returns True when
    the page was changed."""
    text = path.read_text(encoding="utf-8")
    new = text
    m = re.search(r"<body[^>]*>", text, re.I)
    if HEADER_MARKER not in text and m:
        page = path.relative_to(out_dir).as_posix()
        header = site_header_html(out_dir, page, year, synthetic and "合成データ" not in text)
        new = text[: m.end()] + "\n" + header + text[m.end() :]
    new = conventions.scrollable_tables(new)  # its wide tables scroll in their own region
    if new == text:
        return False
    _write(path, new)
    return True


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".html":
        text = _embed_site_font(conventions.scrollable_tables(text))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass
class _SiteData:
    df: pd.DataFrame  # the round's indicators, catalogue order
    synthetic: bool
    catalogue: list[Indicator]
    by_id: dict[str, Indicator]


def _prepare(year: int, warehouse: Path, synthetic: bool | None) -> _SiteData:
    df, wh_synthetic = _read(Path(warehouse), year)
    synthetic = wh_synthetic if synthetic is None else bool(synthetic)
    present = set(df["indicator_id"])
    catalogue = list(load_catalogue())
    unknown = sorted(present - {i.id for i in catalogue})
    if unknown:  # rows of indicators the catalogue no longer lists are not published
        log.warning("site: indicators not in the catalogue are left out: %s", ", ".join(unknown))
        df = df[df["indicator_id"].isin({i.id for i in catalogue})]
    by_id = {i.id: i for i in catalogue}
    order = {i.id: k for k, i in enumerate(catalogue)}
    df = (
        df.assign(_i=df["indicator_id"].map(order), _b=df["breakdown"].map(breakdown_order))
        .sort_values(["area_code", "_i", "_b"], kind="stable")
        .drop(columns=["_i", "_b"])
    )
    return _SiteData(df, synthetic, catalogue, by_id)


def write_pref_workbooks(
    year: int, warehouse: Path, out_dir: Path, synthetic: bool | None = None, data: _SiteData | None = None
) -> list[Path]:
    """The 47 per-prefecture XLSX downloads (``downloads/{slug}-{year}.xlsx``); returns their paths.

    They do not depend on the reports, so the build writes them while the reports run. A workbook
    whose inputs (its rows, the national rows, the catalogue, the code: ``fingerprint.current()``) are
    unchanged is not rewritten: after one prefecture's correction only that workbook (and any whose rows
    changed) is written again. The digests live beside the workbooks."""
    year = check_year(year, "year")  # names files (downloads/{slug}-{year}.xlsx): digits only
    out_dir = Path(out_dir)
    data = data or _prepare(year, warehouse, synthetic)
    df, synthetic, by_id = data.df, data.synthetic, data.by_id
    written: list[Path] = []
    # The rows of every area come from one conversion of the whole table; the national sheet (the
    # same in every workbook) is built once.
    prefs = prefectures()
    header, all_rows = xlsx_rows(df, by_id, synthetic)
    by_area: dict[str, list[list[Any]]] = {}
    for code, row in zip(df["area_code"].tolist(), all_rows):
        by_area.setdefault(code, []).append(row)
    national_rows = (header, by_area.get("00", []))
    national_sheet = _pref_sheet(*national_rows)
    built_at = build_time()
    digests_path = out_dir / "downloads" / ".xlsx-inputs.json"
    try:
        old_digests = json.loads(digests_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        old_digests = {}
    from pipelines.engine import fingerprint

    # the code that writes the sheets and their notes (this module, downloads, the method statement,
    # conventions, ...): the package's fingerprint, as the build's artefacts use
    common = hashlib.sha256(
        repr((national_rows, synthetic, year)).encode() + fingerprint.current().encode() + catalogue_path().read_bytes()
    ).hexdigest()
    new_digests = {}
    for r in prefs.itertuples():
        code = area_code(r.pref_code)
        rows = by_area.get(code, [])
        d = hashlib.sha256((common + repr((str(r.name_ja), rows))).encode()).hexdigest()
        path = out_dir / "downloads" / f"{pref_slug(r.pref_code)}-{year}.xlsx"
        new_digests[path.name] = d
        if old_digests.get(path.name) == d and path.is_file():
            written.append(path)
            continue
        written.append(
            write_pref_xlsx(
                df,
                int(r.pref_code),
                str(r.name_ja),
                year,
                out_dir,
                by_id,
                synthetic,
                national_rows,
                area_rows=(header, rows),
                national_sheet=national_sheet,
                built_at=built_at,
            )
        )
    digests_path.parent.mkdir(parents=True, exist_ok=True)
    digests_path.write_text(json.dumps({**old_digests, **new_digests}, sort_keys=True, indent=0), encoding="utf-8")
    return written


def build_site(
    year: int, warehouse: Path, out_dir: Path, synthetic: bool | None = None, workbooks: bool = True
) -> list[Path]:
    """Write the site pages and per-prefecture downloads for `year`; return the files written.
    workbooks=False: the per-prefecture workbooks were written already (the build writes them while
    the reports run), only the pages are written."""
    year = check_year(year, "year")  # names files (downloads/{slug}-{year}.xlsx): digits only
    out_dir = Path(out_dir)
    data = _prepare(year, warehouse, synthetic)
    df, synthetic, catalogue = data.df, data.synthetic, data.catalogue

    total = df[df["breakdown"] == "total"]
    lookup = {(r.area_code, r.indicator_id): r for r in (row for _, row in total.iterrows())}
    # Map indicators: catalogue order, only those with prefecture rows in this round.
    pref_ids = set(total.loc[total["area_code"] != "00", "indicator_id"])
    map_inds = [i for i in catalogue if i.id in pref_ids]
    # Headline indicators (catalogue `headline`) are the prefecture table's columns and the map's default.
    headline = [i for i in map_inds if i.headline] or map_inds
    key_inds = headline[:KEY_COLUMNS]
    default_ind = headline[0] if headline else None

    # Per-prefecture XLSX first, so the pages can link to them (unchanged ones are not rewritten).
    written: list[Path] = write_pref_workbooks(year, warehouse, out_dir, synthetic, data=data) if workbooks else []
    prefs = prefectures()
    slugs = {r.pref_code: pref_slug(r.pref_code) for r in prefs.itertuples()}
    built_at = build_time()

    areas = []
    for r in prefs.itertuples():
        code = area_code(r.pref_code)
        slug = slugs[r.pref_code]
        cells = {i.id: _cell(lookup.get((code, i.id)), i) for i in map_inds}
        areas.append(
            {
                "code": code,
                "name": str(r.name_ja),
                "short": short_name(str(r.name_ja)),
                "romaji": str(r.romaji),
                "region": str(r.region),
                "slug": slug,
                "x": int(r.tile_x),
                "y": int(r.tile_y),
                "row": 8 - int(r.tile_y),
                "html": f"prefectures/{slug}.html" if (out_dir / f"prefectures/{slug}.html").exists() else None,
                "pdf": f"prefectures/{slug}.pdf" if (out_dir / f"prefectures/{slug}.pdf").exists() else None,
                "xlsx": f"downloads/{slug}-{year}.xlsx",
                "cells": cells,
            }
        )
    national = {i.id: _cell(lookup.get(("00", i.id)), i, national=True) for i in map_inds}
    schemes = {i.id: map_scheme(i, {a["code"]: a["cells"][i.id] for a in areas}) for i in map_inds}
    for a in areas:  # each tile's class, symbol and the words of its colour (map_scheme)
        for k, c in a["cells"].items():
            c["tile"] = schemes[k]["tiles"][a["code"]]
    map_data = {
        "default": default_ind.id if default_ind else None,
        "indicators": [
            {
                "id": i.id,
                "name": i.name_ja,
                "polarity": i.polarity,
                "polarity_label": POLARITY_LABELS.get(i.polarity, i.polarity),
                "national": national[i.id]["text"],
                "scheme": schemes[i.id]["scheme"],
                "scheme_text": schemes[i.id]["scheme_text"],
                "legend": schemes[i.id]["legend"],
                "classes": schemes[i.id]["classes"],
            }
            for i in map_inds
        ],
        "areas": {
            a["code"]: {
                "name": a["name"],
                "short": a["short"],
                "cells": {
                    k: {
                        "text": c["text"],
                        "ci": c["ci"],
                        "cmp": c["cmp"],
                        "method": c["method"],
                        "cls": c["tile"]["cls"],
                    }
                    for k, c in a["cells"].items()
                },
            }
            for a in areas
        },
        "symbols": COMPARISON_SYMBOLS,
        "labels": COMPARISON_TEXT,
        "missing": conventions.MISSING_MARK,
    }
    env = _env()
    css = (TEMPLATES_DIR / "site.css").read_text(encoding="utf-8") + map_css()
    copy_site_font(out_dir)
    generated = built_at.astimezone().strftime("%Y-%m-%d %H:%M")
    common = {
        "year": year,
        "synthetic": synthetic,
        "css": css,
        "generated": generated,
        "publication": config.publication(built_at),
        "symbols": COMPARISON_SYMBOLS,
        "comparison_text": COMPARISON_TEXT,
        "legend": LEGEND_ORDER,
        "suppressed_mark": conventions.SUPPRESSED_MARK,
        "comparison_rule": method_statement.comparison_short(),
        "min_base": config.MIN_BASE,
        "reference_base": config.REFERENCE_BASE,
        "estimate_marks": [(m, conventions.ESTIMATE_METHODS[m]) for m in conventions.ESTIMATE_MARKS],
        "mark_of": conventions.ESTIMATE_MARKS,
    }

    # Quality page: the validation stage writes it; a placeholder keeps the navigation link valid.
    quality = out_dir / "quality" / "index.html"
    if not quality.exists():
        written.append(
            _write(
                quality,
                env.get_template("site-quality.html.j2").render(
                    **common,
                    title="データ品質",
                    depth=1,
                    nav=_nav(out_dir, 1, "quality/index.html", SITE_PAGES),
                    picker=_picker(out_dir, 1),
                ),
            )
        )
    # Pages written before the site exists get the shared navigation too (after downloads/index and
    # methodology exist, so their nav links are live).
    deferred_quality = quality

    downloads = {
        "csv": f"downloads/indicators-{year}.csv" if (out_dir / f"downloads/indicators-{year}.csv").exists() else None,
        "xlsx": f"downloads/indicators-{year}.xlsx"
        if (out_dir / f"downloads/indicators-{year}.xlsx").exists()
        else None,
    }
    from pipelines.outputs import downloads as dl

    written.append(
        _write(
            out_dir / "downloads" / "index.html",
            env.get_template("site-downloads.html.j2").render(
                **common,
                title="ダウンロード",
                depth=1,
                nav=_nav(out_dir, 1, "downloads/index.html", SITE_PAGES),
                picker=_picker(out_dir, 1),
                areas=areas,
                downloads=downloads,
                files=downloads_listing(out_dir),
                dictionary=dl.COLUMNS,
                dictionary_headers=dl.dictionary_headers()[0],
                precision=dl.PRECISION_JA,
            ),
        )
    )

    national_html = "national.html" if (out_dir / "national.html").exists() else None
    written.append(write_compare_page(env, common, out_dir, df, map_inds, areas, national_html, downloads))

    written.append(
        _write(
            out_dir / "methodology.html",
            env.get_template("site-methodology.html.j2").render(
                **common,
                title="方法",
                depth=0,
                nav=_nav(out_dir, 0, "methodology.html", SITE_PAGES),
                picker=_picker(out_dir, 0),
                catalogue=catalogue,
                polarity_labels=POLARITY_LABELS,
                citations=method_statement.citations(),
                rules=method_statement.rules(),
                confidence=int(config.CONFIDENCE_LEVEL * 100),
            ),
        )
    )

    default_id = default_ind.id if default_ind else None
    written.append(
        _write(
            out_dir / "index.html",
            env.get_template("site-index.html.j2").render(
                **common,
                title="トップ",
                depth=0,
                nav=_nav(out_dir, 0, "index.html", SITE_PAGES),
                picker=_picker(out_dir, 0),
                areas=areas,
                grid=sorted(areas, key=lambda a: (a["row"], a["x"])),
                map_inds=map_inds,
                key_inds=key_inds,
                default_id=default_id,
                default_ind=default_ind,
                national=national,
                national_html="national.html" if (out_dir / "national.html").exists() else None,
                national_pdf="national.pdf" if (out_dir / "national.pdf").exists() else None,
                downloads=downloads,
                map_data=map_data,
                polarity_labels=POLARITY_LABELS,
                default_scheme=schemes[default_id] if default_id else None,
                map_levels=MAP_LEVELS,
            ),
        )
    )
    if inject_site_header(deferred_quality, out_dir, year, synthetic):
        written.append(deferred_quality)
    log.info("site: %d files written to %s", len(written), out_dir)
    return written


_EMBEDDED_FONT = re.compile(r"<style>@font-face\{font-family:'TsunagariJP';.*?</style>\n", re.S)
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _embed_site_font(page: str) -> str:
    """The page with IPAexGothic embedded (subset to its characters, as the reports do), replacing
    an earlier embedding: Japanese renders offline and where no Japanese font is installed, and a
    visitor downloads only the characters the page uses, not the whole font. Text that the page's script
    shows from its JSON data (written as \\uXXXX) is included."""
    from pipelines.render.pandoc import embed_font

    page = _EMBEDDED_FONT.sub("", page)
    scripted = "".join(chr(int(h, 16)) for h in _JSON_ESCAPE.findall(page))
    return embed_font(page, scripted)


# --- tile map fills (issue #23 item 3) ------------------------------------------------------------

# An indicator whose prefecture tiles are judged against the national value is coloured by the
# comparison (pipelines.domain.conventions); one with no judged tile (the programme rates and flags) by its
# value: five levels of one sequential scale, light (low) to dark (high), the level's digit on the
# tile and the value in text. Tiles with a pooled or model-based estimate (not compared) have their
# own fill and mark. (fill, text on it): WCAG AA contrast, tests/test_site.py checks it.
MAP_LEVELS = 5
MAP_FILLS = {
    "val-1": ("#F2F0F7", "#1A1A1A"),
    "val-2": ("#CBC9E2", "#1A1A1A"),
    "val-3": ("#9E9AC8", "#000000"),
    "val-4": ("#6A51A3", "#FFFFFF"),
    "val-5": ("#3F007D", "#FFFFFF"),
    "val-yes": ("#6A51A3", "#FFFFFF"),
    "val-no": ("#CBC9E2", "#1A1A1A"),
    "est-model": ("#F3E6CC", "#1A1A1A"),
    "est-pooled": ("#F3E6CC", "#1A1A1A"),
}
JUDGED = frozenset({"better", "worse", "similar", "higher", "lower"})


def map_css() -> str:
    """The CSS of MAP_FILLS (appended to site.css on the index page)."""
    return "\n".join(f".{k} {{ background: {f}; color: {t}; }}" for k, (f, t) in MAP_FILLS.items()) + "\n"


def map_scheme(ind: Indicator, cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How the tile map shows `ind` (cells: area code -> ``_cell``): the scheme ('comparison' when
    any prefecture tile is judged, else 'value'), per tile its class, symbol and the words that say
    what the colour means, and the legend: only the entries that some tile shows, in order."""
    tiles: dict[str, dict[str, str]] = {}
    judged = any(c["cmp"] in JUDGED for c in cells.values())
    if judged:
        for code, c in cells.items():
            if c["mark"]:
                method = next(m for m, mark in conventions.ESTIMATE_MARKS.items() if mark == c["mark"])
                tiles[code] = {
                    "cls": f"est-{method}",
                    "sym": c["mark"],
                    "desc": f"全国と比べて{COMPARISON_TEXT['not_compared']}（{conventions.ESTIMATE_METHODS[method]}）",
                }
            else:
                tiles[code] = {
                    "cls": f"cmp-{c['cmp']}",
                    "sym": COMPARISON_SYMBOLS[c["cmp"]],
                    "desc": "全国と比べて" + COMPARISON_TEXT[c["cmp"]],
                }
        entries = [(f"cmp-{k}", COMPARISON_SYMBOLS[k], COMPARISON_TEXT[k]) for k in LEGEND_ORDER]
        entries += [
            (f"est-{m}", mark, f"{conventions.ESTIMATE_METHODS[m]}（全国との比較はしない）")
            for m, mark in conventions.ESTIMATE_MARKS.items()
        ]
    else:
        values = {code: c["v"] for code, c in cells.items() if c["v"] is not None and not c["sup"]}
        entries = []
        if ind.unit == "flag":
            for code, v in values.items():
                yes = v >= 0.5
                tiles[code] = {
                    "cls": "val-yes" if yes else "val-no",
                    "sym": "●" if yes else "○",
                    "desc": "あり" if yes else "なし",
                }
            entries = [("val-yes", "●", "あり"), ("val-no", "○", "なし")]
        elif values:
            lo, hi = min(values.values()), max(values.values())
            width = (hi - lo) / MAP_LEVELS
            members: dict[int, list[float]] = {}
            for code, v in values.items():
                level = MAP_LEVELS // 2 if width == 0 else min(MAP_LEVELS - 1, int((v - lo) / width))
                members.setdefault(level, []).append(v)
                tiles[code] = {
                    "cls": f"val-{level + 1}",
                    "sym": str(level + 1),
                    "desc": f"値の大きさ {level + 1}（{MAP_LEVELS}段階、数字・色が濃いほど大きい）",
                }
            for level in range(MAP_LEVELS):
                if level in members:
                    a, b = fmt_site_value(min(members[level]), ind.unit), fmt_site_value(max(members[level]), ind.unit)
                    entries.append((f"val-{level + 1}", str(level + 1), a if a == b else f"{a}～{b}"))
        for code, c in cells.items():
            if code not in tiles:
                key = "suppressed" if c["sup"] else "not_compared"
                tiles[code] = {
                    "cls": f"cmp-{key}",
                    "sym": COMPARISON_SYMBOLS[key] if c["sup"] else conventions.MISSING_MARK,
                    "desc": COMPARISON_TEXT[key] if c["sup"] else "値なし",
                }
        entries += [
            ("cmp-suppressed", COMPARISON_SYMBOLS["suppressed"], COMPARISON_TEXT["suppressed"]),
            ("cmp-not_compared", conventions.MISSING_MARK, "値なし"),
        ]
    shown = {t["cls"] for t in tiles.values()}
    return {
        "scheme": "comparison" if judged else "value",
        "scheme_text": "全国との比較" if judged else "値の大きさ（全国との比較はしない指標）",
        "tiles": tiles,
        # a tile's symbol and words follow from its class: sent once per class, not per tile
        "classes": {t["cls"]: {"sym": t["sym"], "desc": t["desc"]} for t in tiles.values()},
        "legend": [{"cls": cls, "sym": sym, "text": text} for cls, sym, text in entries if cls in shown],
    }


# --- compare page (issue #23): two or three prefectures side by side ------------------------------

COMPARE_SLOTS = 3
UNIT_NOTE = {
    "percent": "%",
    "per_10k": "16歳以上人口1万人当たり",
    "flag": "あり／なし（全国は設置済みの都道府県の割合%）",
    "count": "件",
    "yen": "円",
}


def suppression_reason(note: Any) -> str:
    """Why a suppressed cell is hidden, in the words of the reports' footnote."""
    text = note if isinstance(note, str) else ""
    if "二次秘匿" in text or "secondary suppression" in text:
        return "他の値からの差し引きで算出されるのを防ぐため（二次秘匿）非表示"
    return f"集計対象が{config.MIN_BASE}人未満のため非表示"


def compare_cell(row: pd.Series | None, ind: Indicator, national: bool = False) -> dict[str, Any]:
    """One cell of the compare page from a row at the published precision (downloads.round_published):
    the value as the site shows it (``_cell``; a rate per 10,000 with its published decimals), its
    interval, the comparison's symbol and word, the estimate method, the base as published (a
    suppressed row's base is not published) and, for a suppressed cell, why."""
    c = _cell(row, ind, national)
    text = c["text"]
    if ind.unit == "per_10k" and c["v"] is not None:
        text = f"{c['v']:.{conventions.RATE_DECIMALS}f}" + c["mark"]
    base = ""
    if row is not None and not c["sup"] and not c["mark"]:
        n = as_number(row.get("n_unweighted"))
        base = f"{n:,.0f}人" if n is not None else ""
    return {
        "t": text,
        "ci": c["ci"],
        "cmp": c["cmp"],
        "m": c["method"],
        "n": base,
        "ref": c["ref"],
        "sup": suppression_reason(row.get("note")) if c["sup"] and row is not None else "",
    }


def compare_data(
    df: pd.DataFrame, inds: list[Indicator], areas: list[dict[str, Any]], national_html: str | None
) -> dict[str, Any]:
    """The JSON the compare page embeds: every area's (and the nation's) published headline cells
    (total breakdown) of `inds`. Nothing that the site does not publish: values at the published
    precision, suppressed cells as the mark and the reason only."""
    from pipelines.outputs.downloads import round_published

    total = round_published(df[df["breakdown"] == "total"])
    lookup = {(r["area_code"], r["indicator_id"]): r for _, r in total.iterrows()}
    out_areas = {
        "00": {
            "name": "全国",
            "html": national_html,
            "cells": {i.id: compare_cell(lookup.get(("00", i.id)), i, national=True) for i in inds},
        }
    }
    for a in areas:
        out_areas[a["code"]] = {
            "name": a["name"],
            "html": a["html"],
            "cells": {i.id: compare_cell(lookup.get((a["code"], i.id)), i) for i in inds},
        }
    return {
        "indicators": [
            {
                "id": i.id,
                "name": i.name_ja,
                "unit": UNIT_NOTE.get(i.unit, i.unit),
                "polarity": POLARITY_LABELS.get(i.polarity, i.polarity),
            }
            for i in inds
        ],
        "areas": out_areas,
        "symbols": COMPARISON_SYMBOLS,
        "labels": {**COMPARISON_TEXT, "suppressed": "非表示"},
        "slots": COMPARE_SLOTS,
        "missing": conventions.MISSING_MARK,
    }


def write_compare_page(
    env: Environment,
    common: dict[str, Any],
    out_dir: Path,
    df: pd.DataFrame,
    inds: list[Indicator],
    areas: list[dict[str, Any]],
    national_html: str | None,
    downloads: dict[str, Any],
) -> Path:
    """compare.html: two or three prefectures and the national figures side by side. A small inline
    script draws the table from the embedded data for the areas chosen in labelled selects; the
    choice is kept in the query string (compare.html?a=13&b=31), so a report links to the page with
    its own area chosen. Without JavaScript the page lists the reports instead."""
    data = compare_data(df, inds, areas, national_html)
    return _write(
        out_dir / "compare.html",
        env.get_template("site-compare.html.j2").render(
            **common,
            title="都道府県の比較",
            depth=0,
            nav=_nav(out_dir, 0, "compare.html", SITE_PAGES),
            picker=_picker(out_dir, 0),
            areas=areas,
            slots=COMPARE_SLOTS,
            compare_data=data,
            national_html=national_html,
            downloads=downloads,
        ),
    )


def copy_site_font(out_dir: Path) -> str | None:
    """Ship the licence and readme of IPAexGothic (matplotlib-fontja, IPA Font License), whose
    subset every page embeds, in assets/fonts. Returns that folder relative to out_dir (None if the
    font package is unavailable)."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib_fontja")  # located, not imported (that imports matplotlib)
    if spec is None or not spec.origin:  # pragma: no cover - a declared dependency
        return None
    src_dir = Path(spec.origin).resolve().parent / "fonts"
    src = src_dir / "ipaexg.ttf"
    if not src.is_file():
        return None
    dst_dir = out_dir / "assets" / "fonts"
    dst_dir.mkdir(parents=True, exist_ok=True)
    for f in src_dir.glob("*.txt"):  # the font's licence/readme
        dst = dst_dir / f.name
        if not dst.exists() or dst.stat().st_size != f.stat().st_size:
            shutil.copyfile(f, dst)
    stale = dst_dir / src.name  # the whole font, shipped by earlier versions
    if stale.is_file():
        stale.unlink()
    return FONT_DIR


# --- per-prefecture XLSX -------------------------------------------------------------------------

SUPPRESSED_BLANK = ("value", "lower_ci95", "upper_ci95")  # never published for a suppressed row


def xlsx_rows(
    df: pd.DataFrame, catalogue: dict[str, Indicator], synthetic: bool = False
) -> tuple[list[list[str]], list[list[Any]]]:
    """(header rows, rows) of indicator records for a spreadsheet, in the layout of the all-area
    download (pipelines.outputs.downloads: the contract columns with Japanese labels and names; two header
    rows, Japanese then the column codes; the ``synthetic`` column when ``synthetic``); plain Python
    values, suppressed values blanked, text neutralised against formula injection."""
    from pipelines.outputs.downloads import download_table, header_rows

    table = download_table(df, list(catalogue.values()), synthetic)
    cols = list(table.columns)
    suppressed = (
        [v is not None and v is not pd.NA and bool(v) for v in table["suppressed"].tolist()]
        if "suppressed" in cols
        else [False] * len(table)
    )
    columns = []
    for col in cols:
        values = []
        blank = col in SUPPRESSED_BLANK
        for v, sup in zip(table[col].tolist(), suppressed):
            if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
                v = None
            elif hasattr(v, "item"):
                v = v.item()
            if blank and sup:
                v = None
            values.append(neutralise(v))
        columns.append(values)
    rows = [list(r) for r in zip(*columns)] if columns else [[] for _ in range(len(table))]
    return header_rows(cols), rows


def _pref_sheet(headers: list[list[str]], rows: list[list[Any]]) -> tuple[bytes, str]:
    """A data sheet of a per-prefecture workbook (``xlsx.data_sheet``: two header rows, frozen,
    autofilter, column widths) and its autofilter range."""
    return data_sheet(headers, rows)


def pref_notes(name_ja: str, code: str, year: int, synthetic: bool, built_at: datetime) -> list[tuple[str, str]]:
    """The notes sheet of a per-prefecture workbook: the synthetic-data statement first."""
    from pipelines.outputs.downloads import SYNTHETIC_NOTE, columns_note, method_notes

    lines = [("項目", "内容")]
    if synthetic:
        lines.append(SYNTHETIC_NOTE)
    lines += [
        ("地域", f"{name_ja}（{code}）"),
        ("調査年", str(year)),
        ("出典", "人々のつながりに関する基礎調査（内閣府）等。各行の note 列を参照。"),
        columns_note(),
        *method_notes(),  # denominators, intervals, tests, design effect, suppression, UK: one text
        ("作成日時", built_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    return lines


def write_pref_xlsx(
    df: pd.DataFrame,
    pref_code: int,
    name_ja: str,
    year: int,
    out_dir: Path,
    catalogue: dict[str, Indicator],
    synthetic: bool,
    national_rows: tuple[list[list[str]], list[list[Any]]] | None = None,
    *,
    area_rows: tuple[list[list[str]], list[list[Any]]] | None = None,
    national_sheet: tuple[bytes, str] | None = None,
    built_at: datetime | None = None,
) -> Path:
    """downloads/{slug}-{year}.xlsx: the area's rows, the national rows, a notes sheet (the
    synthetic-data statement first) and the data dictionary.

    ``area_rows`` / ``national_rows`` (``xlsx_rows`` of the area's / national rows) and
    ``national_sheet`` (the national sheet, the same in every workbook) may be passed in when the
    caller has them; ``built_at`` is the time on the notes sheet (default ``build_time()``)."""
    from pipelines.outputs.downloads import DICTIONARY_SHEET, dictionary_sheet

    pref_code, year = check_pref_code(pref_code, "pref_code"), check_year(year, "year")  # no path traversal
    code = area_code(pref_code)
    path = out_dir / "downloads" / f"{pref_slug(pref_code)}-{year}.xlsx"
    if area_rows is None:
        area_rows = xlsx_rows(df[df["area_code"] == code], catalogue, synthetic)
    if national_sheet is None:
        if national_rows is None:
            national_rows = xlsx_rows(df[df["area_code"] == "00"], catalogue, synthetic)
        national_sheet = _pref_sheet(*national_rows)
    lines = pref_notes(name_ja, code, year, synthetic, built_at or build_time())
    notes_xml = text_sheet(lines[0], lines[1:], [16, 100])
    return write_workbook(
        path,
        [
            (name_ja[:31], *_pref_sheet(*area_rows)),
            ("全国", *national_sheet),
            ("注記", notes_xml),
            (DICTIONARY_SHEET, *dictionary_sheet()),
        ],
        bold=True,
    )
