"""Shipped reference data (data/reference/*.csv): prefectures, published national and UK results."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from pipelines.domain.config import REFERENCE_DIR
from pipelines.domain.errors import check_pref_code


@lru_cache(maxsize=1)
def prefectures() -> pd.DataFrame:
    """The 47 prefectures in JIS order: pref_code, name_ja, name_kana, romaji, region,
    population_2020, tile_x, tile_y, source."""
    df = pd.read_csv(REFERENCE_DIR / "prefectures.csv", encoding="utf-8")
    return df.sort_values("pref_code").reset_index(drop=True)


def area_code(pref_code: int) -> str:
    """'00' for national (0), '01'..'47' for prefectures."""
    return f"{int(pref_code):02d}"


@lru_cache(maxsize=1)
def _names() -> dict[int, tuple[str, str]]:
    """{pref_code: (Japanese name, romaji)} of the 47 prefectures."""
    return {int(r.pref_code): (str(r.name_ja), str(r.romaji)) for r in prefectures().itertuples()}


def pref_name(pref_code: int) -> str:
    if int(pref_code) == 0:
        return "全国"
    return _names()[check_pref_code(pref_code, "pref_code")][0]


def pref_slug(pref_code: int) -> str:
    """Deterministic output stem, e.g. 13 -> '13-tokyo'; 0 -> 'national'."""
    if int(pref_code) == 0:
        return "national"
    code = check_pref_code(pref_code, "pref_code")
    return f"{code:02d}-{_names()[code][1].lower()}"


# 2020 census: total 126,146,099; aged 0-14 15,031,602; age 15 about 1.07 million.
# (126,146,099 - 15,031,602 - 1,070,000) / 126,146,099 = 0.8723. An estimate, stated in the
# catalogue, the notes sheet and every programme row's note.
POP_16PLUS_FACTOR = 0.8723
