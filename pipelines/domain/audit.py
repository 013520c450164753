"""Disclosure audit of the published cells (秘匿の監査): what an intruder can derive by linear
relations from everything published, and the secondary suppression that audit drives.

The published-cell model
------------------------
A *block* is one round x area x measure (a survey indicator, or one category of an answer
distribution). Its cells are the breakdowns ``total``, ``sex=1/2``, ``age=<national band>``,
``uk_age=<UK band>``, ``household_single=1/0``. Each cell has a base ``n`` (respondents in the
denominator) and a count ``y`` (respondents in the numerator); for a published cell both are known
to an intruder (``n_unweighted``, and value x base / 100 -- exact for an unweighted survey, and we
assume it is exact for every survey: the audit never relies on weights to protect a cell).

The unknowns are the counts of the *atoms* every published cell is a sum of, for ``n`` and ``y``:
sex 1, 2 and the unpublished rest (3 その他・回答しない, 9 無回答); living alone 1, 0 and the rest
(9); and the age atoms cut at every boundary of either band set (16, 20, 25, 30, 35, 40, 50, 60,
65, 70, 75, 80) plus age unknown. Relations: every partition adds up to the total; a national band
and a UK band are sums of the same atoms, so bands that share a boundary (16, 50, the end) relate
across the two partitions (50-59 + 60-69 + 70-79 + 80+ = 50-64 + 65-74 + 75+); 0 <= y <= n for
every atom. Counts are integers (bounds are rounded inwards).

Prefectures within the national figure (the prefectures estimated from the national survey's
respondents add up to the national cell, plus the unpublished national respondents of prefectures
with their own survey) protect the *bases*: the group rule of ``stats.secondary_suppression`` (at
least 30 hidden respondents besides any suppressed cell) and 'national - published prefectures'
checked per measure and breakdown (``_national_fixes``, ``_national_exposures``). Counts are audited
within areas only: the LP audit covers the relations within an area (all partitions and their cross
relations); the relation across areas is not solved jointly with them (a limitation: the
propagation of within-area bounds through the national cell is not modelled).

The audit
---------
For every suppressed cell the tightest interval an intruder can derive for its base ``n``, its
count ``y`` and its complement ``n - y``: the bounds of a linear programme over the atoms, solved
exactly and in closed form. When the area total is published the partitions separate: the sex and
living-alone partitions have closed-form bounds ([0, hidden mass]); the two age partitions share
atoms. With z = n - y per atom the constraints 0 <= y <= n become y >= 0, z >= 0 and the y and z
systems separate: a bound of y (of n - y) is a bound within the y (z) system, a bound of n the sum
of the two systems' bounds. Within one system every age constraint bounds a difference of two
prefix sums over the atoms (a band is S_hi - S_lo, an atom S_k+1 - S_k >= 0, age unknown
total - S_end >= 0), so the LP's optimum is a shortest path (Floyd-Warshall on 13 nodes,
``age_bounds``), computed for all blocks at once with numpy. Tests compare every bound with an
independent single-year-of-age LP solved by ``scipy.optimize.linprog`` (HiGHS), on the Kyoto case
and on random blocks.

The rule (``PROTECTION_ABS``, ``PROTECTION_REL``): for each of n, y and n - y of a suppressed cell
with true value v and base n_c, the intruder's interval [lo, hi] must reach v - P below and v + P
above -- unless the a-priori range (0 and, when the area total is published, that total's n, y or
n - y) stops it first. P = max(3, 30% x n_c), for a primary cell (n_c < 30: the cells the
suppression is for). A cell hidden only to protect others must not be recovered exactly or nearly:
its interval at least min(3, a-priori width) wide (it is not itself sensitive -- the convention of
interval protection, where protection levels belong to the primary cells). Why: ±3 respondents keeps any exact or near-exact
count (including "0 of 21" and "21 of 21") out of reach, and 30% of the base keeps the share of a
suppressed cell uncertain by about ±30 percentage points. The published-output check
(``audit_published``) knows no true values and uses the truth-free consequence: every interval at least
min(PROTECTION_ABS, a-priori width) wide.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.domain import schema, stats
from pipelines.domain.config import PROTECTION_ABS, PROTECTION_REL
from pipelines.domain.conventions import DEFF_DECIMALS, OWN_SURVEY_MARK

# The rule in words is the method statement's (method_statement.RULE_JA / RULE_EN).

NV = 20  # variables per quantity (n or y) of a block: total, 3 sex, 13 age atoms, 3 household
BIG = 1e7  # a finite upper bound for every variable (a hidden total has no other)
_TOL = 1e-6

# Age atoms: cut at every boundary of either band set.
_NAT = schema.AGE_BANDS
_UK = schema.UK_AGE_BANDS


def _band_range(band: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)(?:-(\d+)|\+)", band)
    if m is None:
        raise ValueError(f"age band {band!r} is not 'lo-hi' or 'lo+'")
    lo = int(m.group(1))
    return lo, (int(m.group(2)) + 1 if m.group(2) else 999)


@functools.lru_cache(maxsize=1)
def age_atoms() -> tuple[tuple[int, int], ...]:
    """The age atoms [lo, hi) cut at every boundary of the national and the UK bands."""
    cuts = sorted({b for band in _NAT + _UK for b in _band_range(band)})
    return tuple(zip(cuts[:-1], cuts[1:]))


# Positions of one quantity's variables.
_TOTAL, _SEX = 0, (1, 2, 3)
_AGE0 = 4
_N_ATOMS = 12
_AGE_NA = _AGE0 + _N_ATOMS  # 16
_HH = (17, 18, 19)
PARTITIONS = {"sex": list(_SEX), "age": list(range(_AGE0, _AGE_NA + 1)), "hh": list(_HH)}


@functools.lru_cache(maxsize=None)
def columns(breakdown: str) -> tuple[int, ...]:
    """The variables (of one quantity) whose sum is the cell ``breakdown``; () for a breakdown the
    model does not know (such a cell is not audited)."""
    atoms = age_atoms()
    if len(atoms) != _N_ATOMS:
        raise ValueError(f"{len(atoms)} age atoms; the model has {_N_ATOMS}")
    if breakdown == "total":
        return (_TOTAL,)
    kind, _, code = breakdown.partition("=")
    if kind == "sex":
        return {"1": (1,), "2": (2,)}.get(code, ())
    if kind == "household_single":
        return {"1": (17,), "0": (18,)}.get(code, ())
    if kind in ("age", "uk_age") and code in (_NAT if kind == "age" else _UK):
        lo, hi = _band_range(code)
        return tuple(_AGE0 + k for k, (a, b) in enumerate(atoms) if a >= lo and b <= hi)
    return ()


def partition_of(breakdown: str) -> str:
    kind = breakdown.partition("=")[0]
    return {"sex": "sex", "household_single": "hh", "age": "age", "uk_age": "age"}.get(kind, "total")


# --- Intervals ---------------------------------------------------------------------------------

QUANTITIES = ("n", "y", "z")  # base, count, complement (n - y)

# The age system as difference constraints. Node k is the prefix sum S_k of one quantity over the
# age atoms below the k-th cut (S_0 = 0, S_12 = everyone of known age): an atom k is S_{k+1} - S_k
# >= 0, a band [lo, hi) is S_hi - S_lo, and age unknown is total - S_12 >= 0. Every constraint is a
# bound on a difference of two nodes, so the tightest bounds of a band are shortest paths
# (Floyd-Warshall over 13 nodes): max(S_b - S_a) = d(a, b), min(S_b - S_a) = -d(b, a). This is the
# linear programme over the 13 age variables solved exactly (its optimum is integral for integer
# data), in closed form and for every block at once; tests/test_audit.py checks it against an
# independent single-year-of-age LP (scipy.optimize.linprog, HiGHS).
_NODES = _N_ATOMS + 1


@functools.lru_cache(maxsize=None)
def band_nodes(breakdown: str) -> tuple[int, int]:
    """(a, b): the prefix-sum nodes of an age or UK age band (the band is S_b - S_a); (-1, -1) for
    any other breakdown."""
    cols = columns(breakdown)
    if partition_of(breakdown) != "age" or not cols:
        return (-1, -1)
    return (min(cols) - _AGE0, max(cols) - _AGE0 + 1)


def age_bounds(
    block: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    value: np.ndarray,
    total: np.ndarray,
    q_block: np.ndarray,
    q_a: np.ndarray,
    q_b: np.ndarray,
    value_lo: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tightest [lo, hi] of the age bands (q_block, q_a, q_b) given, per block 0..B-1, its
    published total ``total[block]`` (its largest possible value) and its published age and UK age
    bands (block, a, b, value; with ``value_lo`` a band is known only to lie in [value_lo, value],
    e.g. a count read from a rounded share). Raises ValueError naming the first block whose
    published cells contradict each other."""
    nb = len(total)
    d = np.full((nb, _NODES, _NODES), np.inf)
    d[:, np.arange(_NODES), np.arange(_NODES)] = 0.0
    d[:, np.arange(1, _NODES), np.arange(_NODES - 1)] = 0.0  # atoms >= 0: S_k <= S_{k+1}
    d[:, 0, _NODES - 1] = np.asarray(total, dtype=float)  # age unknown >= 0: S_12 <= total
    np.minimum.at(d, (block, a, b), value)  # S_b - S_a <= v
    np.minimum.at(
        d, (block, b, a), -np.asarray(value if value_lo is None else value_lo, dtype=float)
    )  # S_a - S_b <= -v
    for k in range(_NODES):
        np.minimum(d, d[:, :, k, None] + d[:, None, k, :], out=d)
    bad = np.flatnonzero((d[:, np.arange(_NODES), np.arange(_NODES)] < -_TOL).any(axis=1))
    if len(bad):
        raise ValueError(f"audit: the published age cells of block #{int(bad[0])} contradict each other")
    return -d[q_block, q_b, q_a], d[q_block, q_a, q_b]


