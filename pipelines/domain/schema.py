"""The data contract (DESIGN.md "Inputs" and "Indicators table"), shared by every stage.

Column names, code sets, Japanese labels, age bands and the warehouse tables live here and
nowhere else.
"""

from __future__ import annotations

# --- Survey microdata --------------------------------------------------------------------------

NA = 9  # 無回答 (no answer) in every coded question

SEX = {1: "男性", 2: "女性", 3: "その他・回答しない", 9: "無回答"}
YES_NO = {1: "はい", 0: "いいえ", 9: "無回答"}

QUESTIONS: dict[str, dict[int, str]] = {
    "q_loneliness": {
        1: "決してない",
        2: "ほとんどない",
        3: "たまにある",
        4: "時々ある",
        5: "しばしばある・常にある",
        9: "無回答",
    },
    "q_ucla_1": {1: "決してない", 2: "ほとんどない", 3: "時々ある", 4: "常にある", 9: "無回答"},
    "q_ucla_2": {1: "決してない", 2: "ほとんどない", 3: "時々ある", 4: "常にある", 9: "無回答"},
    "q_ucla_3": {1: "決してない", 2: "ほとんどない", 3: "時々ある", 4: "常にある", 9: "無回答"},
    "q_contact_inperson": {
        1: "週4～5回以上",
        2: "週2～3回程度",
        3: "週1回程度",
        4: "2週間に1回程度",
        5: "月1回程度",
        6: "月1回未満",
        7: "全くない",
        9: "無回答",
    },
    "q_participation_none": {1: "特に参加はしていない", 0: "何らかの活動に参加", 9: "無回答"},
    "q_has_worries": {1: "ある", 2: "ない", 9: "無回答"},
    "q_support_received": {1: "受けている", 2: "受けていない", 9: "無回答"},
    "q_reliable_person": {1: "いる", 2: "いない", 9: "無回答"},
    "q_help_intention": {
        1: "しようと思う",
        2: "どちらかといえばしようと思う",
        3: "どちらかといえばしようと思わない",
        4: "しようと思わない",
        9: "無回答",
    },
}

# Code sets of every coded column (the validation suites and ingest use these).
CODE_SETS: dict[str, set[int]] = {
    "sex": set(SEX),
    "household_single": {0, 1, 9},
    **{q: set(labels) for q, labels in QUESTIONS.items()},
}

SURVEY_REQUIRED = [
    "survey_id",
    "survey_year",
    "respondent_id",
    "pref_code",
    "sex",
    "age",
    "household_single",
    *QUESTIONS,
]
SURVEY_OPTIONAL = ["weight"]
SURVEY_COLUMNS = SURVEY_REQUIRED + SURVEY_OPTIONAL
# The sample design, optional and given together: `stratum` (層) and `psu` (the primary sampling
# unit, e.g. the survey point 調査地点, read within its stratum), both text codes. A file with them
# gets design-based variances (Taylor linearisation, pipelines/domain/survey_design.py) and an estimated
# design effect; a file without them (NULL in the warehouse) gets the default design effect
# (config.DEFAULT_DEFF). A stratified element sample gives psu = respondent_id; a cluster sample
# without strata gives one stratum code for every row.
SURVEY_DESIGN_COLUMNS = ["stratum", "psu"]

# UK Community Life Survey category order maps 1:1 to q_loneliness codes 5,4,3,2,1.
UK_LONELINESS_LABELS = {5: "Often/always", 4: "Some of the time", 3: "Occasionally", 2: "Hardly ever", 1: "Never"}

# --- Age bands -----------------------------------------------------------------------------------

AGE_BANDS = ["16-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+"]
AGE_BAND_LABELS = {
    "16-19": "16～19歳",
    "20-29": "20歳代",
    "30-39": "30歳代",
    "40-49": "40歳代",
    "50-59": "50歳代",
    "60-69": "60歳代",
    "70-79": "70歳代",
    "80+": "80歳以上",
}
UK_AGE_BANDS = ["16-24", "25-34", "35-49", "50-64", "65-74", "75+"]


def age_band(age: float | int | None) -> str | None:
    """National 10-year band of an age in years (16-19, 20-29, ... 70-79, 80+); None if missing."""
    if age is None or age != age or age < 16:  # NaN check without numpy
        return None
    a = int(age)
    if a < 20:
        return "16-19"
    if a >= 80:
        return "80+"
    lo = a // 10 * 10
    return f"{lo}-{lo + 9}"


def uk_age_band(age: float | int | None) -> str | None:
    """UK Community Life Survey band (16-24, 25-34, 35-49, 50-64, 65-74, 75+); None if missing."""
    if age is None or age != age or age < 16:
        return None
    a = int(age)
    for band, hi in (("16-24", 24), ("25-34", 34), ("35-49", 49), ("50-64", 64), ("65-74", 74)):
        if a <= hi:
            return band
    return "75+"


