"""Synthetic sample data: determinism, calibration to the published figures, file formats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.domain import schema
from pipelines.domain.errors import UsageError
from pipelines.ingest.sample import DEFAULT_SEED, national_round, write_sample

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "sample"
REFERENCE = ROOT / "data" / "reference"
NATIONAL_N = {2022: 11_218, 2023: 11_141, 2024: 10_876}
JA_HEADERS = [
    "調査ID",
    "調査年",
    "回答者ID",
    "都道府県コード",
    "性別",
    "年齢",
    "単身世帯",
    "ウェイト",
    "孤独感",
    "人とのつきあいがない",
    "取り残されている",
    "孤立している",
    "直接会って話す頻度",
    "社会活動に参加していない",
    "不安や悩み",
    "支援を受けている",
    "頼れる人",
    "手助けの意向",
]
EXPECTED_FILES = {
    "national-2022.csv",
    "national-2023.csv",
    "national-2024.csv",
    "pref11-2023.xlsx",
    "pref11-2024.csv",
    "pref27-2024.parquet",
    "programme.csv",
    "SYNTHETIC",
    "README.md",
}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    paths = write_sample(out)
    assert {p.name for p in paths} == EXPECTED_FILES
    assert all(p.parent == out and p.exists() for p in paths)
    return out


@pytest.fixture(scope="module")
def national(sample_dir) -> dict[int, pd.DataFrame]:
    return {y: pd.read_csv(sample_dir / f"national-{y}.csv", encoding="utf-8") for y in NATIONAL_N}


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "national_results.csv", dtype={"category": str})


def _pub(published, year, question, category, breakdown="total") -> float:
    row = published[
        (published.year == year)
        & (published.question == question)
        & (published.category == category)
        & (published.breakdown == breakdown)
    ]
    assert len(row) == 1, (year, question, category, breakdown)
    return float(row.value_pct.iloc[0])


def _pct(mask) -> float:
    return float(np.mean(mask) * 100)


def _ucla_band(df: pd.DataFrame) -> pd.Series:
    items = df[["q_ucla_1", "q_ucla_2", "q_ucla_3"]]
    score = items.sum(axis=1)
    band = np.select(
        [(items == 9).any(axis=1), score >= 10, score >= 7, score >= 4], ["na", "10-12", "7-9", "4-6"], "3"
    )
    return pd.Series(band, index=df.index)


def _from_japanese(df: pd.DataFrame) -> pd.DataFrame:
    """Inverse of the Japanese labels (the ingest does this through mapping.yml)."""
    from pipelines.ingest.sample import JA_HEADERS as MAP

    out = df.rename(columns={v: k for k, v in MAP.items()})
    inv = lambda labels: {v: k for k, v in labels.items()}  # noqa: E731
    out["sex"] = out["sex"].map(inv(schema.SEX))
    out["household_single"] = out["household_single"].map(inv(schema.YES_NO))
    for q, labels in schema.QUESTIONS.items():
        out[q] = out[q].map(inv(schema.YES_NO if q == "q_participation_none" else labels))
    assert set(out.columns) == set(schema.SURVEY_COLUMNS)
    return out[schema.SURVEY_COLUMNS]


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_bytes(sample_dir, tmp_path):
    write_sample(tmp_path)
    for name in EXPECTED_FILES:
        assert (tmp_path / name).read_bytes() == (sample_dir / name).read_bytes(), name


def test_different_seed_differs(sample_dir, tmp_path):
    write_sample(tmp_path, seed=7)
    for name in [
        "national-2022.csv",
        "national-2024.csv",
        "pref11-2023.xlsx",
        "pref11-2024.csv",
        "pref27-2024.parquet",
        "programme.csv",
        "SYNTHETIC",
    ]:
        assert (tmp_path / name).read_bytes() != (sample_dir / name).read_bytes(), name
    assert "seed 7" in (tmp_path / "SYNTHETIC").read_text(encoding="utf-8")


def test_bundled_sample_matches_generator(sample_dir):
    assert {p.name for p in BUNDLED.iterdir()} >= EXPECTED_FILES
    for name in EXPECTED_FILES:
        fresh, shipped = sample_dir / name, BUNDLED / name
        if name.endswith(".xlsx"):  # compare content: bytes can depend on the openpyxl version
            pd.testing.assert_frame_equal(pd.read_excel(fresh), pd.read_excel(shipped))
        elif name.endswith(".parquet"):  # the writer's version is stored in the file
            pd.testing.assert_frame_equal(pd.read_parquet(fresh), pd.read_parquet(shipped))
        else:
            assert fresh.read_bytes() == shipped.read_bytes(), f"data/sample/{name} is stale: regenerate"
    assert sum(p.stat().st_size for p in BUNDLED.iterdir()) < 8 * 1024 * 1024


# --- national rounds -----------------------------------------------------------------------------


def test_national_shape_ids_and_codes(national):
    for year, df in national.items():
        assert list(df.columns) == schema.SURVEY_COLUMNS + schema.SURVEY_DESIGN_COLUMNS
        assert len(df) == NATIONAL_N[year]
        assert (df.survey_year == year).all() and (df.survey_id == f"national-{year}").all()
        assert df.respondent_id.is_unique
        assert df.respondent_id.iloc[0] == f"N{year}-000001"
        assert (df.weight == 1.0).all()
        assert df.age.between(16, 99).all()
        assert set(df.pref_code) == set(range(1, 48))
        for col, codes in schema.CODE_SETS.items():
            assert set(df[col].unique()) <= codes, (year, col)
            assert pd.api.types.is_integer_dtype(df[col]), (year, col)


def test_national_rounds_carry_a_stratified_two_stage_design(national):
    """Survey points (~25 respondents) within a prefecture, strata region x city size with >= 2
    points each, and design effects (Taylor linearisation) of a realistic size."""
    from pipelines.domain.survey_design import taylor_share

    for year, df in national.items():
        assert df.stratum.notna().all() and df.psu.notna().all()
        assert (df.groupby("psu").pref_code.nunique() == 1).all()  # a point lies in one prefecture
        assert (df.groupby("psu").stratum.nunique() == 1).all()  # and in one stratum
        assert df.psu.str.slice(0, 2).astype(int).equals(df.pref_code)  # code '13-012': prefecture, point
        sizes = df.groupby("psu").size()
        assert 20 <= sizes.min() and sizes.max() <= 32 and 23 <= sizes.mean() <= 27
        per_stratum = df.groupby("stratum").psu.nunique()
        assert 20 <= len(per_stratum) <= 24 and per_stratum.min() >= 2
        deffs = [
            taylor_share(y.astype(float), df.weight, df.stratum, df.psu).deff[0]
            for y in (
                df.q_loneliness.isin([3, 4, 5]),
                df.q_contact_inperson == 7,
                df.q_participation_none == 1,
                df.q_help_intention == 1,
            )
        ]
        assert all(1.1 < d < 2.2 for d in deffs), (year, deffs)


def test_prefecture_allocation_proportional_to_population(national):
    pops = pd.read_csv(REFERENCE / "prefectures.csv").set_index("pref_code").population_2020.sort_index()
    for year, df in national.items():
        observed = df.pref_code.value_counts().reindex(pops.index, fill_value=0)
        expected = pops / pops.sum() * len(df)
        assert stats.chisquare(observed, expected).pvalue > 0.001, year
        assert observed[13] > 1000 and observed[31] < 80  # Tokyo vs Tottori


def test_sex_age_mix_like_published_2022(national, published):
    counts = published[published.question == "respondents"]
    df = national[2022]
    bands = df.age.map(schema.age_band)
    for _, row in counts[counts.breakdown.str.contains("age=")].iterrows():
        sex, age = (part.split("=")[1] for part in row.breakdown.split(";"))
        share_pub = row.n / 11_218 * 100
        share = _pct((df.sex == int(sex)) & (bands == age))
        assert abs(share - share_pub) < 1.2, row.breakdown


def test_direct_question_close_to_published(national, published):
    for year in (2022, 2023):
        for code in ["1", "2", "3", "4", "5", "9"]:
            got = _pct(national[year].q_loneliness == int(code))
            assert abs(got - _pub(published, year, "q_loneliness", code)) <= 1.0, (year, code, got)
    for code in ["3", "4", "5"]:  # 2024: the confirmed categories
        got = _pct(national[2024].q_loneliness == int(code))
        assert abs(got - _pub(published, 2024, "q_loneliness", code)) <= 1.0, (2024, code, got)


def test_ucla_bands_close_to_published(national, published):
    band = _ucla_band(national[2022])
    for b in ["10-12", "7-9", "4-6", "3"]:
        assert abs(_pct(band == b) - _pub(published, 2022, "ucla_band", b)) <= 1.0, b
    assert abs(_pct(_ucla_band(national[2024]) == "10-12") - _pub(published, 2024, "ucla_band", "10-12")) <= 0.5
    # the latent score links the two measures
    df = national[2022]
    ok = (df.q_loneliness != 9) & (band != "na")
    score = df[["q_ucla_1", "q_ucla_2", "q_ucla_3"]].sum(axis=1)
    assert df.q_loneliness[ok].corr(score[ok]) > 0.5


def test_isolation_items_close_to_published(national, published):
    for year in NATIONAL_N:
        df = national[year]
        assert abs(_pct(df.q_contact_inperson == 7) - _pub(published, year, "q_contact_inperson", "7")) <= 1.0
        assert abs(_pct(df.q_participation_none == 1) - _pub(published, year, "q_participation_none", "1")) <= 1.0
    df = national[2022]
    assert abs(_pct(df.q_has_worries == 1) - 8_484 / 11_218 * 100) <= 1.0
    worried = df[df.q_has_worries == 1]
    assert (
        abs(_pct(worried.q_support_received == 1) - _pub(published, 2022, "q_support_received", "1", "has_worries=1"))
        <= 1.0
    )
    assert (
        abs(_pct(worried.q_support_received == 2) - _pub(published, 2022, "q_support_received", "2", "has_worries=1"))
        <= 1.5
    )
    assert (df.q_support_received[df.q_has_worries != 1] == 9).all()  # not asked
    assert abs(_pct(df.q_help_intention == 1) - _pub(published, 2022, "q_help_intention", "1")) <= 1.0
    assert abs(_pct(national[2024].q_reliable_person == 2) - _pub(published, 2024, "q_reliable_person", "2")) <= 1.0


def test_small_no_answer_shares(national):
    for year, df in national.items():
        for q in [*schema.QUESTIONS, "household_single"]:
            if q == "q_support_received":
                continue
            assert 0.2 <= _pct(df[q] == 9) <= 2.0, (year, q)


def test_age_sex_and_living_alone_pattern(national):
    df = pd.concat(national.values())
    band = df.age.map(schema.age_band)
    often = df.q_loneliness == 5
    by_band = often.groupby(band).mean() * 100
    assert by_band["20-29"] > by_band["80+"] + 2 and by_band["30-39"] > by_band["80+"] + 2
    assert by_band["80+"] == by_band.min()
    assert often[df.sex == 1].mean() > often[df.sex == 2].mean()
    alone = often[df.household_single == 1].mean() * 100
    assert alone > often[df.household_single == 0].mean() * 100 + 2 and 7.5 < alone < 12
    assert 14 < _pct(df.household_single == 1) < 21
    # support among the worried peaks at 80+, help intention at 16-19 (as published for 2022)
    worried = df.q_has_worries == 1
    support = (df.q_support_received == 1)[worried].groupby(band[worried]).mean()
    assert support.idxmax() == "80+"
    assert (df.q_help_intention == 1).groupby(band).mean().idxmax() == "16-19"


def test_some_prefectures_differ_most_do_not(national):
    df = national[2022]
    lonely = df.q_loneliness.isin([3, 4, 5])
    nat = lonely.mean()
    g = lonely.groupby(df.pref_code).agg(["mean", "size"])
    p, n, z = g["mean"], g["size"], 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    differ = int(((centre - half > nat) | (centre + half < nat)).sum())
    assert 3 <= differ <= 20, differ


def test_rows_override_and_scale():
    df = national_round(2024, rows=300_000)
    assert len(df) == 300_000 and df.respondent_id.is_unique
    assert abs(_pct(df.q_loneliness == 5) - 4.3) < 0.3
    with pytest.raises(UsageError, match=r"^--rows: '0' must be 1 or more$"):
        write_sample(Path("unused"), rows=0)


def test_cli_writes_the_set(tmp_path):
    out = tmp_path / "s"
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sample-data", "--out", str(out), "--rows", "500", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    assert len(res.stdout.splitlines()) == len(EXPECTED_FILES)
    for year in NATIONAL_N:
        assert len(pd.read_csv(out / f"national-{year}.csv")) == 500


# --- prefecture surveys --------------------------------------------------------------------------


def test_prefecture_surveys(sample_dir):
    xlsx = pd.read_excel(sample_dir / "pref11-2023.xlsx")
    cp932 = _from_japanese(pd.read_csv(sample_dir / "pref11-2024.csv", encoding="cp932"))
    parquet = pd.read_parquet(sample_dir / "pref27-2024.parquet")
    for df, pref, year in [(xlsx, 11, 2023), (cp932, 11, 2024), (parquet, 27, 2024)]:
        assert list(df.columns) == schema.SURVEY_COLUMNS
        assert 1_400 <= len(df) <= 1_600
        assert (df.pref_code == pref).all() and (df.survey_year == year).all()
        assert (df.survey_id == f"pref{pref}-{year}").all()
        assert df.respondent_id.is_unique
        for col, codes in schema.CODE_SETS.items():
            assert df[col].notna().all() and set(df[col].unique()) <= codes, (pref, year, col)
        assert df.weight.between(0.5, 2.0).all() and df.weight.std() > 0.1
        assert abs(df.weight.mean() - 1) < 0.05
    # Saitama 2023 reproduces the published Saitama shares (domain facts)
    for code, pct in {5: 4.2, 4: 9.6, 3: 19.1, 2: 42.1, 1: 24.4}.items():
        assert abs(_pct(xlsx.q_loneliness == code) - pct) <= 1.0, code


def test_cp932_file_has_japanese_headers_and_labels(sample_dir):
    raw = (sample_dir / "pref11-2024.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("cp932")
    assert text.splitlines()[0].split(",") == JA_HEADERS
    df = pd.read_csv(sample_dir / "pref11-2024.csv", encoding="cp932")
    assert set(df["性別"]) <= set(schema.SEX.values())
    assert set(df["単身世帯"]) == {"はい", "いいえ", "無回答"}
    assert set(df["社会活動に参加していない"]) <= {"はい", "いいえ", "無回答"}
    assert set(df["孤独感"]) == set(schema.QUESTIONS["q_loneliness"].values())
    assert set(df["直接会って話す頻度"]) <= set(schema.QUESTIONS["q_contact_inperson"].values())
    assert "週4～5回以上" in set(df["直接会って話す頻度"])


# --- programme data and markers ------------------------------------------------------------------


def test_programme_data(sample_dir):
    raw = (sample_dir / "programme.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    df = pd.read_csv(sample_dir / "programme.csv", encoding="utf-8-sig")
    assert list(df.columns) == schema.PROGRAMME_COLUMNS
    assert len(df) == 47 * 3 * len(schema.PROGRAMME_METRICS)
    assert not df.duplicated(["fiscal_year", "pref_code", "metric_id"]).any()
    assert set(df.fiscal_year) == {2022, 2023, 2024} and set(df.pref_code) == set(range(1, 48))
    units = {m: u for m, (_, u) in schema.PROGRAMME_METRICS.items()}
    assert (df.unit == df.metric_id.map(units)).all()
    assert (df.source == "合成データ（サンプル）/ synthetic sample").all()
    assert df.value.notna().all() and (df.value >= 0).all()
    flags = df[df.unit == "flag"].pivot_table(index=["metric_id", "pref_code"], columns="fiscal_year", values="value")
    assert set(np.unique(flags.to_numpy())) <= {0, 1}
    assert (flags.diff(axis=1).iloc[:, 1:] >= 0).all().all()  # once set up, stays set up
    per_year = flags.groupby(level=0).sum()
    assert (per_year[2024] > per_year[2022]).all()
    pops = pd.read_csv(REFERENCE / "prefectures.csv").set_index("pref_code").population_2020
    phone = df[(df.metric_id == "consultations_phone") & (df.fiscal_year == 2024)].set_index("pref_code").value
    assert np.corrcoef(phone.sort_index(), pops.sort_index())[0, 1] > 0.9


def test_synthetic_marker_and_readme(sample_dir):
    marker = (sample_dir / "SYNTHETIC").read_text(encoding="utf-8")
    assert "合成" in marker and "synthetic" in marker.lower()
    assert f"seed {DEFAULT_SEED}" in marker and "not official statistics" in marker
    assert "公的統計ではありません" in marker
    readme = (sample_dir / "README.md").read_text(encoding="utf-8")
    for name in EXPECTED_FILES - {"README.md"}:
        assert f"`{name}`" in readme
