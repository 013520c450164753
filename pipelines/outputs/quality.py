"""The data-quality page (quality/index.html): the validation results of every committed file
(pipelines/validate/stage.py: its suites and the page's HTML), then the sections computed from the
indicators: the design effect each survey gets with the sensitivity line (``design_report``) and the
published national series beside the computed one (``add_to_quality_page``, pipelines/indicators/published_check.py).
The build's quality stage and ``tsunagari validate --out`` write it with ``write_quality_page``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from pipelines.domain import config
from pipelines.indicators import published_check as published
from pipelines.io import warehouse as warehouse_db
from pipelines.outputs.downloads import write_csv
from pipelines.validate.stage import ValidationReport, validate_warehouse

log = logging.getLogger("tsunagari.validate")


def write_quality_page(
    warehouse: Path, quality_dir: Path, reuse: bool = False, design: dict[str, Any] | None = None
) -> ValidationReport:
    """Validate what is committed (``validate_warehouse``), add the design-effect section (`design`:
    ``indicators.design_report``), write ``quality_dir`` (results.json, index.html) and add the
    published-series section. Returns the validation report."""
    report = validate_warehouse(warehouse, reuse=reuse)
    con = warehouse_db.connect(warehouse)
    try:
        report.design = design
        report.write(quality_dir)
        synthetic = warehouse_db.has_table(con, "files") and bool(
            con.execute("SELECT coalesce(bool_or(synthetic), false) FROM files").fetchone()[0]
        )
        add_to_quality_page(con, quality_dir, synthetic)
    finally:
        con.close()
    return report


def quality_section(con: duckdb.DuckDBPyConnection, synthetic: bool) -> tuple[str, pd.DataFrame]:
    """(HTML section for the quality page, the comparison table). The section lists every
    difference above published.TOLERANCE and says how many figures were compared."""
    import jinja2

    table = published.compare_national(con)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(config.TEMPLATES_DIR)), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    rows = table[table["above_tolerance"]].to_dict("records")
    html = env.get_template("quality-published.html.j2").render(
        rows=rows,
        n_compared=len(table),
        n_above=len(rows),
        tolerance=published.TOLERANCE,
        synthetic=synthetic,
        rounds=sorted(int(y) for y in table["year"].unique()) if len(table) else [],
        file=f"data/reference/{published.PUBLISHED_FILE.name}",
    )
    return html, table


def add_to_quality_page(con: duckdb.DuckDBPyConnection, quality_dir, synthetic: bool) -> pd.DataFrame:
    """Insert the published-series section into ``quality_dir/index.html`` (at the end of its main
    content, else before its footer, else at the end of the body) and write the full comparison to
    ``quality_dir/published-national.csv``. Returns the comparison table."""
    quality_dir = Path(quality_dir)
    section, table = quality_section(con, synthetic)
    page = quality_dir / "index.html"
    html = page.read_text(encoding="utf-8")
    marker = next((m for m in ("</main>", "<footer>") if m in html), "</body>")
    html = html.replace(marker, section + "\n" + marker, 1)
    page.write_text(html, encoding="utf-8")
    write_csv(table, quality_dir / "published-national.csv")
    return table