# SQL versions of the two functions above, for DuckDB (column expression `age`).
AGE_BAND_SQL = """CASE WHEN age IS NULL OR age < 16 THEN NULL
  WHEN age < 20 THEN '16-19' WHEN age >= 80 THEN '80+'
  ELSE CAST(CAST(floor(age / 10) * 10 AS INTEGER) AS VARCHAR) || '-' ||
       CAST(CAST(floor(age / 10) * 10 + 9 AS INTEGER) AS VARCHAR) END"""
UK_AGE_BAND_SQL = """CASE WHEN age IS NULL OR age < 16 THEN NULL
  WHEN age <= 24 THEN '16-24' WHEN age <= 34 THEN '25-34' WHEN age <= 49 THEN '35-49'
  WHEN age <= 64 THEN '50-64' WHEN age <= 74 THEN '65-74' ELSE '75+' END"""

# --- Programme data ------------------------------------------------------------------------------

PROGRAMME_COLUMNS = ["fiscal_year", "pref_code", "metric_id", "value", "unit", "source"]
# metric_id -> (Japanese name, expected unit)
PROGRAMME_METRICS: dict[str, tuple[str, str]] = {
    "consultations_phone": ("電話相談件数", "count"),
    "consultations_sns": ("SNS相談件数", "count"),
    "platform": ("官民連携プラットフォームの設置", "flag"),
    "regional_council": ("孤独・孤立対策地域協議会の設置", "flag"),
    "npo_grants_count": ("NPO等への助成件数", "count"),
    "npo_grants_yen": ("NPO等への助成額", "yen"),
    "supporters_trained": ("つながりサポーター養成数", "count"),
}

# --- Warehouse (DuckDB) --------------------------------------------------------------------------
# Committed tables. Staging tables have the same columns with the prefix `staging_`.

SURVEY_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {name} (
    survey_id VARCHAR NOT NULL,
    survey_year INTEGER NOT NULL,
    survey_kind VARCHAR NOT NULL,          -- 'national' or 'prefecture'
    respondent_id VARCHAR NOT NULL,
    pref_code INTEGER NOT NULL,
    sex INTEGER NOT NULL,
    age INTEGER,
    age_band VARCHAR,
    uk_age_band VARCHAR,
    household_single INTEGER NOT NULL,
    weight DOUBLE NOT NULL,
    q_loneliness INTEGER NOT NULL,
    q_ucla_1 INTEGER NOT NULL,
    q_ucla_2 INTEGER NOT NULL,
    q_ucla_3 INTEGER NOT NULL,
    q_contact_inperson INTEGER NOT NULL,
    q_participation_none INTEGER NOT NULL,
    q_has_worries INTEGER NOT NULL,
    q_support_received INTEGER NOT NULL,
    q_reliable_person INTEGER NOT NULL,
    q_help_intention INTEGER NOT NULL,
    file_id VARCHAR NOT NULL,              -- sha256 of the source file
    source_row INTEGER NOT NULL,           -- 1-based data row number in the source file
    stratum VARCHAR,                       -- sample design (SURVEY_DESIGN_COLUMNS), NULL when the file
    psu VARCHAR                            -- has none; last, as a warehouse made before them gets them
)"""  # by ALTER TABLE ... ADD COLUMN (ingest.ensure_tables)

PROGRAMME_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {name} (
    fiscal_year INTEGER NOT NULL,
    pref_code INTEGER NOT NULL,
    metric_id VARCHAR NOT NULL,
    value DOUBLE,
    unit VARCHAR NOT NULL,
    source VARCHAR,
    file_id VARCHAR NOT NULL,
    source_row INTEGER NOT NULL
)"""

FILES_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS files (
    file_id VARCHAR PRIMARY KEY,           -- sha256 of the file bytes
    file_name VARCHAR NOT NULL,            -- base name; a new file with the same name replaces the old one
    path VARCHAR NOT NULL,                 -- path as given when loaded
    kind VARCHAR NOT NULL,                 -- 'survey' or 'programme'
    survey_id VARCHAR,                     -- surveys only
    survey_year INTEGER,                   -- surveys: fieldwork year; programme: NULL
    encoding VARCHAR,
    row_count INTEGER NOT NULL,
    synthetic BOOLEAN NOT NULL,            -- true when a file named SYNTHETIC lies beside the input file
    loaded_at TIMESTAMP NOT NULL
)"""

# The validation results of each committed file, as computed on its staged rows just before commit
# (the quality page reuses them instead of validating every file again). `suite_digest` identifies
# the suites and the code that produced them; `row_count` the rows they were computed on.
VALIDATION_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS validation_results (
    file_id VARCHAR PRIMARY KEY,
    suite_digest VARCHAR NOT NULL,
    row_count BIGINT NOT NULL,
    results VARCHAR NOT NULL               -- JSON list of ExpectationResult
)"""