class _Derivations:
    """How each audited cell's interval follows from the published cells (text, made on access:
    derivations are rarely read, so the rows of each block are grouped on first use)."""

    def __init__(
        self, bds: np.ndarray, pub: np.ndarray, part: np.ndarray, blk: np.ndarray, index: np.ndarray, how: np.ndarray
    ) -> None:
        self._bds, self._pub, self._part, self._blk = bds, pub, part, blk
        self._index, self._how = index, how
        self._groups: dict | None = None

    def _rows(self, b: int) -> np.ndarray:
        if self._groups is None:
            self._groups = pd.Series(np.arange(len(self._blk))).groupby(self._blk).indices
        return self._groups[b]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, r: int) -> str:
        i, how = self._index[r], self._how[r]
        if how == 0:
            return ""
        pos = self._rows(self._blk[i])
        if how == 1:
            members = [self._bds[j] for j in pos if self._pub[j] and self._part[j] == self._part[i]]
            return "total - " + " - ".join(members) + " (the unpublished rest of the partition >= 0)"
        labels = [self._bds[j] for j in pos if self._pub[j] and band_nodes(self._bds[j])[0] >= 0]
        return (
            "total and the published age cells: "
            + ", ".join(dict.fromkeys(labels))
            + " (national and UK age bands are sums of the same age atoms)"
        )


