"""The one method statement: the text of every rule, made from the settings and functions that
apply it.

Reports, the site's index and methodology page and the downloads' notes sheets all print these
texts; none of them states a rule in words of its own. Each rule text is built from the same
constants the computation reads (``config.CONFIDENCE_LEVEL``, ``config.MIN_BASE``,
``config.REFERENCE_BASE``, ``stats.EXPECTED_MIN``, ``config.DEFAULT_DEFF``), so changing a setting
changes the statement with the result. ``tests/test_method_statement.py`` reads the statement shown
on the published pages, takes the rule's parameters from those words, recomputes every published
label with an independent implementation and fails when one disagrees.

A stage-level module (it states the audit's rule, ``RULE_JA``); no files, no warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.domain import config, stats
from pipelines.domain.config import confidence_percent  # (also a name of this module: site, forks)

__all__ = [
    "Rule",
    "rules",
    "comparison_short",
    "citations",
    "rule",
    "text",
    "alpha_percent",
    "confidence_percent",
    "MULTIPLICITY_METHOD",
]

# The adjustment used for the national progress table (evaluation.progress_table).
MULTIPLICITY_METHOD = "holm"


@dataclass(frozen=True)
class Rule:
    key: str
    title_ja: str
    title_en: str
    text_ja: str
    text_en: str


# The disclosure audit's rule (pipelines/domain/audit.py applies it): what is suppressed and why.
RULE_JA = (
    f"集計対象が{config.MIN_BASE}人未満の値は非表示とし、その回答者数も公表しません。"
    "さらに、公表するすべての値（男女・年齢階級・英国比較用の年齢区分・一人暮らしの内訳、全体、"
    "回答の分布）の間の加減算（例：50～59歳＋60～69歳＋70～79歳＋80歳以上＝50～64歳＋65～74歳＋75歳以上）"
    "を線形計画法で検査し、非表示のセルの回答者数・該当者数・非該当者数のいずれも、"
    f"真の値の±{config.PROTECTION_ABS}人または回答者数の±{int(config.PROTECTION_REL * 100)}%（大きい方）"
    "（追加で非表示にしたセルは幅3人）より狭い範囲に絞り込めなくなるまで、回答者数の少ないセルから順に追加で非表示にしています（二次秘匿）。"
    "全国調査から算出した都道府県の値は、全国値との差し引きで非表示のセルが分からないよう、"
    f"非表示のセルごとに他に{config.MIN_BASE}人以上の非公表の回答者がいるようにしています。"
)
RULE_EN = (
    f"Values on an unweighted base under {config.MIN_BASE} are suppressed and their bases are not "
    "published. Every relation between published cells (sex, age bands, UK age bands, living "
    "alone, totals, answer distributions; e.g. 50-59 + 60-69 + 70-79 + 80+ = 50-64 + 65-74 + 75+) "
    "is audited by linear programming, and further cells are suppressed, smallest base first, "
    "until no suppressed cell's base, count or complement can be narrowed to within "
    f"±max({config.PROTECTION_ABS}, {int(config.PROTECTION_REL * 100)}% of its base) of its true value "
    f"(an interval at least {config.PROTECTION_ABS} wide for a cell hidden only to protect others)."
)


def alpha_percent() -> str:
    """'5' for a confidence level of 0.95."""
    return f"{round((1 - config.CONFIDENCE_LEVEL) * 100, 10):g}"


def _intervals() -> Rule:
    c = confidence_percent()
    return Rule(
        "intervals",
        f"{c}%信頼区間",
        "Confidence intervals",
        f"{c}%信頼区間は Wilson のスコア区間です。標本サイズには、有効標本サイズ n_eff = (Σw)² / Σw²（Kish）を"
        "調査の設計効果で割った値を使います（ウエイトが等しく設計効果が1なら通常の Wilson 区間）。",
        f"{c}% Wilson score interval on the effective sample size: Kish n_eff = (Σw)²/Σw² divided by the "
        "survey's design effect.",
    )


def _design_effect() -> Rule:
    d = f"{config.DEFAULT_DEFF:g}"
    return Rule(
        "design_effect",
        "設計効果",
        "Design effect",
        "調査ごとの設計効果で有効標本サイズを割り、区間と検定を層化・多段抽出に見合う幅にします。"
        "個票に層と第1次抽出単位（調査地点）の列があれば、設計効果はテイラー線形化による分散から調査・指標ごとに推定します。"
        f"その列がない調査には既定値 {d} を使います（層化2段抽出の意識調査で一般的な大きさを保守的にとったもの）。"
        "既定値を変えた場合の判定数の変化は品質ページに示します。",
        "Intervals and tests divide n_eff by the survey's design effect: estimated per survey and "
        "indicator by Taylor linearisation when the microdata carry stratum and PSU columns, else the "
        f"conservative default {d}. The quality page shows how the flags change with the design effect.",
    )


def _comparison() -> Rule:
    c, a, e = confidence_percent(), alpha_percent(), f"{stats.EXPECTED_MIN:g}"
    return Rule(
        "comparison",
        "全国との比較",
        "Comparison with national",
        f"県の値と比較の基準との差について {c}% 区間（Newcombe のハイブリッド・スコア区間、有効標本サイズ）を求め、"
        "0を含まなければ「良い」「悪い」（評価の方向がない指標は「高い」「低い」）、0を含めば「同程度」とします。"
        f"2×2表の期待度数のいずれかが {e} 未満のときは Fisher の正確検定（両側、有意水準 {a}%）で判定します。"
        "比較の基準は、全国調査の県内回答者による値では「当該県を除く全国」（全国の標本と重なるため）、"
        "県の独自調査による値では全国値（独立な標本、両方の不確かさを含む）です。"
        "判定は差の区間によるもので、県の信頼区間が全国値を含むかどうかによるものではありません"
        "（そのため、県の区間が全国値を含んでいても差があると判定されることや、その逆があります）。"
        "判定には公表値（小数第1位に丸めた割合と有効標本サイズ）を使うため、ダウンロードの各行（基準の値と有効標本サイズ、"
        "差とその区間）から同じ判定を再現できます。",
        f"The {c}% Newcombe hybrid score interval of the difference between the area and its reference "
        f"(effective sizes) decides better/worse (higher/lower) when it excludes 0; Fisher's exact test "
        f"(two-sided, {a}%) when an expected count is below {e}. Reference: the rest of the nation for "
        "an area estimated from the national survey's respondents (overlapping samples), the national "
        "estimate for an area's own survey (independent). Not the overlap of the area's interval with "
        "the national value. Tests use the published figures (shares and effective sizes to 0.1), so each "
        "download row (with the reference, its n_eff and the difference interval) reproduces its label.",
    )


def _change() -> Rule:
    c = confidence_percent()
    return Rule(
        "change",
        "前回からの変化",
        "Change since the previous round",
        f"前回の調査回の値との差について、全国との比較と同じ方法（{c}% の Newcombe 区間、期待度数が小さいときは"
        "Fisher の正確検定、独立な標本）で判定します。評価の方向がある指標は「改善」「悪化」、ない指標は「増加」「減少」、"
        "差が有意でなければ「変化なし」です。前回と出典が異なる場合（全国調査の県内回答者と県の独自調査）は"
        "検定せず、両方の値を示します。",
        f"The same test ({c}% Newcombe interval, Fisher's exact test for small expected counts, "
        "independent samples) against the previous round: improved/worsened where the indicator has a "
        "direction of good, increase/decrease otherwise, no change when not significant. A change of "
        "source (national subsample vs own survey) is shown, not tested.",
    )


def _multiplicity() -> Rule:
    a = alpha_percent()
    return Rule(
        "multiplicity",
        "多重比較",
        "Multiple comparisons",
        f"多くの指標・区分を有意水準 {a}% でそれぞれ検定するため、本当は差がなくても検定数の約 {a}% は偶然「差あり」と"
        "判定されます。各報告書は検定数と、偶然に期待される判定数を実際の判定数と並べて示します。"
        "全国の進捗表（基準年から最新年）では、基本方針ごとに Holm 法で p 値を調整した判定も示します。",
        f"Each test is at {a}%: about {a}% of tests flag a difference by chance. Reports show the number "
        "of tests and the expected chance flags beside the observed; the national progress table also "
        "gives Holm-adjusted results within each basic policy.",
    )


EXAMPLE_N = 52  # the base of the suppression rule's example interval (0 of 52: 0.0-6.9% at 95%)


def _suppression() -> Rule:
    lo, hi = config.MIN_BASE, config.REFERENCE_BASE
    return Rule(
        "suppression",
        "秘匿と参考値",
        "Suppression and reference values",
        RULE_JA
        + f"ウエイトによる有効標本サイズ（Kish の n_eff、設計効果で割る前）が {lo} 未満の値も同様に非表示（x）です。{lo}～{hi - 1} 人の値は参考値（※）です。"
        f"集計対象が {hi} 人未満で割合がちょうど0%または100%の値も参考値として、{confidence_percent()}%信頼区間"
        f"（例：{EXAMPLE_N}人中0人なら 0.0～{stats.wilson_interval(0.0, EXAMPLE_N)[1] * 100:.1f}%）とともに示します"
        "（標本にたまたま該当者がいない・全員が該当するだけで、母集団で0%・100%という意味ではありません）。"
        "割合は小数第1位に丸めて公表します。",
        f"Values on an unweighted base below {lo} (or a Kish n_eff, before the design effect, below {lo}) are suppressed (x), "
        f"their base unpublished; {lo}-{hi - 1} are reference values (※). An exact 0% or 100% on a base "
        f"below {hi} is a reference value shown with its interval. " + RULE_EN + " Shares are published to 0.1.",
    )


def _weighting() -> Rule:
    return Rule(
        "weighting",
        "分母とウエイト",
        "Denominators and weights",
        "割合は無回答を含む全回答者を分母とします（部分集団を分母とする指標はその旨を記載）。ウエイトがある調査は重み付けした割合です。"
        "全国調査と県の独自調査でウエイトの有無や作り方が異なる場合（同梱の合成データでは全国調査はウエイトなし、"
        "独自調査はウエイトあり）、独自調査の県と全国の差の一部は重み付けの違いによる可能性があります。",
        "Shares use all respondents (non-response included) unless a sub-population is stated; weighted "
        "where weights are given. Where one survey is weighted and the other is not, part of a difference "
        "may be the weighting.",
    )


def _estimates() -> Rule:

    cv = f"{config.LEAD_CV_MAX * 100:g}"
    c = confidence_percent()
    k = config.POOL_ROUNDS
    lo = config.MIN_BASE
    z = f"{stats.z_critical(config.CONFIDENCE_LEVEL):.2f}"
    return Rule(
        "estimates",
        "推計の方法（直接推計・プール推計・モデル推計）",
        "Estimates: direct, pooled, model-based",
        "各セルには、次の順で最初に当てはまる推計を表示し、推計方法の欄に示します。"
        f"(1) 直接推計：その年の回答から直接求めた値が公表でき、変動係数（標準誤差÷値）が {cv}% 以下のとき。"
        f"(2) {k}年プール推計（例：2022–2024年平均）：県の内訳（性別・年齢・一人暮らし）で、単年の値が非表示のとき、"
        f"直近{k}回の全国調査の当該県回答者を合わせて求めた値。{k}回のどの回にもその内訳の値が公表されておらず、"
        f"合わせた集計対象が {lo} 人以上で、秘匿の監査（単年と同じ方法）を通った値だけを公表し、合わせた回答者数は公表しません。"
        f"変動係数が {cv}% 以下のときに表示します。"
        "(3) モデル推計：Fay–Herriot の地域レベルモデル（REML 推定）による推計（EBLUP）。"
        "割合を逆正弦平方根変換 asin(√p) した尺度で当てはめ（標本分散は 1/(4 n)、n は直接推計の区間と同じ有効標本サイズ÷設計効果）、"
        "偏りを補正して p = (1 − cos(2θ)·exp(−2s²))/2 で割合に戻します（θ は変換尺度の推計値、s² はその条件付き分散）。"
        f"{c}%区間は変換尺度の推計値 ± {z}×√MSE を sin² で戻したもので、MSE は Prasad–Rao／Datta–Lahiri の方法によります。"
        "総数のモデルの説明変数は都道府県の人口の対数（総務省統計局「令和2年国勢調査」、47都道府県で標準化）、"
        "内訳のモデルの説明変数は、その県の総数のモデル推計に全国の内訳と総数の差を加えた値です（その不確かさも MSE に含めます）。"
        "47都道府県の人口で重み付けした平均が全国の直接推計に一致するよう比率で調整（ベンチマーク）します"
        "（内訳の重みにも県の総人口を使う近似です）。"
        "モデルは直接推計が公表されるセルだけで当てはめ、非表示のセルにはそのセルの回答を使わない合成推計（回帰による予測）を表示するため、"
        "モデル推計から非表示の値は分かりません。"
        "モデル推計は回答者数の集計ではないため回答者数を持たず、秘匿の監査は回答者数の集計（直接推計・プール推計）に適用します。"
        "モデルを当てはめられないときは、変動係数が閾値を超えるプール推計または直接推計を表示します。"
        "全国の値は常に直接推計です。全国との比較と前回からの変化の判定は直接推計についてだけ行い、プール推計・モデル推計には判定を付けません。"
        "係数・地域分散・縮小係数・標準化残差は品質ページに示します。",
        f"Each cell shows the first that applies, named in the method column: (1) the direct estimate "
        f"when published with a coefficient of variation (SE / value) of at most {cv}%; (2) for a "
        f"prefecture's breakdown (sex, age, living alone) whose single-round value is suppressed, the "
        f"estimate pooled over the latest {k} national rounds (e.g. 2022–2024 average) when no pooled "
        f"round publishes that cell, the pooled base is at least {lo} and the pooled cells pass the same "
        f"disclosure audit (pooled base not published), with a CV of at most {cv}%; (3) the model-based "
        "estimate: an area-level Fay–Herriot EBLUP fitted by REML on the arcsine square-root scale "
        "(sampling variance 1/(4n), n the direct intervals' n_eff / deff), back-transformed with the bias "
        f"correction (1 − cos 2θ·exp(−2s²))/2, {c}% interval from the Prasad–Rao/Datta–Lahiri MSE "
        "back-transformed by sin²; covariate: log population (2020 census), standardised; breakdown "
        "models use the area's model-based total shifted by the national breakdown-vs-total "
        "difference (its error included in the MSE); ratio-benchmarked to the national direct "
        "estimate with population weights. Fitted on published cells only: a suppressed cell gets "
        "the synthetic prediction, which uses none of its data. Model values are not counts: the "
        "disclosure audit applies to counts. National figures are direct; comparisons and changes "
        "are judged on direct estimates only.",
    )


def _uk() -> Rule:
    return Rule(
        "uk",
        "イングランドとの比較",
        "England",
        "イングランドの値（英国デジタル・文化・メディア・スポーツ省 Community Life Survey）は、選択肢が1対1で対応する"
        "直接質問についてのみ参考として示します。調査方法が異なるため、有意差の判定はしません。"
        "UCLA 孤独感尺度は日本が4択（3～12点）、英国統計局が3択（3～9点）のため比較しません。",
        "England (DCMS Community Life Survey): the direct question only, as a reference; methods differ, "
        "so no significance test. UCLA scores are not compared (4-option vs 3-option items).",
    )


_BUILDERS = (_intervals, _design_effect, _comparison, _change, _multiplicity, _suppression, _weighting, _estimates, _uk)


def comparison_short() -> str:
    """One sentence of the comparison rule for page footers and map captions."""
    return (
        f"全国との比較は、県の値と基準（全国調査の県内回答者なら当該県を除く全国、県の独自調査なら全国値）との差の "
        f"{confidence_percent()}% 区間（Newcombe、期待度数 {stats.EXPECTED_MIN:g} 未満は Fisher の正確検定）による判定です"
    )


def rules() -> list[Rule]:
    """Every rule, in reading order, made from the current settings."""
    return [b() for b in _BUILDERS]


def rule(key: str) -> Rule:
    for r in rules():
        if r.key == key:
            return r
    raise KeyError(key)


def text(key: str) -> str:
    """The Japanese text of one rule."""
    return rule(key).text_ja


# The official releases the published figures come from (methodology page, downloads' notes): the
# publisher, the title and the date, as a citizen would look them up. Figures transcribed from a talk
# are cited as the talk.
CITATIONS: tuple[tuple[str, str], ...] = (
    (
        "全国調査 2021年（令和3年）",
        "内閣官房孤独・孤立対策担当室「人々のつながりに関する基礎調査（令和3年）調査結果の概要」（2022年4月8日公表）",
    ),
    (
        "全国調査 2022年（令和4年）",
        "内閣官房孤独・孤立対策担当室「人々のつながりに関する基礎調査（令和4年）調査結果の概要」（2023年3月31日公表）",
    ),
    (
        "全国調査 2023年（令和5年）",
        "内閣官房孤独・孤立対策担当室「人々のつながりに関する基礎調査（令和5年）調査結果の概要」（2024年3月29日公表）",
    ),
    (
        "全国調査 2024年（令和6年）",
        "内閣府孤独・孤立対策推進室「人々のつながりに関する基礎調査（令和6年）調査結果の概要」（2025年4月25日公表）",
    ),
    ("人口（都道府県別）", "総務省統計局「令和2年国勢調査」人口等基本集計（2021年11月30日公表）"),
    ("重点計画", "孤独・孤立対策推進本部「孤独・孤立対策重点計画」（2024年6月11日決定）"),
    ("法律", "孤独・孤立対策推進法（令和5年法律第45号、2024年4月1日施行）"),
    (
        "イングランド 2024/25年",
        "Department for Culture, Media and Sport (DCMS), Community Life Survey 2024/25: Annual Publication (2025)",
    ),
    (
        "イングランド 2023/24年",
        "Department for Culture, Media and Sport (DCMS), Community Life Survey 2023/24: Annual Publication (2024)",
    ),
    (
        "イングランド 2021/22年（回答の分布）",
        "大西連「孤独・孤立対策の現在とこれから 地域での取り組みの推進の視点から」講演資料"
        "（Community Life Survey 2021/22 の図。「ほとんどない」は他の区分から算出）",
    ),
)


def citations() -> list[tuple[str, str]]:
    """(figure, release) pairs: the official publications behind the published figures."""
    return list(CITATIONS)
