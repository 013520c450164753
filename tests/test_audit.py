"""The disclosure audit (issue #14): the published-cell model, the LP intervals, audit-driven
secondary suppression and the audit of published tables, attacked as an intruder would.

The Kyoto case of the issue: the national bands 50-59 + 60-69 + 70-79 + 80+ and the UK bands
50-64 + 65-74 + 75+ cover the same respondents, so with 80+ the only hidden cell the UK bands give
it back exactly -- although the national partition alone hides it together with the respondents
of unknown age (enough for the old "30 hidden respondents" group rule).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog
from test_indicators import create_tables, insert_rows

from pipelines.domain import audit, schema, stats
from pipelines.domain.audit import audit_published, intervals, protect, suppression_groups
from pipelines.indicators.stage import compute_indicators

NAT = [f"age={b}" for b in schema.AGE_BANDS]
UK = [f"uk_age={b}" for b in schema.UK_AGE_BANDS]


# --- A Kyoto-like area, built from single years of age ---------------------------------------------


def _ages() -> dict[int, tuple[int, int]]:
    """age -> (respondents, of whom lonely). 80+: 21 respondents, none lonely."""
    out = {}
    for a in range(16, 80):
        out[a] = (8 if a < 20 else 4, 1 if a % 3 == 0 else 0)
    for a in range(80, 87):
        out[a] = (3, 0)
    return out


def _lo_hi(band: str) -> tuple[int, int]:
    lo, hi = audit._band_range(band)
    return lo, min(hi, 121)


def _area(unknown_age=(40, 6), sex=((140, 12), (120, 10)), hh=((60, 9), (200, 12))) -> pd.DataFrame:
    """One block: total, sex, national and UK age bands, living alone; n and y true counts."""
    ages = _ages()
    n_tot = sum(v[0] for v in ages.values()) + unknown_age[0]
    y_tot = sum(v[1] for v in ages.values()) + unknown_age[1]
    rows = [("total", n_tot, y_tot)]
    rest = (n_tot - sex[0][0] - sex[1][0], y_tot - sex[0][1] - sex[1][1])
    assert rest[0] >= rest[1] >= 0
    rows += [("sex=1", *sex[0]), ("sex=2", *sex[1])]
    for bd in NAT + UK:
        lo, hi = _lo_hi(bd.partition("=")[2])
        rows.append((bd, sum(ages[a][0] for a in ages if lo <= a < hi), sum(ages[a][1] for a in ages if lo <= a < hi)))
    rows += [("household_single=1", *hh[0]), ("household_single=0", *hh[1])]
    return pd.DataFrame(rows, columns=["breakdown", "n", "y"]).assign(block="26|lonely_often_always")


def _kyoto(hidden=("age=80+",)) -> pd.DataFrame:
    d = _area()
    d["published"] = ~d["breakdown"].isin(hidden)
    return d


def _single_year_lp(cells: pd.DataFrame, target: str, quantity: int) -> tuple[float, float]:
    """An independent model: one n and one y variable per single year of age 16..120 and for
    unknown age; every published age cell is the sum of its years. Bounds of ``target``."""
    years = list(range(16, 121)) + ["na"]
    k = len(years)
    rows, rhs = [], []
    for _, c in cells.iterrows():
        if not c.published or not (c.breakdown == "total" or c.breakdown.startswith(("age=", "uk_age="))):
            continue
        mask = (
            np.ones(k)
            if c.breakdown == "total"
            else np.array(
                [
                    isinstance(a, int)
                    and _lo_hi(c.breakdown.partition("=")[2])[0] <= a < _lo_hi(c.breakdown.partition("=")[2])[1]
                    for a in years
                ],
                dtype=float,
            )
        )
        for q, v in ((0, c.n), (1, c.y)):
            r = np.zeros(2 * k)
            r[q * k : (q + 1) * k] = mask
            rows.append(r), rhs.append(v)
    lo, hi = _lo_hi(target.partition("=")[2])
    m = np.array([isinstance(a, int) and lo <= a < hi for a in years], dtype=float)
    obj = {0: np.r_[m, 0 * m], 1: np.r_[0 * m, m], 2: np.r_[m, -m]}[quantity]
    ub = np.hstack([-np.eye(k), np.eye(k)])
    out = []
    for sign in (1, -1):
        res = linprog(
            sign * obj,
            A_ub=ub,
            b_ub=np.zeros(k),
            A_eq=np.array(rows),
            b_eq=np.array(rhs),
            bounds=(0, None),
            method="highs",
        )
        assert res.status == 0
        out.append(sign * res.fun)
    return out[0], out[1]


class TestModel:
    def test_age_atoms_cut_at_every_boundary_of_both_band_sets(self):
        cuts = [lo for lo, _ in audit.age_atoms()]
        assert cuts == [16, 20, 25, 30, 35, 40, 50, 60, 65, 70, 75, 80]

    def test_bands_sharing_the_age_50_boundary_cover_the_same_atoms(self):
        nat = sorted(c for b in ("age=50-59", "age=60-69", "age=70-79", "age=80+") for c in audit.columns(b))
        uk = sorted(c for b in ("uk_age=50-64", "uk_age=65-74", "uk_age=75+") for c in audit.columns(b))
        assert nat == uk and len(nat) == 6
        assert audit.columns("age=80+") == (audit._AGE0 + 11,)

    def test_an_unknown_breakdown_is_not_modelled(self):
        assert audit.columns("age=na") == () and audit.columns("sex=9") == ()


class TestIntervals:
    def test_kyoto_80plus_is_recovered_exactly_through_the_uk_bands(self):
        cells = _kyoto()
        iv = intervals(cells)
        (r,) = [k for k, i in enumerate(iv.index) if cells.breakdown[i] == "age=80+"]
        assert (iv.lo[r].tolist(), iv.hi[r].tolist()) == ([21, 0, 21], [21, 0, 21])  # 0 of 21 lonely
        assert "uk_age=75+" in iv.derivation[r] and "age=70-79" in iv.derivation[r]

    def test_the_national_partition_alone_does_not_give_it(self):
        cells = _kyoto()
        cells = cells[~cells.breakdown.str.startswith("uk_age=")]
        iv = intervals(cells)
        # hidden with the 40 respondents of unknown age (6 of them lonely)
        assert iv.lo[0].tolist() == [0, 0, 0] and iv.hi[0].tolist() == [61, 6, 55]

    @pytest.mark.parametrize(
        "hidden",
        [
            ("age=80+",),
            ("age=80+", "age=70-79"),
            ("age=80+", "uk_age=75+"),
            ("age=16-19", "uk_age=35-49"),
            ("age=50-59", "age=20-29", "uk_age=65-74"),
        ],
    )
    def test_lp_bounds_equal_an_independent_single_year_model(self, hidden):
        cells = _kyoto(hidden)
        iv = intervals(cells)
        for r, i in enumerate(iv.index):
            for q in range(3):
                lo, hi = _single_year_lp(cells, cells.breakdown[i], q)
                assert (iv.lo[r, q], iv.hi[r, q]) == (np.ceil(lo - 1e-6), np.floor(hi + 1e-6)), (cells.breakdown[i], q)

    def test_random_blocks_solved_together_equal_the_single_year_model(self):
        """The y / (n - y) split of the age LP and the stacking of many blocks in one LP: every
        hidden age cell of 12 random blocks (random single-year counts, random hidden bands, one
        intervals() call) has the bounds of the joint single-year LP with y <= n per year."""
        rng = np.random.default_rng(14)
        frames = []
        for k in range(12):
            years = {a: int(rng.integers(0, 5)) for a in range(16, 100)}
            lonely = {a: int(rng.binomial(v, rng.uniform(0.05, 0.9))) for a, v in years.items()}
            na = (int(rng.integers(0, 8)),)
            na += (int(rng.integers(0, na[0] + 1)),)
            rows = [("total", sum(years.values()) + na[0], sum(lonely.values()) + na[1])]
            for bd in NAT + UK:
                lo, hi = _lo_hi(bd.partition("=")[2])
                rows.append(
                    (
                        bd,
                        sum(v for a, v in years.items() if lo <= a < hi),
                        sum(v for a, v in lonely.items() if lo <= a < hi),
                    )
                )
            d = pd.DataFrame(rows, columns=["breakdown", "n", "y"]).assign(block=f"b{k}")
            d["published"] = (d.breakdown == "total") | (rng.uniform(size=len(d)) > 0.4)
            frames.append(d)
        cells = pd.concat(frames, ignore_index=True)
        iv = intervals(cells)
        lp_cells = 0
        for r, i in enumerate(iv.index):
            block = cells[cells.block == cells.block[i]]
            lp_cells += iv.derivation[r].startswith("total and the published age cells")
            for q in range(3):
                lo, hi = _single_year_lp(block, cells.breakdown[i], q)
                assert (iv.lo[r, q], iv.hi[r, q]) == (np.ceil(lo - 1e-6), np.floor(hi + 1e-6)), (
                    cells.block[i],
                    cells.breakdown[i],
                    q,
                )
        assert len(iv.index) == (~cells.published).sum() and lp_cells >= 20

    def test_total_minus_the_rest_of_a_partition(self):
        cells = _kyoto(("sex=2",))
        iv = intervals(cells)
        n_rest = cells.n[0] - 260
        y_rest = cells.y[0] - 22
        assert iv.hi[0].tolist() == [120 + n_rest, 10 + y_rest, 110 + n_rest - y_rest]
        assert iv.lo[0].tolist() == [0, 0, 0]

    def test_a_hidden_total_gives_nothing(self):
        cells = _kyoto(("total", "age=80+"))
        iv = intervals(cells)
        assert (iv.hi[:, 0] >= audit.BIG - 1).all()


class TestRule:
    def test_protection_is_3_or_30_percent_of_the_base(self):
        assert audit.protection(np.array([0, 5, 10, 21, 100])).tolist() == [3, 3, 3, pytest.approx(6.3), 30]

    def test_kyoto_80plus_is_exposed_and_two_hidden_bands_are_enough(self):
        cells = _kyoto()
        iv = intervals(cells)
        assert audit.exposed_true(iv, cells.n.to_numpy(float), cells.y.to_numpy(float)).any()
        assert len(audit_published(_as_table(cells))) == 3  # base, count and complement


# --- Cross-partition recovery: caught by the audit, fixed by the audit's suppression --------------


def _frame(cells: pd.DataFrame, area="26") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "group": "TRUE",
            "measure": "lonely_often_always",
            "area_code": area,
            "breakdown": cells.breakdown,
            "n": cells.n,
            "y": cells.y,
            "primary": stats.base_status(cells.n.to_numpy()) == "suppressed",
        }
    )


def _as_table(cells: pd.DataFrame, area="26") -> pd.DataFrame:
    n = cells.n.astype(float).where(cells.published)
    return pd.DataFrame(
        {
            "area_code": area,
            "indicator_id": "lonely_often_always",
            "breakdown": cells.breakdown,
            "value": (cells.y / cells.n * 100).where(cells.published),
            "n_unweighted": n,
            "suppressed": ~cells.published,
        }
    )


class TestProtect:
    def test_recoverable_only_across_partitions(self):
        cells = _area()
        f = _frame(cells)
        # Only 80+ is under 30 ...
        assert f.loc[f.primary, "breakdown"].tolist() == ["age=80+"]
        # ... and the old group rule finds it safe: hidden with the 40 of unknown age.
        groups, rem = suppression_groups(f.assign(n=f.n), ["group"], set())
        assert not stats.secondary_suppression(f.n.to_numpy(), f.primary.to_numpy(), groups, rem).any()
        published = cells.assign(published=~f.primary)
        assert len(audit_published(_as_table(published))) == 3
        # The audit's suppression hides more, and then nothing can be narrowed.
        sec = protect(f, set())
        assert sec.any() and not (sec & f.primary).any()
        hidden = f.primary | sec
        after = cells.assign(published=~hidden)
        assert audit_published(_as_table(after)) == []
        iv = intervals(after)
        assert not audit.exposed_true(iv, cells.n.to_numpy(float), cells.y.to_numpy(float), f.primary.to_numpy()).any()
        # the primary cell keeps the full rule: ±max(3, 30% of 21) around 21 respondents / 0 lonely
        (r,) = [k for k, i in enumerate(iv.index) if cells.breakdown[i] == "age=80+"]
        assert iv.lo[r, 0] <= 21 - 6.3 and iv.hi[r, 0] >= 21 + 6.3 and iv.hi[r, 1] >= 6.3

    def test_cheapest_cell_first_and_deterministic(self):
        f = _frame(_area())
        first = protect(f, set())
        assert (protect(f.iloc[::-1], set())[::-1] == first).all()
        # the added cells are age cells (the partition of the exposed cell), smallest bases first
        added = f.loc[first, "breakdown"].tolist()
        assert all(b.startswith(("age=", "uk_age=")) for b in added)

    def test_memo_answers_the_same_frame_and_recomputes_a_changed_one(self):
        f = _frame(_area())
        first = protect(f, set())
        first[:] = True  # the caller's copy: the memo is not changed through it
        again = protect(f.copy(), set())
        assert (again == audit._protect(f, set())).all() and not again.all()
        changed = f.assign(primary=f.primary | (f.breakdown == "sex=1"))
        assert (protect(changed, set()) == audit._protect(changed, set())).all()
        assert not (protect(changed, set()) == again).all()

    def test_prefecture_within_national_is_not_recoverable(self):
        """Two prefectures from the national survey and the national figure: with one prefecture's
        sex=2 suppressed, national - the other prefecture would give it back."""
        rows = []
        for area, n_w in (("00", 30 + 400), ("01", 20), ("02", 400)):
            n_m = 300 if area != "00" else 600
            tot = n_w + n_m if area != "00" else 20 + 400 + 600
            rows += [("total", area, tot, tot // 5), ("sex=1", area, n_m, n_m // 5), ("sex=2", area, n_w, n_w // 5)]
        f = pd.DataFrame(rows, columns=["breakdown", "area_code", "n", "y"]).assign(group="TRUE", measure="m")
        f.loc[(f.area_code == "00") & (f.breakdown == "sex=2"), ["n", "y"]] = [420, 84]
        f["primary"] = f.n < 30
        sec = protect(f, {"01", "02"})
        hidden = f.primary | sec
        assert hidden[(f.area_code == "02") & (f.breakdown == "sex=2")].all()  # 420 - 400 = 20 no more


# --- On a real warehouse --------------------------------------------------------------------------


def _respondents() -> list[dict]:
    """Kyoto (26) from the ages above; every age also in Tokyo (13) x 10."""
    rows = []
    for pref, times in ((26, 1), (13, 10)):
        for a, (n, y) in _ages().items():
            for k in range(n * times):
                rows.append(
                    dict(
                        pref_code=pref,
                        age=a,
                        age_band=schema.age_band(a),
                        uk_age_band=schema.uk_age_band(a),
                        sex=1 + k % 2,
                        household_single=k % 2,
                        q_loneliness=5 if k < y * times else 1,
                    )
                )
        for k in range(40 * times):
            rows.append(
                dict(
                    pref_code=pref,
                    age=None,
                    age_band=None,
                    uk_age_band=None,
                    sex=1 + k % 2,
                    household_single=0,
                    q_loneliness=5 if k < 6 * times else 1,
                )
            )
    for i, r in enumerate(rows):
        r.update(survey_id="national-2024", survey_year=2024, respondent_id=f"N2024-{i + 1:06d}")
    return rows


@pytest.fixture(scope="module")
def kyoto_tables(tmp_path_factory):
    path = tmp_path_factory.mktemp("audit") / "wh.duckdb"
    con = duckdb.connect(str(path))
    create_tables(con)
    insert_rows(con, _respondents())
    ind, dist = compute_indicators(con, 2024)
    con.close()
    return ind, dist


class TestComputedTables:
    def test_kyoto_80plus_and_its_uk_band_neighbours_are_hidden(self, kyoto_tables):
        ind, _ = kyoto_tables
        k = ind[(ind.area_code == "26") & (ind.indicator_id == "lonely_often_always")].set_index("breakdown")
        assert k.loc["age=80+", "suppressed"]
        assert k.loc[[b for b in NAT + UK if b != "age=80+"], "suppressed"].any()
        assert audit_published(ind) == []

    def test_no_base_is_published_for_a_suppressed_row(self, kyoto_tables):
        ind, dist = kyoto_tables
        s = ind[ind.suppressed]
        assert len(s) and s.n_unweighted.isna().all() and s.n_effective.isna().all()
        assert not s.note.str.contains(r"\(n=\d", regex=True).any()
        assert s.note.str.contains("30人未満|回答者数は非公表", regex=True).all()
        assert dist.loc[dist.suppressed, "n_unweighted"].isna().all()
        assert ind.loc[~ind.suppressed & ind.note.str.startswith("出典: 全国"), "n_unweighted"].notna().all()

    def test_distributions_hide_the_same_cells_as_the_indicators_on_all_respondents(self, kyoto_tables):
        ind, dist = kyoto_tables
        i = ind[ind.indicator_id == "lonely_often_always"].set_index(["area_code", "breakdown"]).suppressed
        d = dist[dist.question == "q_loneliness"].groupby(["area_code", "breakdown"]).suppressed.all()
        assert (d.reindex(i.index) == i).all()


class TestNationalRelation:
    """Prefectures estimated from the national survey add up to the national cell."""

    @staticmethod
    def _table(hidden: set[str], own: bool = False) -> pd.DataFrame:
        rows = [
            ("00", 1000, 100, "出典: 全国調査 national-2024 (n=1,000)"),
            ("01", 25, 10, "出典: 全国調査の当該県回答者 (30人未満)"),
            ("02", 500, 40, "出典: 全国調査の当該県回答者 (n=500)"),
            ("03", 475, 50, "出典: 全国調査の当該県回答者 (n=475)"),
        ]
        if own:
            rows.append(("04", 300, 30, "出典: 青森県独自調査 pref04-2024 (n=300)"))
        t = pd.DataFrame(rows, columns=["area_code", "n", "y", "note"]).assign(
            indicator_id="lonely_often_always", breakdown="total"
        )
        t["suppressed"] = t.area_code.isin(hidden)
        t["n_unweighted"] = t.n.where(~t.suppressed)
        t["value"] = (t.y / t.n * 100).where(~t.suppressed)
        return t

    def test_national_minus_the_other_prefectures_is_caught(self):
        ex = audit_published(self._table({"01"}))
        assert {(e.area_code, e.quantity, e.lo, e.hi) for e in ex} == {("01", "base", 25, 25)}
        assert "the national cell - the published prefectures" in ex[0].derivation

    def test_two_hidden_prefectures_are_not_exposed(self):
        assert audit_published(self._table({"01", "03"})) == []

    def test_a_prefecture_with_its_own_survey_leaves_only_an_upper_bound(self):
        # 00 - 02 - 03 = 25 + 0 (04's national respondents are not all of 04): [0, 25] is wide
        t = self._table({"01"}, own=True)
        t.loc[t.area_code == "00", ["n", "y"]] = [1060, 110]
        t["n_unweighted"] = t.n.where(~t.suppressed)
        t["value"] = (t.y / t.n * 100).where(~t.suppressed)
        assert audit_published(t) == []

    def test_protect_hides_a_second_prefecture_for_the_base(self):
        """01 (20) and 02 (40) hidden: 02 is 'national - published - 20' to within 20 < 30 others."""
        rows = [("00", 1000, 100), ("01", 20, 1), ("02", 40, 1), ("03", 500, 50), ("04", 440, 48)]
        f = pd.DataFrame(rows, columns=["area_code", "n", "y"]).assign(group="TRUE", measure="m", breakdown="total")
        f["primary"] = f.n < 30
        f.loc[f.area_code == "02", "primary"] = True
        sec = protect(f, {"01", "02", "03", "04"})
        assert sec.tolist() == [False, False, False, False, True]  # 04: the smallest published base