@dataclass
class Intervals:
    """Per audited hidden cell (the rows of ``cells``): [lo, hi] of n, y and n - y."""

    index: np.ndarray  # row positions in the cells frame
    lo: np.ndarray  # shape (k, 3)
    hi: np.ndarray
    a_lo: np.ndarray  # a-priori range (what the published total alone allows)
    a_hi: np.ndarray
    derivation: Sequence[str]


_PARTS = ("total", "sex", "age", "hh")


def intervals(cells: pd.DataFrame, quantities: tuple[int, ...] = (0, 1, 2)) -> Intervals:
    """The intruder's intervals for every hidden cell with a base that may be > 0.

    ``cells``: columns ``block`` (any label: one round x area x measure), ``breakdown``, ``n``,
    ``y`` (the values an intruder reads for published cells; NaN allowed for hidden ones),
    ``published`` (bool), and optionally ``y_lo`` / ``y_hi``: a published count known only to lie
    in [y_lo, y_hi] (read from a rounded share; default: exactly ``y``). Rows of a block with no
    ``total`` row are not audited. ``quantities``:
    which of n (0), y (1), n - y (2) are needed for the age cells that both age partitions relate
    (the others are left at the a-priori range). The bounds are always the tightest: none depends
    on the true values of the hidden cells.

    With the total published, a cell of a partition whose cells relate to no other partition (sex,
    living alone, and the age bands when only one of the two age partitions publishes a cell) is
    bounded by [0, the unpublished rest of its partition]; the age bands of an area publishing
    both age partitions by the shortest paths of ``age_bounds``. All vectorised over the blocks."""
    c = cells.reset_index(drop=True)
    pub = c["published"].to_numpy(dtype=bool)
    n = c["n"].to_numpy(dtype=float)
    y = c["y"].to_numpy(dtype=float)
    ranged = "y_lo" in c.columns and "y_hi" in c.columns
    ylo = c["y_lo"].to_numpy(dtype=float) if ranged else y
    yhi = c["y_hi"].to_numpy(dtype=float) if ranged else y
    bcodes, uniq = pd.factorize(c["breakdown"].astype(str), sort=False)
    uniq = [str(u) for u in uniq]
    bds = np.asarray(uniq, dtype=object)[bcodes] if len(uniq) else np.zeros(0, dtype=object)
    u_part = np.array(
        [_PARTS.index(partition_of(b)) if b == "total" or partition_of(b) != "total" else -1 for b in uniq],
        dtype=np.int64,
    )
    u_mod = np.array([bool(columns(b)) for b in uniq], dtype=bool)
    u_kind = np.array([{"age": 1, "uk_age": 2}.get(b.partition("=")[0], 0) for b in uniq], dtype=np.int64)
    u_nodes = np.array([band_nodes(b) for b in uniq], dtype=np.int64).reshape(-1, 2)
    part, modelled, kind = u_part[bcodes], u_mod[bcodes], u_kind[bcodes]
    a_node, b_node = u_nodes[bcodes, 0], u_nodes[bcodes, 1]
    blk, blocks = pd.factorize(c["block"], sort=False)
    nb = len(blocks)
    is_total = bds == "total"
    tot_row = np.full(nb, -1, dtype=np.int64)
    tr = np.flatnonzero(is_total)[::-1]
    tot_row[blk[tr]] = tr  # the first total row of each block
    has_tot = tot_row >= 0
    tot_pub = np.zeros(nb, dtype=bool)
    tot_pub[has_tot] = pub[tot_row[has_tot]]
    N = np.where(has_tot, n[np.maximum(tot_row, 0)], np.nan)
    Y_lo = np.where(has_tot, ylo[np.maximum(tot_row, 0)], np.nan)  # the total's count: [Y_lo, Y_hi]
    Y_hi = np.where(has_tot, yhi[np.maximum(tot_row, 0)], np.nan)
    hid = ~pub & modelled & ~is_total
    # a hidden total: nothing of the block is published (every cell is <= the total), no bound
    out_hidden_total = np.flatnonzero(~pub & modelled & has_tot[blk] & ~tot_pub[blk])
    out_open = np.flatnonzero(hid & tot_pub[blk])
    # published n and y per block x partition (the unpublished rest = total - published members)
    key = blk * len(_PARTS) + np.maximum(part, 0)
    counted = pub & (part > 0)
    size = nb * len(_PARTS)
    pn = np.bincount(key[counted], weights=n[counted], minlength=size).reshape(nb, len(_PARTS))
    py_lo = np.bincount(key[counted], weights=ylo[counted], minlength=size).reshape(nb, len(_PARTS))
    py_hi = np.bincount(key[counted], weights=yhi[counted], minlength=size).reshape(nb, len(_PARTS))
    # which age partitions publish a cell, per block
    kinds_pub = np.zeros((nb, 3), dtype=bool)
    kinds_pub[blk[pub], kind[pub]] = True
    i = out_open
    bi = blk[i]
    mn = N[bi] - pn[bi, part[i]]
    my = Y_hi[bi] - py_lo[bi, part[i]]  # the rest's count at most
    mz = (N[bi] - Y_lo[bi]) - (pn[bi, part[i]] - py_hi[bi, part[i]])  # the rest's complement at most
    lo = np.zeros((len(i), 3))
    hi = np.stack([mn, my, mz], axis=1)
    a_hi = np.stack([N[bi], Y_hi[bi], N[bi] - Y_lo[bi]], axis=1)
    other = np.where(kind[i] == 1, 2, 1)
    both = (part[i] == _PARTS.index("age")) & kinds_pub[bi, other]
    how = np.where(both, 2, 1)
    if both.any():
        q = np.flatnonzero(both)
        # blocks with such cells, renumbered 0..B-1; their published age bands
        qb, qcode = np.unique(bi[q], return_inverse=True)
        sel = np.flatnonzero(pub & (a_node >= 0) & np.isin(blk, qb))
        sb = np.searchsorted(qb, blk[sel])
        qa, qz = a_node[i[q]], b_node[i[q]]
        b_ylo, b_yhi = age_bounds(sb, a_node[sel], b_node[sel], yhi[sel], Y_hi[qb], qcode, qa, qz, value_lo=ylo[sel])
        b_zlo, b_zhi = age_bounds(
            sb, a_node[sel], b_node[sel], n[sel] - ylo[sel], N[qb] - Y_lo[qb], qcode, qa, qz, value_lo=n[sel] - yhi[sel]
        )
        n_lo, n_hi = b_ylo + b_zlo, b_yhi + b_zhi
        if ranged:  # the counts are ranges, the bases exact: the base system bounds n too
            m_lo, m_hi = age_bounds(sb, a_node[sel], b_node[sel], n[sel], N[qb], qcode, qa, qz)
            n_lo, n_hi = np.maximum(n_lo, m_lo), np.minimum(n_hi, m_hi)
        v_lo = np.stack([n_lo, b_ylo, b_zlo], axis=1)
        v_hi = np.stack([n_hi, b_yhi, b_zhi], axis=1)
        keep = np.zeros(3, dtype=bool)
        keep[list(quantities)] = True
        lo[q] = np.where(keep, v_lo, 0.0)
        hi[q] = np.where(keep, v_hi, a_hi[q])
    index = np.concatenate([out_hidden_total, i])
    k0 = len(out_hidden_total)
    big = np.full((k0, 3), BIG)
    lo = np.vstack([np.zeros((k0, 3)), lo])
    hi = np.vstack([big, hi])
    a_hi = np.vstack([big, a_hi])
    how = np.concatenate([np.zeros(k0, dtype=np.int64), how])
    order = np.argsort(index, kind="stable")
    index, lo, hi, a_hi, how = index[order], lo[order], hi[order], a_hi[order], how[order]
    lo = np.maximum(np.ceil(lo - _TOL), 0)
    hi = np.floor(hi + _TOL)
    return Intervals(
        index.astype(np.int64), lo, hi, np.zeros_like(a_hi), a_hi, _Derivations(bds, pub, part, blk, index, how)
    )