# The tidy indicators table (DESIGN.md). One row per year x area x indicator x breakdown.
INDICATOR_COLUMNS = [
    "year",
    "area_code",
    "area_name",
    "indicator_id",
    "breakdown",
    "value",
    "lower_ci95",
    "upper_ci95",
    "n_unweighted",
    "n_effective",
    "national_value",
    "comparison",
    "change_vs_previous",
    "suppressed",
    "note",
    # How each row was judged (after the contract columns; see stats / indicators)
    "source",
    "previous_year",
    "source_changed",
    "comparison_method",
    "change_method",
    "design_effect",
    # What each label was tested against (issue 22 item 5): set only on a row that
    # carries a label (comparison / change not 'not_compared'), never on a suppressed row.
    *(
        "reference_value",
        "reference_n_effective",
        "difference",
        "difference_lower_ci95",
        "difference_upper_ci95",
        "p_value",
        "previous_value",
        "previous_n_effective",
        "change_difference",
        "change_lower_ci95",
        "change_upper_ci95",
        "change_p_value",
    ),
    # The leading estimate (issue #24, pipelines/domain/small_area.py): direct, pooled or
    # model-based, by the rule of the method statement. Set also on a suppressed row
    # (a pooled or model-based value is not the suppressed direct value).
    *("estimate_method", "lead_value", "lead_lower_ci95", "lead_upper_ci95", "lead_cv", "lead_years"),
]
# What each label was tested against (empty on a suppressed row) and the leading estimate.
TESTED_AGAINST_COLUMNS = INDICATOR_COLUMNS[
    INDICATOR_COLUMNS.index("reference_value") : INDICATOR_COLUMNS.index("change_p_value") + 1
]
LEAD_COLUMNS = INDICATOR_COLUMNS[INDICATOR_COLUMNS.index("estimate_method") :]
# The columns DESIGN.md names, and the ones that record how each row was judged.
CONTRACT_INDICATOR_COLUMNS = INDICATOR_COLUMNS[:15]
JUDGING_COLUMNS = INDICATOR_COLUMNS[15:]

