"""The data dictionary of the published tables: every column of the downloads, in file order.

One source for the Japanese headers (first header row), the codes (second header row; the
indicators table's names, on which scripts rely), the dictionary sheet of every workbook,
downloads/data-dictionary.csv, the table on the downloads page and the disclosure check's reading
of the files (pipelines/disclosure/check.py)."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.domain import config
from pipelines.domain.conventions import CV_DECIMALS, DEFF_DECIMALS, N_DECIMALS, P_DIGITS, RATE_DECIMALS, SHARE_DECIMALS

LEVEL = config.confidence_percent()  # the interval columns' level, as the settings give it when this module loads


@dataclass(frozen=True)
class Column:
    code: str  # the column's name (second header row); the data contract's name for its columns
    ja: str  # the Japanese header (first header row)
    meaning: str  # what it holds (Japanese)
    format: str  # unit, format, precision (Japanese)
    en: str  # what it holds (English)


_SHARE_FMT = (
    f"単位列のとおり（小数第{SHARE_DECIMALS}位）"
    if SHARE_DECIMALS == RATE_DECIMALS
    else f"単位列のとおり（%・ポイントは小数第{SHARE_DECIMALS}位、1万人当たりの率は小数第{RATE_DECIMALS}位）"
)
_DIFF_FMT = f"ポイント（小数第{SHARE_DECIMALS}位）"
_N_FMT = f"人（小数第{N_DECIMALS}位）"
_P_FMT = f"0～1（有効数字{P_DIGITS}桁）"
_BOOL_FMT = "TRUE / FALSE（CSV では True / False）"

COLUMNS: tuple[Column, ...] = (
    Column(
        "synthetic",
        "合成データ",
        "TRUE のとき、この行の数値は合成（架空）データから計算した見本で、実際の調査結果ではない。"
        "合成データで作成したファイルにだけある列（全行 TRUE）。",
        _BOOL_FMT,
        "TRUE: computed from synthetic (made-up) sample data, not survey results. Present only in files built"
        " from synthetic data (TRUE on every row).",
    ),
    Column(
        "year",
        "調査年",
        "調査の年（事業データは年度）。",
        "整数（西暦）",
        "Survey year (fiscal year for programme data).",
    ),
    Column(
        "area_code",
        "地域コード",
        "都道府県の JIS コード。00 は全国。",
        "2桁の文字（先頭の0を含む。01～47、00）",
        "JIS prefecture code, 00 = national (text: keep the leading zero).",
    ),
    Column("area_name", "地域名", "都道府県名（全国の行は「全国」）。", "文字", "Prefecture name (全国 = national)."),
    Column("indicator_name_ja", "指標名", "指標の名称。", "文字", "Indicator name (Japanese)."),
    Column(
        "indicator_id",
        "指標ID",
        "指標の識別子（指標カタログ indicators.yml の id）。",
        "英字コード",
        "Indicator id (the catalogue's id).",
    ),
    Column("indicator_name_en", "指標名（英語）", "指標の英語名。", "文字", "Indicator name (English)."),
    Column(
        "unit_ja",
        "単位",
        "値の単位。",
        "文字（%、16歳以上人口1万人当たり、1=あり 0=なし）",
        "Unit of the value (Japanese).",
    ),
    Column(
        "unit",
        "単位コード",
        "値の単位のコード: percent（%）、per_10k（16歳以上人口1万人当たり）、flag（都道府県の行は1=あり・0=なし、"
        "全国の行は該当する都道府県の割合 %）。",
        "英字コード",
        "Unit code: percent, per_10k (per 10,000 people aged 16+), flag (1/0; national row: share of prefectures, %).",
    ),
    Column("breakdown_ja", "内訳", "集計の区分（全体、男性・女性、年齢階級など）。", "文字", "Breakdown (Japanese)."),
    Column(
        "breakdown",
        "内訳コード",
        "集計の区分のコード: total、sex=1（男性）・sex=2（女性）、age=…（年齢階級）、"
        "uk_age=…（英国比較用の年齢区分）、household_single=1（一人暮らし）・0。",
        "英字コード",
        "Breakdown code: total, sex=1/2, age=…, uk_age=…, household_single=1/0.",
    ),
    Column(
        "value",
        "値",
        "指標の値（直接推計）。非表示の行は空欄。",
        _SHARE_FMT,
        "The indicator's value (direct estimate); empty on a suppressed row.",
    ),
    Column(
        "lower_ci95",
        f"{LEVEL}%信頼区間 下限",
        f"値の{LEVEL}%信頼区間の下限（有効標本サイズによる Wilson スコア区間）。",
        _SHARE_FMT,
        f"Lower bound of the {LEVEL}% Wilson interval (effective size).",
    ),
    Column(
        "upper_ci95",
        f"{LEVEL}%信頼区間 上限",
        f"値の{LEVEL}%信頼区間の上限。",
        _SHARE_FMT,
        f"Upper bound of the {LEVEL}% interval.",
    ),
    Column(
        "n_unweighted",
        "回答者数",
        f"集計対象の回答者数（ウエイトなし）。非表示の行は空欄（{config.MIN_BASE}人未満または非公表。注記を参照）。",
        "人（整数）",
        "Unweighted base; empty on a suppressed row.",
    ),
    Column(
        "n_effective",
        "有効標本サイズ",
        "Kish の有効標本サイズ (Σw)²/Σw² を設計効果で割った値。区間と検定はこれを用いる。",
        _N_FMT,
        "Kish effective sample size divided by the design effect; used by every interval and test.",
    ),
    Column(
        "national_value",
        "全国値",
        "同じ年・指標・内訳の全国の値。",
        _SHARE_FMT,
        "National value, same year, indicator and breakdown.",
    ),
    Column(
        "comparison_ja",
        "全国との比較",
        "全国との比較の判定（良い・悪い・同程度・高い・低い・比較なし）。",
        "文字",
        "Comparison with national (Japanese).",
    ),
    Column(
        "comparison",
        "全国との比較コード",
        "判定のコード: better、worse、similar、higher、lower、not_compared。",
        "英字コード",
        "Comparison code: better, worse, similar, higher, lower, not_compared.",
    ),
    Column(
        "change_vs_previous_ja",
        "前回調査からの変化",
        "前回調査からの変化の判定（増加・減少・有意差なし・比較なし）。",
        "文字",
        "Change since the previous round (Japanese).",
    ),
    Column(
        "change_vs_previous",
        "前回調査からの変化コード",
        "変化のコード: increase、decrease、no_change、not_compared。",
        "英字コード",
        "Change code: increase, decrease, no_change, not_compared.",
    ),
    Column(
        "suppressed",
        "非表示",
        "TRUE のとき、回答者数が少ないなどの理由で値を公表しない行（一次・二次秘匿）。",
        _BOOL_FMT,
        "TRUE: the value is not published (small base, or hidden to protect another cell).",
    ),
    Column(
        "note",
        "注記",
        "出典、回答者数、参考値・非表示の理由など。",
        "文字",
        "Source, base, reference-value and suppression notes.",
    ),
    Column(
        "source_ja",
        "出典の種類",
        "値の出典（全国調査、全国調査の当該県回答者、県独自調査、事業データ）。",
        "文字",
        "Source of the value (Japanese).",
    ),
    Column(
        "source",
        "出典の種類コード",
        "出典のコード: national、national_subsample、own_survey、programme、none。",
        "英字コード",
        "Source code: national, national_subsample, own_survey, programme, none.",
    ),
    Column(
        "previous_year",
        "前回調査年",
        "前回比で比べた調査年（なければ空欄）。",
        "整数（西暦）",
        "The round the change compares with.",
    ),
    Column(
        "source_changed",
        "前回と出典が異なる",
        "TRUE のとき、前回調査と出典が異なる（例: 全国調査の当該県回答者から県独自調査へ）ため前回比の検定をしない。",
        _BOOL_FMT,
        "TRUE: the previous round's source differs; the change is shown, not tested.",
    ),
    Column(
        "comparison_method_ja",
        "全国との比較の方法",
        "全国との比較に用いた方法。",
        "文字",
        "Comparison method (Japanese).",
    ),
    Column(
        "comparison_method",
        "全国との比較の方法コード",
        "方法のコード: newcombe、fisher、newcombe_rest、fisher_rest（_rest は当該県を除く全国と比較）、none。",
        "英字コード",
        "Comparison method code: newcombe, fisher, newcombe_rest, fisher_rest (vs the rest of the nation), none.",
    ),
    Column("change_method_ja", "前回比の方法", "前回比に用いた方法。", "文字", "Change method (Japanese)."),
    Column(
        "change_method",
        "前回比の方法コード",
        "方法のコード: newcombe、fisher、source_break（出典変更のため検定なし）、none。",
        "英字コード",
        "Change method code: newcombe, fisher, source_break, none.",
    ),
    Column(
        "design_effect",
        "設計効果",
        "この行の調査の設計効果。有効標本サイズ = Kish の n_eff ÷ 設計効果。",
        f"比（小数第{DEFF_DECIMALS}位）",
        "Design effect of the row's survey (n_effective = Kish n_eff / deff).",
    ),
    Column(
        "reference_value",
        "比較の基準値",
        "全国との比較で検定した相手の値: 県独自調査の県は全国値、全国調査の当該県回答者による県は当該県を除く全国の値。"
        "判定のある行のみ。",
        _SHARE_FMT,
        "The value the area was tested against (national, or the rest of the nation); labelled rows only.",
    ),
    Column(
        "reference_n_effective",
        "基準値の有効標本サイズ",
        "基準値の有効標本サイズ。",
        _N_FMT,
        "Effective size of the reference.",
    ),
    Column(
        "difference",
        "基準値との差",
        "値 − 比較の基準値（検定した差）。",
        _DIFF_FMT,
        "Value minus reference, as tested (points).",
    ),
    Column(
        "difference_lower_ci95",
        f"基準値との差の{LEVEL}%信頼区間 下限",
        f"差の{LEVEL}%信頼区間（Newcombe のハイブリッド・スコア区間）の下限。",
        _DIFF_FMT,
        f"Lower bound of the difference's {LEVEL}% Newcombe interval.",
    ),
    Column(
        "difference_upper_ci95",
        f"基準値との差の{LEVEL}%信頼区間 上限",
        f"差の{LEVEL}%信頼区間の上限。",
        _DIFF_FMT,
        f"Upper bound of the difference's {LEVEL}% interval.",
    ),
    Column(
        "p_value",
        "全国との比較のp値",
        "Fisher の正確検定（両側）の p 値。Fisher の検定で判定した行のみ（方法コードが fisher・fisher_rest）。",
        _P_FMT,
        "Two-sided p of Fisher's exact test, only where it decided.",
    ),
    Column(
        "previous_value",
        "前回値",
        "前回調査（前回調査年）の同じ地域・指標・内訳の値。",
        _SHARE_FMT,
        "The previous round's value.",
    ),
    Column(
        "previous_n_effective",
        "前回の有効標本サイズ",
        "前回値の有効標本サイズ。",
        _N_FMT,
        "The previous round's effective size.",
    ),
    Column(
        "change_difference",
        "前回との差",
        "値 − 前回値（検定した差）。",
        _DIFF_FMT,
        "Value minus previous value (points).",
    ),
    Column(
        "change_lower_ci95",
        f"前回との差の{LEVEL}%信頼区間 下限",
        f"前回との差の{LEVEL}% Newcombe 区間の下限。",
        _DIFF_FMT,
        f"Lower bound of the change's {LEVEL}% interval.",
    ),
    Column(
        "change_upper_ci95",
        f"前回との差の{LEVEL}%信頼区間 上限",
        f"前回との差の{LEVEL}%区間の上限。",
        _DIFF_FMT,
        f"Upper bound of the change's {LEVEL}% interval.",
    ),
    Column(
        "change_p_value",
        "前回比のp値",
        "前回比の Fisher の正確検定の p 値（前回比の方法コードが fisher の行のみ）。",
        _P_FMT,
        "Fisher's p of the change, only where Fisher decided.",
    ),
    Column(
        "estimate_method_ja",
        "表示する推計の方法",
        "報告書・サイトが表示する推計の方法（直接推計・プール推計・モデル推計）。",
        "文字",
        "The estimate the reports and the site show (Japanese).",
    ),
    Column(
        "estimate_method",
        "表示する推計の方法コード",
        "方法のコード: direct、pooled、model。",
        "英字コード",
        "Leading estimate code: direct, pooled, model.",
    ),
    Column(
        "lead_value",
        "表示する推計値",
        "報告書・サイトが表示する推計値（direct なら値と同じ）。非表示の行にもプール推計・モデル推計の値は載る。",
        _SHARE_FMT,
        "The value the reports show (= value when direct); pooled or model values also on suppressed rows.",
    ),
    Column(
        "lead_lower_ci95",
        f"表示する推計値の{LEVEL}%区間 下限",
        f"表示する推計値の{LEVEL}%区間の下限。",
        _SHARE_FMT,
        f"Its {LEVEL}% interval, lower bound.",
    ),
    Column(
        "lead_upper_ci95",
        f"表示する推計値の{LEVEL}%区間 上限",
        f"表示する推計値の{LEVEL}%区間の上限。",
        _SHARE_FMT,
        f"Its {LEVEL}% interval, upper bound.",
    ),
    Column(
        "lead_cv",
        "表示する推計値の変動係数",
        "変動係数（標準誤差 ÷ 推計値）。",
        f"比（小数第{CV_DECIMALS}位）",
        "Coefficient of variation (standard error / estimate).",
    ),
    Column(
        "lead_years",
        "プール推計の期間",
        "プール推計で合わせた調査年（例: 2022-2024）。",
        "文字（西暦-西暦）",
        "Rounds pooled (e.g. 2022-2024).",
    ),
)
COLUMN_BY_CODE = {c.code: c for c in COLUMNS}
HEADER_JA = {c.code: c.ja for c in COLUMNS}  # code -> Japanese header
# The dictionary's own columns (it is a table with the same two header rows).
DICTIONARY_COLUMNS = (
    ("列名", "header_ja"),
    ("列コード", "code"),
    ("内容", "meaning"),
    ("単位・形式", "format"),
    ("説明（英語）", "meaning_en"),
)
DICTIONARY_FILE = "data-dictionary.csv"