def protection(n_cell: np.ndarray) -> np.ndarray:
    """P = max(PROTECTION_ABS, PROTECTION_REL x base) per (primary) cell."""
    return np.maximum(PROTECTION_ABS, PROTECTION_REL * np.asarray(n_cell, dtype=float))


def exposed_true(iv: Intervals, n: np.ndarray, y: np.ndarray, primary: np.ndarray | None = None) -> np.ndarray:
    """(k, 3) bool: which of n, y, n - y of each audited cell an intruder narrows below the rule,
    given the cells' true n and y and primary flags (arrays over the cells frame; primary None:
    every cell primary). Empty cells (n = 0) need nothing."""
    nc, yc = n[iv.index], y[iv.index]
    v = np.stack([nc, yc, nc - yc], axis=1)
    prim = np.ones(len(nc), dtype=bool) if primary is None else np.asarray(primary, dtype=bool)[iv.index]
    p = protection(nc)[:, None]
    need_lo = np.maximum(v - p, iv.a_lo)
    need_hi = np.minimum(v + p, iv.a_hi)
    bad = (iv.lo > need_lo + _TOL) | (iv.hi < need_hi - _TOL)
    # a cell hidden only to protect others: not recovered exactly or nearly
    narrow = (iv.hi - iv.lo) < np.minimum(PROTECTION_ABS, iv.a_hi - iv.a_lo) - _TOL
    bad = np.where(prim[:, None], bad, narrow)
    bad[nc <= 0] = False
    return bad


def exposed_published(iv: Intervals) -> np.ndarray:
    """(k, 3) bool, truth-free: an interval narrower than min(PROTECTION_ABS, a-priori width)."""
    bad = (iv.hi - iv.lo) < np.minimum(PROTECTION_ABS, iv.a_hi - iv.a_lo) - _TOL
    bad[iv.hi[:, 0] <= 0] = False  # a cell proven empty discloses no respondent
    return bad


# --- Audit-driven secondary suppression ----------------------------------------------------------