INDICATORS_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS indicators (
    year INTEGER NOT NULL,
    area_code VARCHAR NOT NULL,            -- '00' national, '01'..'47' prefectures
    area_name VARCHAR NOT NULL,
    indicator_id VARCHAR NOT NULL,
    breakdown VARCHAR NOT NULL,            -- 'total', 'sex=1', 'age=20-29', 'uk_age=16-24', 'household_single=1'
    value DOUBLE,                          -- percent (0-100) for shares; rate or flag for programme
    lower_ci95 DOUBLE,
    upper_ci95 DOUBLE,
    n_unweighted INTEGER,
    n_effective DOUBLE,
    national_value DOUBLE,
    comparison VARCHAR,                    -- better|worse|similar|higher|lower|not_compared
    change_vs_previous VARCHAR,            -- increase|decrease|no_change|not_compared
    suppressed BOOLEAN NOT NULL,
    note VARCHAR,                          -- source and base, 参考値 flag, suppression reason
    source VARCHAR,                        -- national|national_subsample|own_survey|programme|none
    previous_year INTEGER,                 -- the round change_vs_previous compares with (NULL: none)
    source_changed BOOLEAN,                -- the previous round's source differs (e.g. subsample -> own survey)
    comparison_method VARCHAR,             -- newcombe|fisher|newcombe_rest|fisher_rest|none (stats.METHOD_DESCRIPTIONS)
    change_method VARCHAR,                 -- newcombe|fisher|source_break|none
    design_effect DOUBLE,                  -- deff of the row's survey; n_effective and intervals use n_eff/deff
    -- The comparison with national as tested (NULL unless comparison_method is a test). The tests
    -- take the figures as published (shares to 0.1 point, effective sizes to 0.1), so each label
    -- can be recomputed from a download row.
    reference_value DOUBLE,                -- percent: national (own survey) or rest of the nation (national subsample)
    reference_n_effective DOUBLE,          -- the reference's effective size (n_eff / deff)
    difference DOUBLE,                     -- value - reference_value as tested, percentage points
    difference_lower_ci95 DOUBLE,          -- Newcombe hybrid score interval of the difference (points)
    difference_upper_ci95 DOUBLE,
    p_value DOUBLE,                        -- Fisher's exact p (two-sided) when fisher/fisher_rest decided, else NULL
    -- The change vs previous_year as tested (NULL unless change_method is a test; previous_value and
    -- previous_n_effective also on a source_break row, whose change is shown, not tested).
    previous_value DOUBLE,                 -- percent, the same area and breakdown in previous_year
    previous_n_effective DOUBLE,
    change_difference DOUBLE,              -- value - previous_value as tested, percentage points
    change_lower_ci95 DOUBLE,              -- Newcombe interval of the change (points)
    change_upper_ci95 DOUBLE,
    change_p_value DOUBLE,                 -- Fisher's exact p when change_method is fisher, else NULL
    -- The leading estimate (issue #24; pipelines/domain/small_area.py, rule in the method statement):
    -- the direct value when published with CV <= config.LEAD_CV_MAX, else a pooled one (CV as well),
    -- else the model-based (Fay-Herriot) one. NULL estimate_method: nothing to show. A pooled or
    -- model value may stand on a suppressed row: it is not the suppressed direct value.
    estimate_method VARCHAR,               -- direct|pooled|model (programme rows: direct)
    lead_value DOUBLE,                     -- percent (or the programme value)
    lead_lower_ci95 DOUBLE,
    lead_upper_ci95 DOUBLE,
    lead_cv DOUBLE,                        -- coefficient of variation (ratio) of the leading estimate
    lead_years VARCHAR                     -- the rounds pooled ('2022-2024') for a pooled value, else NULL
)"""

# Small-area estimates (issue #24, pipelines/domain/small_area.py): every model-based and pooled estimate of
# a round, whether or not it leads. Model values are estimates, not counts: no base.
SMALL_AREA_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS small_area (
    year INTEGER NOT NULL,
    area_code VARCHAR NOT NULL,
    indicator_id VARCHAR NOT NULL,
    breakdown VARCHAR NOT NULL,
    estimate_method VARCHAR NOT NULL,      -- model (fitted with its published direct value) | synthetic
                                           -- (direct not published: regression prediction) | pooled
    value DOUBLE,                          -- percent
    lower_ci95 DOUBLE,
    upper_ci95 DOUBLE,
    rmse DOUBLE,                           -- root MSE (model) or standard error (pooled), points
    cv DOUBLE,                             -- rmse / value (ratio)
    shrinkage DOUBLE,                      -- gamma = A / (A + D) (model), 0 (synthetic), NULL (pooled)
    std_residual DOUBLE,                   -- (direct - x'beta) / sqrt(A + D), arcsine scale (model only)
    synthetic DOUBLE,                      -- x'beta back-transformed, percent (model and synthetic)
    fit_scope VARCHAR,                     -- total | sex | age | uk_age | household_single | breakdowns
    pooled_years VARCHAR                   -- '2022-2024' (pooled)
)"""
SMALL_AREA_FITS_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS small_area_fits (
    year INTEGER NOT NULL,
    indicator_id VARCHAR NOT NULL,
    fit_scope VARCHAR NOT NULL,
    term VARCHAR NOT NULL,                 -- '(Intercept)' or the covariate
    coefficient DOUBLE,                    -- arcsine scale
    std_error DOUBLE,
    area_variance DOUBLE,                  -- A (REML), arcsine scale
    n_in_sample INTEGER,                   -- cells with a published direct value in the fit
    n_areas INTEGER,
    loglike DOUBLE,
    algorithm VARCHAR,
    benchmark_factor DOUBLE                -- ratio applied (totals; breakdowns: per breakdown, NULL here)
)"""

# Full answer distributions for the charts: one row per year x area x question x breakdown x category.
DISTRIBUTIONS_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS distributions (
    year INTEGER NOT NULL,
    area_code VARCHAR NOT NULL,
    question VARCHAR NOT NULL,             -- 'q_loneliness', 'ucla_band', or any q_* column
    breakdown VARCHAR NOT NULL,
    category VARCHAR NOT NULL,             -- code as text ('1'..'5','9') or UCLA band ('10-12','7-9','4-6','3','na')
    category_label VARCHAR NOT NULL,       -- Japanese label, 無回答 included
    value DOUBLE,                          -- percent of all respondents in the cell
    lower_ci95 DOUBLE,
    upper_ci95 DOUBLE,
    n_unweighted INTEGER,                  -- respondents in the cell's base
    suppressed BOOLEAN NOT NULL
)"""

UCLA_BANDS = {"10-12": "10～12点", "7-9": "7～9点", "4-6": "4～6点", "3": "3点", "na": "無回答"}

COMPARISON_LABELS = {
    "better": "良い",
    "worse": "悪い",
    "similar": "同程度",
    "higher": "高い",
    "lower": "低い",
    "not_compared": "比較なし",
}
CHANGE_LABELS = {"increase": "増加", "decrease": "減少", "no_change": "有意差なし", "not_compared": "比較なし"}

# How an indicator is judged (catalogue `polarity`): lower is better, higher is better, no judgement.
POLARITIES = ("low_is_good", "high_is_good", "no_judgement")
