"""pipelines/domain/formatting.py: the report's and the site's texts of a value, and that the stages take
them from there (the disclosure check compares pages with the texts the reports would show)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from pipelines.domain import formatting as fm

PKG = Path(__file__).resolve().parents[1] / "pipelines"


def _row(**kw):
    row = {"value": 12.345, "lower_ci95": 10.04, "upper_ci95": 14.96, "n_unweighted": 400, "suppressed": False}
    row.update(kw)
    return row


def test_report_cells():
    assert fm.fmt_value(_row()) == "12.3"
    assert fm.fmt_value(_row(n_unweighted=40)) == "12.3" + fm.REFERENCE_MARK  # 参考値: a base under 100
    assert fm.fmt_value(_row(suppressed=True)) == fm.SUPPRESSED
    assert fm.fmt_value(None) == fm.MISSING
    assert fm.fmt_ci(_row()) == "10.0～15.0"
    assert fm.fmt_ci(_row(lower_ci95=math.nan)) == fm.MISSING
    assert fm.fmt_ci(_row(suppressed=True)) == fm.SUPPRESSED
    assert fm.fmt_num(1234.56, "count") == "1,234.6"


def test_site_cells_carry_their_unit():
    assert fm.fmt_site_value(12.345) == "12.3%"
    assert fm.fmt_site_value(1234.4, "count") == "1,234件"
    assert fm.fmt_site_value(5.0, "yen") == "5円"
    assert fm.fmt_site_value(0.7, "flag") == "あり"
    assert fm.fmt_site_value(12.345, "per_10k") == "12.3"
    assert fm.fmt_site_value(None) == fm.fmt_site_value(math.nan) == fm.fmt_site_value("n/a") == fm.MISSING


@pytest.mark.parametrize("lo, hi", [(10.04, 14.96), (0.05, 0.15), (-0.25, 99.95), (1, 2)])
def test_one_interval_text(lo, hi):
    """The report's interval, the leading estimate's and the site's are one text."""
    assert fm.fmt_interval(lo, hi) == f"{float(lo):.1f}～{float(hi):.1f}"
    assert fm.fmt_ci(_row(lower_ci95=lo, upper_ci95=hi)) == fm.fmt_interval(lo, hi)
    lead = _row(estimate_method="model", lead_value=5.0, lead_lower_ci95=lo, lead_upper_ci95=hi)
    assert fm.fmt_lead_ci(lead) == fm.fmt_interval(lo, hi)
    assert fm.fmt_interval(lo, None) == ""


def test_stages_take_value_formatters_from_formatting():
    """No stage imports a formatter from another stage (disclosure took fmt_value from the reports)."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name in ("formatting.py", "report_data.py", "reports.py"):  # report_data, reports re-export
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").lstrip(".") not in (
                "formatting",
                "pipelines.domain.formatting",
            ):
                bad += [
                    f"{path.name}: {a.name} from {node.module}"
                    for a in node.names
                    if a.name.startswith("fmt_") or a.name in ("md_escape", "MdText")
                ]
    assert bad == []