def _exposed_cells(base, brows, bn, hidden, f, rows, base_of, block, f_n, f_y, bprim) -> dict[int, set[int]]:
    """{base cell (position in ``base``): the quantities (0 n, 1 y, 2 n - y) exposed in it}."""
    bcells = pd.DataFrame(
        {
            "block": (base["group"].astype(str) + "|" + base["area_code"].astype(str)).to_numpy()[brows],
            "breakdown": base["breakdown"].to_numpy()[brows],
            "n": bn[brows],
            "y": 0.0,
            "published": ~hidden[brows],
            "primary": bprim[brows],
        }
    )
    ivn = intervals(bcells, quantities=(0,))
    bad: dict[int, set[int]] = {}
    for b in brows[ivn.index[exposed_true(ivn, bn[brows], np.zeros(len(brows)), bprim[brows])[:, 0]]]:
        bad.setdefault(int(b), set()).add(0)
    n_hi = np.full(len(bn), np.inf)
    n_hi[brows[ivn.index]] = ivn.hi[:, 0]
    cells = pd.DataFrame(
        {
            "block": block[rows],
            "breakdown": f["breakdown"].to_numpy()[rows],
            "n": f_n[rows],
            "y": f_y[rows],
            "published": ~hidden[base_of[rows]],
            "primary": bprim[base_of[rows]],
        }
    )
    iv = intervals(cells, quantities=(1, 2))
    # y <= n: the count and the complement are no larger than the base's upper bound
    cap = n_hi[base_of[rows[iv.index]]]
    iv.hi[:, 1] = np.minimum(iv.hi[:, 1], cap)
    iv.hi[:, 2] = np.minimum(iv.hi[:, 2], cap)
    ex = exposed_true(iv, f_n[rows], f_y[rows], bprim[base_of[rows]])
    for r, q in zip(*np.nonzero(ex)):
        bad.setdefault(int(base_of[rows[iv.index[r]]]), set()).add(int(q))
    return bad


def _national_context(f: pd.DataFrame, subsample_areas: set[str], order: dict[str, int]) -> dict:
    """What ``_national_fixes`` reads of ``f`` (the same in every pass of ``protect``): per row, its
    measure x breakdown group when the group has a national cell and a subsample prefecture cell
    with respondents (-1 otherwise), and the tie-break ranks of the fix (area, breakdown order)."""
    area = f["area_code"].astype(str).to_numpy()
    sub = np.isin(area, list(subsample_areas))
    nat = area == NATIONAL
    n, y = f["n"].to_numpy(dtype=float), f["y"].to_numpy(dtype=float)
    gcode, groups = pd.factorize(f["measure"].astype(str) + "|" + f["breakdown"].astype(str), sort=False)
    has_nat = np.zeros(len(groups), dtype=bool)
    has_nat[gcode[nat]] = True
    has_sub = np.zeros(len(groups), dtype=bool)
    has_sub[gcode[sub & (n > 0)]] = True
    bds = f["breakdown"].astype(str)
    return {
        "sub": sub,
        "nat": nat,
        "n": n,
        "y": y,
        "groups": len(groups),
        "gid": np.where((has_nat & has_sub)[gcode], gcode, -1),
        "area_rank": np.unique(area, return_inverse=True)[1],
        "bd_rank": bds.map(lambda b: order.get(b, 0)).to_numpy(dtype=np.int64),
        "own": bool((~sub & ~nat & (n > 0)).any()),
    }


def _national_fixes(f, base_of, hidden, bprim, subsample_areas, order, ctx=None) -> set[int]:
    """Base cells to hide so that no hidden prefecture cell (of the prefectures estimated from the
    national survey) is narrowed below the rule by 'national - published prefectures': per measure
    and breakdown, [0, M] (M: the hidden prefectures' n plus the national respondents of
    prefectures with their own survey), or exactly M when it is the only one and there is no such
    prefecture. Across areas the bases are protected (counts: within areas only). The fix: the
    published prefecture cell with the smallest base (ties: area code, breakdown order).
    Vectorised over the groups."""
    if not subsample_areas:
        return set()
    ctx = _national_context(f, subsample_areas, order) if ctx is None else ctx
    sub, nat, n, gid, G = ctx["sub"], ctx["nat"], ctx["n"], ctx["gid"], ctx["groups"]
    hid = hidden[base_of]
    rel = gid >= 0
    g_all = np.maximum(gid, 0)
    first = np.full(G, -1, dtype=np.int64)  # the first published national cell of a group
    natp = np.flatnonzero(rel & nat & ~hid)[::-1]
    first[gid[natp]] = natp
    hp_rows = rel & sub & hid & (n > 0)
    count_hp = np.bincount(gid[hp_rows], minlength=G)
    ps_rows = rel & sub & ~hid
    sum_ps = np.bincount(gid[ps_rows], weights=n[ps_rows], minlength=G)
    valid = (first >= 0) & (count_hp > 0)
    tot = np.where(first >= 0, n[np.maximum(first, 0)], 0.0)
    m = tot - sum_ps  # what the intruder sees: national - published
    hp = np.flatnonzero(hp_rows & valid[g_all])
    if not len(hp):
        return set()
    g = gid[hp]
    v = n[hp]
    p = protection(v)
    lo = np.where((count_hp[g] == 1) & (not ctx["own"]), m[g], 0.0)
    strict = (lo > np.maximum(v - p, 0) + _TOL) | (m[g] < np.minimum(v + p, tot[g]) - _TOL)
    narrow = (m[g] - lo) < np.minimum(PROTECTION_ABS, tot[g]) - _TOL
    bad = np.zeros(G, dtype=bool)
    bad[g[np.where(bprim[base_of[hp]], strict, narrow)]] = True
    cand = np.flatnonzero(rel & sub & ~hid & (n > 0) & bad[g_all])
    if not len(cand):
        return set()
    # per group the candidate with the smallest base, then area code, then breakdown order
    srt = cand[np.lexsort((ctx["bd_rank"][cand], ctx["area_rank"][cand], n[cand], gid[cand]))]
    firsts = srt[np.r_[True, gid[srt][1:] != gid[srt][:-1]]]
    return {int(b) for b in base_of[firsts]}


NATIONAL = "00"


def _partition(breakdown: pd.Series) -> pd.Series:
    """'sex=2' -> 'sex', 'age=20-29' -> 'age', 'total' -> 'total'."""
    return breakdown.str.partition("=")[0]


def suppression_groups(
    cells: pd.DataFrame, key_cols: list[str], subsample_areas: set[str]
) -> tuple[list[np.ndarray], list[float]]:
    """Groups of cells that add up to a published total, with the base of each group's unpublished
    remainder (for ``stats.secondary_suppression``). ``cells``: one row per key x area x breakdown
    with columns ``key_cols``, area_code, breakdown, n; positions are row positions.

    * Within an area (per key): the cells of one partition -- sex=1/2 (remainder: sex 3 その他・
      回答しない and 9 無回答), age bands (remainder: age unknown), UK age bands, living alone 1/0
      (remainder: 9 無回答) -- add up to the area's total.
    * Across areas (per key x breakdown): the prefectures estimated from the national survey's
      respondents ('subsample') add up to the national figure; the remainder is the national
      respondents of prefectures that publish their own survey instead.
    """
    c = cells.reset_index(drop=True)
    n = c["n"].astype(float).to_numpy()
    part = _partition(c["breakdown"])
    is_total = (c["breakdown"] == "total").to_numpy()
    groups: list[np.ndarray] = []
    rem: list[float] = []
    total_n = dict(zip(map(tuple, c.loc[is_total, key_cols + ["area_code"]].to_numpy().tolist()), n[is_total]))
    inner = c.loc[~is_total, key_cols + ["area_code"]].assign(_p=part[~is_total])
    for key, idx in inner.groupby(key_cols + ["area_code", "_p"], sort=True).indices.items():
        pos = inner.index.to_numpy()[idx]
        tot = total_n.get(tuple(key[:-1]))
        if tot is None:
            continue
        groups.append(pos)
        rem.append(max(0.0, tot - float(n[pos].sum())))
    nat_n = dict(
        zip(
            map(tuple, c.loc[c.area_code == NATIONAL, key_cols + ["breakdown"]].to_numpy().tolist()),
            n[(c.area_code == NATIONAL).to_numpy()],
        )
    )
    sub = c.loc[c.area_code.isin(subsample_areas), key_cols + ["breakdown"]]
    if len(sub):
        for key, idx in sub.groupby(key_cols + ["breakdown"], sort=True).indices.items():
            key = key if isinstance(key, tuple) else (key,)
            tot = nat_n.get(tuple(key))
            if tot is None:
                continue
            pos = sub.index.to_numpy()[idx]
            groups.append(pos)
            rem.append(max(0.0, tot - float(n[pos].sum())))
    return groups, rem


_PROTECT_CACHE: dict[tuple, np.ndarray] = {}
_PROTECT_CACHE_SIZE = 4


def protect(frame: pd.DataFrame, subsample_areas: set[str], max_rounds: int = 200) -> np.ndarray:
    """Secondary suppression chosen by the audit. ``frame``: one row per measure x area x breakdown
    of one round, columns ``group`` (cells with equal ``group``, area and breakdown share one base:
    the same denominator), ``measure``, ``area_code``, ``breakdown``, ``n``, ``y`` (true counts),
    ``primary`` (bool). Returns the secondary flags (never a primary row).

    Base cells (group x area x breakdown) are hidden together: a base published by one table of the
    group would give away the base of the same cell hidden in another. Repeats until nothing
    changes: the group rule of ``stats.secondary_suppression`` (within an area, and prefectures
    within the national figure), then the audit, which hides for each exposed cell the published
    cell of its partition (the two age partitions count as one) with the smallest base (ties: the
    first breakdown), or of any partition of the area when its own has none left. Deterministic.

    Memoised on the content of ``frame`` (a build computes a round again as the previous round of
    the next one's change column: the same frame, the same result)."""
    cols = ["group", "measure", "area_code", "breakdown", "n", "y", "primary"]
    digest = pd.util.hash_pandas_object(frame[cols].reset_index(drop=True), index=False).to_numpy()
    key = (len(frame), digest.tobytes(), frozenset(map(str, subsample_areas)), max_rounds)
    if key not in _PROTECT_CACHE:
        while len(_PROTECT_CACHE) >= _PROTECT_CACHE_SIZE:
            _PROTECT_CACHE.pop(next(iter(_PROTECT_CACHE)))
        _PROTECT_CACHE[key] = _protect(frame, subsample_areas, max_rounds)
    return _PROTECT_CACHE[key].copy()


def _protect(frame: pd.DataFrame, subsample_areas: set[str], max_rounds: int = 200) -> np.ndarray:
    """``protect`` without the memo."""
    f = frame.reset_index(drop=True)
    bkey = ["group", "area_code", "breakdown"]
    base = f.groupby(bkey, sort=False).agg(n=("n", "max"), primary=("primary", "any")).reset_index()
    base_of = f[bkey].merge(base[bkey].assign(_b=np.arange(len(base))), on=bkey, how="left")["_b"].to_numpy()
    bprim = base["primary"].to_numpy(dtype=bool)
    hidden = bprim.copy()
    bn = base["n"].to_numpy(dtype=float)
    groups, rem = suppression_groups(base[bkey].assign(n=bn), ["group"], subsample_areas)
    bds = base["breakdown"].astype(str).to_numpy()
    part = np.array([partition_of(b) for b in bds])
    order = {b: k for k, b in enumerate(dict.fromkeys(f["breakdown"].astype(str)))}
    area_block = base.groupby(["group", "area_code"], sort=False).indices
    f_n, f_y = f["n"].to_numpy(dtype=float), f["y"].to_numpy(dtype=float)
    by = np.zeros(len(base))  # the largest count / complement of a base cell over its measures
    bz = np.zeros(len(base))
    np.maximum.at(by, base_of, f_y)
    np.maximum.at(bz, base_of, f_n - f_y)
    block = (f["measure"].astype(str) + "|" + f["area_code"].astype(str)).to_numpy()
    # group x area as integer codes (rows of f and base cells); dirty: the codes to re-audit
    ga_codes, ga = pd.factorize(
        pd.concat(
            [
                f["group"].astype(str) + "|" + f["area_code"].astype(str),
                base["group"].astype(str) + "|" + base["area_code"].astype(str),
            ],
            ignore_index=True,
        )
    )
    f_block_area, b_block_area = ga_codes[: len(f)], ga_codes[len(f) :]
    dirty = set(range(len(ga)))
    nat_ctx = _national_context(f, subsample_areas, order) if subsample_areas else None
    for _ in range(max_rounds):
        more = stats.secondary_suppression(bn, hidden, groups, rem) if groups else np.zeros(len(bn), bool)
        if more.any():
            hidden |= more
            dirty |= set(b_block_area[more].tolist())
        is_dirty = np.zeros(len(ga), dtype=bool)
        is_dirty[list(dirty)] = True
        rows = np.flatnonzero(is_dirty[f_block_area])
        dirty = set()
        if not len(rows):
            break
        brows = np.unique(base_of[rows])
        bad_base = _exposed_cells(base, brows, bn, hidden, f, rows, base_of, block, f_n, f_y, bprim)
        add: set[int] = set()
        for b, qs in sorted(bad_base.items()):
            pos = area_block[(base["group"].iat[b], base["area_code"].iat[b])]
            # a cell that carries what is missing: respondents (n), the attribute (y) or its
            # complement (n - y) in some measure of the group
            need = [
                j
                for j in pos
                if not hidden[j]
                and part[j] != "total"
                and bn[j] > 0
                and (0 in qs or (1 in qs and by[j] > 0) or (2 in qs and bz[j] > 0))
            ]
            cand = [j for j in need if part[j] == part[b]] or need
            if cand:
                add.add(min(cand, key=lambda j: (bn[j], order.get(bds[j], 0))))
        add |= _national_fixes(f, base_of, hidden, bprim, subsample_areas, order, nat_ctx)
        add = {j for j in add if not hidden[j]}
        if not add and not more.any():
            break
        for j in add:
            hidden[j] = True
            dirty.add(int(b_block_area[j]))
    sec = hidden[base_of] & ~f["primary"].to_numpy(dtype=bool)
    return sec


# --- Audit of the published tables ---------------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    area_code: str
    measure: str
    breakdown: str
    quantity: str  # 'base' / 'count' / 'complement'
    lo: float
    hi: float
    derivation: str

    def __str__(self) -> str:
        return (
            f"{self.area_code} {self.measure} {self.breakdown}: {self.quantity} in "
            f"[{self.lo:g}, {self.hi:g}] from {self.derivation}"
        )


_QNAME = ("base", "count", "complement")


SUBSAMPLE_NOTE = "出典: 全国調査の当該県回答者"
OWN_SURVEY = OWN_SURVEY_MARK


def _national_exposures(
    t: pd.DataFrame, pub: np.ndarray, n: np.ndarray, y: np.ndarray, sub: np.ndarray, weighted: np.ndarray
) -> list[Exposure]:
    """The relation 'prefectures estimated from the national survey add up to the national cell'
    (per round, indicator and breakdown). With a prefecture that publishes its own survey instead,
    its national respondents are an unpublished remainder (>= 0) and the relation only bounds the
    hidden prefecture cells from above: [0, national - published]; without one, a single hidden
    prefecture cell is the national cell minus the published ones."""
    year = t["year"].astype(str) if "year" in t.columns else pd.Series("", index=t.index)
    key = year + "|" + t["indicator_id"].astype(str) + "|" + t["breakdown"].astype(str)
    nat = (t["area_code"].astype(str) == "00").to_numpy()
    own = bool(t["note"].astype(str).str.contains(OWN_SURVEY, regex=False).any())
    out = []
    for _, pos in pd.Series(np.arange(len(t))).groupby(key.to_numpy()).indices.items():
        natp = [i for i in pos if nat[i] and pub[i]]
        hid = [i for i in pos if sub[i] and not pub[i]]
        if not natp or not hid:
            continue
        pubs = [i for i in pos if sub[i] and pub[i]]
        m = np.array([n[natp[0]] - n[pubs].sum(), y[natp[0]] - y[pubs].sum(), 0.0])
        m[2] = m[0] - m[1]
        lo = m if (len(hid) == 1 and not own) else np.zeros(3)
        width = m - lo
        a_w = np.array([n[natp[0]], y[natp[0]], n[natp[0]] - y[natp[0]]])
        bad = width < np.minimum(PROTECTION_ABS, a_w) - _TOL
        bad[1:] = False  # across areas the bases are protected (counts: within areas only)
        if m[0] <= 0:
            continue
        for q in np.flatnonzero(bad):
            for i in hid:
                out.append(
                    Exposure(
                        str(t["area_code"].iat[i]),
                        str(t["indicator_id"].iat[i]),
                        str(t["breakdown"].iat[i]),
                        _QNAME[q],
                        float(lo[q]),
                        float(m[q]),
                        "the national cell - the published prefectures estimated from the national survey",
                    )
                )
    return out


def _half_unit(x: np.ndarray, max_decimals: int = 4) -> float:
    """Half a unit of the last decimal the published numbers ``x`` (a column) were rounded to: 0.05
    when none has more than one decimal (12.3, 12.0), 0.5 for whole numbers; 0 (exact) when any
    has more than ``max_decimals`` decimals. Rounding is a property of the column, not of a cell
    (12.0 in a column published to 0.1 is known to ±0.05)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    for d in range(max_decimals + 1):
        s = x * 10.0**d
        if (np.abs(s - np.round(s)) < 1e-6 * 10.0**d).all():
            return 0.5 * 10.0**-d
    return 0.0


def published_counts(value, n, n_effective=None, design_effect=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y_lo, y_hi, weighted) of published cells: the counts an intruder can read from a share
    ``value`` (percent, as published: rounded to some decimals or not) and its base ``n``, i.e. every
    whole number y with y / n x 100 within half a unit of the value's last decimal, and whether a
    cell cannot be a count over its base (no whole number fits, or, when ``n_effective`` and
    ``design_effect`` are given, n_effective x design_effect differs from n by more than their
    rounding allows: Kish's n_eff equals n only when every weight is equal) -- a weighted survey,
    whose counts do not follow."""
    v = np.asarray(value, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        yc = v * n / 100.0
        spread = _half_unit(v) * n / 100.0
        y_lo = np.ceil(yc - spread - 1e-4)
        y_hi = np.floor(yc + spread + 1e-4)
        weighted = y_lo > y_hi
        if n_effective is not None and design_effect is not None:
            ne = np.asarray(n_effective, dtype=float)
            de = np.asarray(design_effect, dtype=float)
            kish = ne * de
            known = np.isfinite(kish) & np.isfinite(n)
            # both are published rounded: n_effective to its decimals, the design effect to at most
            # 0.01 (a column of whole design effects, e.g. the default 1.5 ... 1.0, is not known to
            # be rounded to a whole number: at most half of 0.01 is taken for it)
            de_unit = min(_half_unit(de), 0.5 * 10.0**-DEFF_DECIMALS)
            weighted |= known & (np.abs(kish - n) > _half_unit(ne) * de + ne * de_unit + 1e-6)
    y_lo, y_hi = np.maximum(y_lo, 0.0), np.minimum(y_hi, n)
    return y_lo, y_hi, weighted


def audit_published(table: pd.DataFrame) -> list[Exposure]:
    """Every suppressed cell of a published indicators table (columns area_code, indicator_id,
    breakdown, value, n_unweighted, suppressed; year, note, n_effective and design_effect optional)
    that the published cells pin down to an interval narrower than min(PROTECTION_ABS, the a-priori
    range): within each area (``intervals``) and, with a note column (which names the prefectures
    estimated from the national survey), prefectures within the national cell. A published count is
    read from value x base with the value's rounding (a share published to 0.1 point gives every
    count within ±0.05 point: exact for a base under 1,000; ``published_counts``). A block with a
    cell whose value x base fits no count, or whose n_effective x design_effect is not its base (a
    weighted survey), is audited on its bases only."""
    t = table.reset_index(drop=True)
    sup = t["suppressed"].to_numpy(dtype=bool)
    n = pd.to_numeric(t["n_unweighted"], errors="coerce").to_numpy(dtype=float)
    v = pd.to_numeric(t["value"], errors="coerce").to_numpy(dtype=float)
    pub = ~sup & ~np.isnan(n) & ~np.isnan(v)
    kish = (
        {
            "n_effective": pd.to_numeric(t["n_effective"], errors="coerce").to_numpy(dtype=float),
            "design_effect": pd.to_numeric(t["design_effect"], errors="coerce").to_numpy(dtype=float),
        }
        if {"n_effective", "design_effect"} <= set(t.columns)
        else {}
    )
    y_lo, y_hi, cell_w = published_counts(v, n, **kish)
    year = t["year"].astype(str) if "year" in t.columns else pd.Series("", index=t.index)
    block = (year + "|" + t["area_code"].astype(str) + "|" + t["indicator_id"].astype(str)).to_numpy()
    w_block = pd.Series(pub & cell_w).groupby(block).any()
    weighted = set(w_block.index[w_block.to_numpy()])
    w = np.isin(block, list(weighted))
    # weighted blocks: bases only (counts 0); unweighted: each published count as a range
    y_lo = np.where(pub, np.where(w, 0.0, y_lo), np.nan)
    y_hi = np.where(pub, np.where(w, 0.0, y_hi), np.nan)
    y = np.where(pub, np.where(w, 0.0, np.round(v * np.where(np.isnan(n), 0, n) / 100.0)), np.nan)
    cells = pd.DataFrame(
        {
            "block": block,
            "breakdown": t["breakdown"].astype(str),
            "n": n,
            "y": y,
            "y_lo": y_lo,
            "y_hi": y_hi,
            "published": pub,
        }
    )
    iv = intervals(cells)
    bad = exposed_published(iv)
    bad[w[iv.index], 1:] = False
    out = []
    if "note" in t.columns:
        sub = t["note"].astype(str).str.startswith(SUBSAMPLE_NOTE).to_numpy()
        out += _national_exposures(t, pub, n, y, sub, w)
    for r, i in enumerate(iv.index):
        for q in np.flatnonzero(bad[r]):
            out.append(
                Exposure(
                    str(t["area_code"].iat[i]),
                    str(t["indicator_id"].iat[i]),
                    str(t["breakdown"].iat[i]),
                    _QNAME[q],
                    float(iv.lo[r, q]),
                    float(iv.hi[r, q]),
                    iv.derivation[r],
                )
            )
    return out


def __getattr__(name: str):
    """RULE_JA / RULE_EN, the rule in words, moved to the method statement (forks' notebooks read
    them here)."""
    if name in ("RULE_JA", "RULE_EN"):
        import importlib

        return getattr(importlib.import_module(f"{__package__}.method_statement"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
