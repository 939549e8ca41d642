"""Аналитика 360: the market analysis of one agency object, as pure functions.

This module has a twin in JavaScript (`gas/src/analysis.js`, run by Apps Script). The two must agree
exactly: the shared vectors in `gas/test/vectors/` are checked against both. Any change here is made
there too. The rules both twins follow:

Parsing (sheet values are strings typed by staff)
- Numbers: the characters space, tab, CR, LF, U+00A0, U+2007, U+2009, U+202F and `'` are removed, then one
  trailing unit (`₽`, `руб`, `руб.`, `р`, `р.`, `rub`, `м2`, `м²`, `кв.м`, `кв.м.`; case-insensitive).
  With both `,` and `.` present, the later one is the decimal mark and the other is removed; a single `,`
  is the decimal mark; several `,` or several `.` are thousands separators. What is left must match
  `^[+-]?[0-9]+(\\.[0-9]+)?$`, else the value is missing.
- Dates: `YYYY-MM-DD` (optionally followed by `T` or a space and a time) or `DD.MM.YYYY` (optionally
  followed by a space or comma and a time); years 1900-2100, real calendar days. A date after `today` is
  missing. A `removed_at` before `listed_at` is missing.
- Text (type, district): trimmed, inner whitespace folded, lower-cased, `ё` read as `е`.
- Rooms: a whole number 0-20, or `студия` (0). Anything else is missing.

A market listing is usable when its type is not empty and its area and price are sane (the same bounds
as the object, below). A usable listing counts in the *recent pool* unless it has a removal date more
than 180 days before `today`.

Comparables: listings of the recent pool with the object's type and the first criteria level of the
ladder below that yields at least 5 listings; when none does, the last level (the widest). The area
bounds are `area * low` and `area * high`, inclusive.

    level 1: same district, same rooms, area × 0.85 … 1.15  (±15%)
    level 2: same district, same rooms, area × 0.7 … 1.3    (±30%)
    level 3: same district, any rooms,  area × 0.7 … 1.3
    level 4: whole city,    same rooms, area × 0.7 … 1.3
    level 5: whole city,    any rooms,  area × 0.7 … 1.3

An object with no district matches no district; an object with no rooms matches no rooms.

Figures (computed on unrounded floats; rounded only when stored in the report)
- price per m² = price / area.
- Quantiles: linear interpolation between closest ranks of the ascending values (numpy's default):
  pos = (n − 1) × q, lo = floor(pos), hi = min(lo + 1, n − 1), value = v[lo] + (v[hi] − v[lo]) × (pos − lo).
  Median = quantile 0.5, quartiles = 0.25 and 0.75.
- Price percentile = (count below + 0.5 × count equal) / n × 100 over the comparables' price per m².
- Difference from the median = (object − median) / median × 100.
- Trend: the 6 calendar months ending with `today`'s month; each month holds the comparables whose
  `listed_at` falls in it; its value is their median price per m², missing when the month has fewer than
  3 of them (one or two listings are noise, not a market level).
  Change = (last value − first value) / first value × 100 over the first and last months that have a
  value; missing when fewer than two months have one.
- Days on market of a comparable with a `listed_at`: (removed_at or today) − listed_at. Typical = median.
  `sold_count` counts comparables with a `removed_at`.
- Histogram: 8 equal bins between the lowest and the highest comparable price per m²; a value goes to bin
  min(floor((v − min) / (max − min) × 8), 7); edge i = min + (max − min) × i / 8. One bin when all are equal.
- Recommendation (needs at least 3 comparables, else `insufficient`): above the upper quartile → `lower`,
  target median … upper quartile; below the lower quartile → `raise`, target lower quartile … median;
  otherwise `keep`, target lower … upper quartile, except when the price is above the median and the
  object has been on sale more than 1.5 × the typical days on market → `lower`, target lower quartile …
  median. A target price is price-per-m² × area.

Object bounds: area 8-2000 m², price 100 000 ₽ - 50 billion ₽, price per m² 10 000 - 10 000 000 ₽;
outside them (or no type) the object raises InvalidObjectData; an unknown code raises ObjectNotFound.

Rounding: half away from zero, then −0 becomes 0. Rubles and days to whole numbers, target prices to
10 000 ₽, percents and area to one decimal.

AI narrative check: every number in the text (`5 200 000`, `5,2 млн`, `709 тыс.`, `12,5%`; the unit after
the second number of a range also applies to the first; the report's own dates are ignored) must equal,
in absolute value and within the rounding its written precision implies, one of the report's figures
(or 6 months, the 25/50/75 quartile labels, the years shown, 100 − percentile). An empty text, or one
longer than 1500 characters, is not used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from enum import StrEnum
from typing import Any

MIN_COMPARABLES = 5
MIN_FOR_RECOMMENDATION = 3
RECENT_DAYS = 180
TREND_MONTHS = 6
MIN_TREND_COUNT = 3
HISTOGRAM_BINS = 8
SLOW_SALE_FACTOR = 1.5
TREND_NOTABLE_PCT = 2.0
TARGET_STEP = 10_000
MIN_AREA = 8.0
MAX_AREA = 2000.0
MIN_PRICE = 100_000.0
MAX_PRICE = 50_000_000_000.0
MIN_PRICE_PER_M2 = 10_000.0
MAX_PRICE_PER_M2 = 10_000_000.0
NARRATIVE_MAX_CHARS = 1500
SUMMARY_MAX_CHARS = 3500

NBSP = "\u00a0"
MINUS = "\u2212"

OBJECT_CODE = "code"
OBJECT_TYPE = "type"
OBJECT_DISTRICT = "district"
OBJECT_ADDRESS = "address"
OBJECT_ROOMS = "rooms"
OBJECT_AREA = "area"
OBJECT_PRICE = "price"
OBJECT_LISTED_AT = "listed_at"
OBJECT_STATUS = "status"
MARKET_REMOVED_AT = "removed_at"


class Recommendation(StrEnum):
    """What to do with the asking price."""

    LOWER = "lower"
    KEEP = "keep"
    RAISE = "raise"
    INSUFFICIENT = "insufficient"


RECOMMENDATION_LABELS: dict[str, str] = {
    Recommendation.LOWER: "снизить цену",
    Recommendation.KEEP: "сохранить цену",
    Recommendation.RAISE: "можно поднять цену",
    Recommendation.INSUFFICIENT: "не сформирована — мало данных",
}


class AnalysisError(Exception):
    """The analysis cannot be made; `message` is the Russian text shown to the partner."""

    kind = "analysis_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ObjectNotFound(AnalysisError):
    """No row of Объекты has the requested code."""

    kind = "object_not_found"


class InvalidObjectData(AnalysisError):
    """The object's row is there but its type, area or price is missing or absurd."""

    kind = "invalid_object"


@dataclass(frozen=True)
class CriteriaLevel:
    """One step of the widening ladder for the comparable set."""

    level: int
    same_district: bool
    same_rooms: bool
    area_low: float
    area_high: float
    area_tolerance_pct: int
    description: str


LADDER: tuple[CriteriaLevel, ...] = (
    CriteriaLevel(1, True, True, 0.85, 1.15, 15, "тот же тип, район и число комнат, площадь ±15%"),
    CriteriaLevel(2, True, True, 0.7, 1.3, 30, "тот же тип, район и число комнат, площадь ±30%"),
    CriteriaLevel(3, True, False, 0.7, 1.3, 30, "тот же тип и район, любое число комнат, площадь ±30%"),
    CriteriaLevel(4, False, True, 0.7, 1.3, 30, "тот же тип и число комнат по всему городу, площадь ±30%"),
    CriteriaLevel(5, False, False, 0.7, 1.3, 30, "тот же тип по всему городу, любое число комнат, площадь ±30%"),
)


@dataclass(frozen=True)
class TrendPoint:
    """One month of the trend: `YYYY-MM`, the comparables' median price per m² listed that month, count."""

    month: str
    median_ppm2: int | None
    count: int


@dataclass(frozen=True)
class HistogramBin:
    """Comparables whose price per m² falls in [low, high] (the last bin includes its high edge)."""

    low: int
    high: int
    count: int


@dataclass(frozen=True)
class Report:
    """Every figure of one analysis; identical, field by field, to the JS twin's result."""

    object_code: str
    object_type: str
    district: str
    address: str
    status: str
    rooms: int | None
    area: float
    price: int
    price_per_m2: int
    listed_at: str | None
    days_on_market: int | None
    today: str
    criteria_level: int
    criteria: str
    same_district: bool
    same_rooms: bool
    area_tolerance_pct: int
    criteria_note: str | None
    comparables_count: int
    market_listings: int
    invalid_listings: int
    median_ppm2: int | None
    q1_ppm2: int | None
    q3_ppm2: int | None
    min_ppm2: int | None
    max_ppm2: int | None
    median_price: int | None
    price_percentile: float | None
    diff_from_median_pct: float | None
    trend: tuple[TrendPoint, ...]
    trend_change_pct: float | None
    typical_days_on_market: int | None
    sold_count: int
    histogram: tuple[HistogramBin, ...]
    recommendation: Recommendation
    target_price_low: int | None
    target_price_high: int | None
    reasoning: tuple[str, ...]


@dataclass(frozen=True)
class _Listing:
    type: str
    district: str
    rooms: int | None
    area: float
    price: float
    ppm2: float
    listed: _Day | None
    removed: _Day | None


@dataclass(frozen=True)
class _Day:
    """A calendar date as an ordinal (for differences) plus its year and month (for grouping)."""

    ordinal: int
    year: int
    month: int

    def iso(self) -> str:
        return date.fromordinal(self.ordinal).isoformat()


# ---------------------------------------------------------------- rounding and formatting


def round_half_away(x: float) -> int:
    """Round to a whole number, halves away from zero (the JS twin does the same)."""
    r = math.floor(abs(x) + 0.5)
    return int(-r if x < 0 else r)


def round1(x: float) -> float:
    """Round to one decimal, halves away from zero, never −0."""
    r = math.floor(abs(x) * 10 + 0.5) / 10
    return (-r if x < 0 else r) + 0.0


def fmt_int(n: int) -> str:
    """`5200000` → `5 200 000` with no-break spaces; a minus sign for negatives."""
    digits = str(abs(n))
    groups: list[str] = []
    while len(digits) > 3:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    groups.insert(0, digits)
    return (MINUS if n < 0 else "") + NBSP.join(groups)


def fmt_dec(x: float) -> str:
    """One-decimal number with a comma: `12.5` → `12,5`, `3.0` → `3`."""
    tenths = round_half_away(x * 10)
    sign = MINUS if tenths < 0 else ""
    whole, frac = divmod(abs(tenths), 10)
    return f"{sign}{fmt_int(whole)}" + (f",{frac}" if frac else "")


def fmt_signed_pct(x: float) -> str:
    """`3.1` → `+3,1%`, `-2.0` → `−2%`."""
    return ("+" if x > 0 else "") + fmt_dec(x) + "%"


def fmt_rub(n: int) -> str:
    """`5200000` → `5 200 000 ₽`."""
    return f"{fmt_int(n)}{NBSP}₽"


def fmt_date_ru(iso: str) -> str:
    """`2026-11-24` → `24.11.2026`."""
    return f"{iso[8:10]}.{iso[5:7]}.{iso[0:4]}"


def plural(n: int, one: str, few: str, many: str) -> str:
    """The Russian noun form for n: 1 объявление, 2 объявления, 5 объявлений."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


MONTHS_RU = (
    "январь",
    "февраль",
    "март",
    "апрель",
    "май",
    "июнь",
    "июль",
    "август",
    "сентябрь",
    "октябрь",
    "ноябрь",
    "декабрь",
)


def month_label(month: str) -> str:
    """`2026-06` → `июнь 2026`."""
    return f"{MONTHS_RU[int(month[5:7]) - 1]} {month[0:4]}"


# ---------------------------------------------------------------- parsing

_NUMBER_JUNK = re.compile("[ \t\r\n\u00a0\u2007\u2009\u202f']")
_NUMBER_UNIT = re.compile("(₽|руб\\.?|р\\.?|rub|м2|м²|кв\\.м\\.?)$", re.IGNORECASE)
_NUMBER_SHAPE = re.compile("^[+-]?[0-9]+(\\.[0-9]+)?$")
_ISO_DATE = re.compile("^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})([T ].*)?$")
_RU_DATE = re.compile("^([0-9]{1,2})\\.([0-9]{1,2})\\.([0-9]{4})([ ,].*)?$")
_SPACES = re.compile("\\s+")


def parse_number(value: object) -> float | None:
    """A staff-typed number (`5 000 000`, `5000000,00`, `45,5 м²`) or None."""
    if value is None:
        return None
    s = _NUMBER_JUNK.sub("", str(value))
    s = _NUMBER_UNIT.sub("", s)
    comma, dot = s.rfind(","), s.rfind(".")
    if comma >= 0 and dot >= 0:
        # The later mark is the decimal one: `5.000.000,50` and `5,000,000.50`.
        s = s.replace(".", "").replace(",", ".") if comma > dot else s.replace(",", "")
    elif s.count(",") == 1:
        s = s.replace(",", ".")
    elif s.count(",") > 1:
        s = s.replace(",", "")
    elif s.count(".") > 1:
        s = s.replace(".", "")
    if not _NUMBER_SHAPE.match(s):
        return None
    return float(s)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _parse_day(value: object) -> _Day | None:
    if value is None:
        return None
    s = str(value).strip()
    m = _ISO_DATE.match(s)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        m = _RU_DATE.match(s)
        if not m:
            return None
        d, mo, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1900 <= y <= 2100 and 1 <= mo <= 12 and 1 <= d <= _days_in_month(y, mo)):
        return None
    return _Day(date(y, mo, d).toordinal(), y, mo)


def parse_date(value: object) -> date | None:
    """A staff-typed date (`2026-05-01`, `01.05.2026`, with or without a time) or None."""
    day = _parse_day(value)
    return None if day is None else date.fromordinal(day.ordinal)


def norm_text(value: object) -> str:
    """How type and district are compared: trimmed, spaces folded, lower case, ё as е."""
    if value is None:
        return ""
    return _SPACES.sub(" ", str(value)).strip().lower().replace("ё", "е")


def parse_rooms(value: object) -> int | None:
    """Rooms as a whole number 0-20 (`студия` is 0) or None."""
    text = norm_text(value)
    if text in ("студия", "студ", "studio"):
        return 0
    n = parse_number(text)
    if n is None or n != math.floor(n) or not 0 <= n <= 20:
        return None
    return int(n)


def _sane(area: float | None, price: float | None) -> bool:
    if area is None or price is None or not MIN_AREA <= area <= MAX_AREA:
        return False
    if not MIN_PRICE <= price <= MAX_PRICE:
        return False
    return MIN_PRICE_PER_M2 <= price / area <= MAX_PRICE_PER_M2


def _row_getter(row: Mapping[str, object]) -> Callable[[str], str]:
    """Reads a row by header, tolerating case and stray spaces in the header text."""
    folded = {" ".join(str(k).split()).lower(): v for k, v in row.items()}

    def get(name: str) -> str:
        value = folded.get(name)
        return "" if value is None else str(value)

    return get


# ---------------------------------------------------------------- statistics


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) over ascending values."""
    n = len(sorted_values)
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _percentile_rank(sorted_values: Sequence[float], x: float) -> float:
    below = sum(1 for v in sorted_values if v < x)
    equal = sum(1 for v in sorted_values if v == x)
    return (below + 0.5 * equal) / len(sorted_values) * 100


def _histogram(sorted_values: Sequence[float]) -> tuple[HistogramBin, ...]:
    if not sorted_values:
        return ()
    lo, hi = sorted_values[0], sorted_values[-1]
    if lo == hi:
        return (HistogramBin(round_half_away(lo), round_half_away(hi), len(sorted_values)),)
    counts = [0] * HISTOGRAM_BINS
    for v in sorted_values:
        counts[min(math.floor((v - lo) / (hi - lo) * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
    return tuple(
        HistogramBin(
            round_half_away(lo + (hi - lo) * i / HISTOGRAM_BINS),
            round_half_away(lo + (hi - lo) * (i + 1) / HISTOGRAM_BINS),
            counts[i],
        )
        for i in range(HISTOGRAM_BINS)
    )


def _round_target(x: float) -> int:
    return round_half_away(x / TARGET_STEP) * TARGET_STEP


# ---------------------------------------------------------------- the analysis


def _find_object(object_code: str, objects: Sequence[Mapping[str, object]]) -> Callable[[str], str]:
    wanted = object_code.strip().upper()
    shown = object_code.strip()[:40]
    if not wanted:
        raise ObjectNotFound("Не указан код объекта. Отправьте код, например DEMO-0001.")
    for row in objects:
        get = _row_getter(row)
        if get(OBJECT_CODE).strip().upper() == wanted:
            return get
    raise ObjectNotFound(f"Объект с кодом {shown} не найден в базе агентства. Проверьте код и попробуйте снова.")


# How every refusal over the object's own card ends (FIX_CARD_ in gas/src/analysis.js).
_FIX_CARD = " — анализ невозможен. Обратитесь к менеджеру, чтобы исправить карточку объекта."


def _object_figures(code: str, get: Callable[[str], str]) -> tuple[str, float, float]:
    """The object's normalized type, area and price, or InvalidObjectData."""
    obj_type = norm_text(get(OBJECT_TYPE))
    if not obj_type:
        raise InvalidObjectData(
            f"У объекта {code} не указан тип (квартира, апартаменты…){_FIX_CARD}",
            OBJECT_TYPE,
        )
    area = parse_number(get(OBJECT_AREA))
    if area is None or not MIN_AREA <= area <= MAX_AREA:
        raise InvalidObjectData(
            f"У объекта {code} не указана или некорректна площадь{_FIX_CARD}",
            OBJECT_AREA,
        )
    price = parse_number(get(OBJECT_PRICE))
    if price is None or not _sane(area, price):
        raise InvalidObjectData(
            f"У объекта {code} не указана или некорректна цена{_FIX_CARD}",
            OBJECT_PRICE,
        )
    return obj_type, area, price


def _parse_listing(row: Mapping[str, object], today: _Day) -> _Listing | None:
    get = _row_getter(row)
    listing_type = norm_text(get(OBJECT_TYPE))
    area = parse_number(get(OBJECT_AREA))
    price = parse_number(get(OBJECT_PRICE))
    if not listing_type or area is None or price is None or not _sane(area, price):
        return None
    listed = _parse_day(get(OBJECT_LISTED_AT))
    if listed is not None and listed.ordinal > today.ordinal:
        listed = None
    removed = _parse_day(get(MARKET_REMOVED_AT))
    if removed is not None and (
        removed.ordinal > today.ordinal or (listed is not None and removed.ordinal < listed.ordinal)
    ):
        removed = None
    return _Listing(
        listing_type,
        norm_text(get(OBJECT_DISTRICT)),
        parse_rooms(get(OBJECT_ROOMS)),
        area,
        price,
        price / area,
        listed,
        removed,
    )


def _matches(listing: _Listing, level: CriteriaLevel, obj: _Listing) -> bool:
    if listing.type != obj.type:
        return False
    if level.same_district and (not obj.district or listing.district != obj.district):
        return False
    if level.same_rooms and (obj.rooms is None or listing.rooms != obj.rooms):
        return False
    return obj.area * level.area_low <= listing.area <= obj.area * level.area_high


def _criteria_note(level: CriteriaLevel, count: int) -> str | None:
    if count == 0:
        return "Сравнимых объявлений не найдено даже по самым широким критериям."
    if count < MIN_COMPARABLES:
        return (
            f"Даже по самым широким критериям найдено только {count} "
            f"{plural(count, 'сравнимое объявление', 'сравнимых объявления', 'сравнимых объявлений')}"
            " — выводы ориентировочные."
        )
    if level.level > 1:
        return (
            f"По строгим критериям меньше {MIN_COMPARABLES} сравнимых объявлений, "
            f"поэтому критерии расширены: {level.description}."
        )
    return None


def _trend(comparables: Sequence[_Listing], today: _Day) -> tuple[tuple[TrendPoint, ...], float | None]:
    first_index = today.year * 12 + today.month - 1 - (TREND_MONTHS - 1)
    buckets: list[list[float]] = [[] for _ in range(TREND_MONTHS)]
    for c in comparables:
        if c.listed is None:
            continue
        i = c.listed.year * 12 + c.listed.month - 1 - first_index
        if 0 <= i < TREND_MONTHS:
            buckets[i].append(c.ppm2)
    points: list[TrendPoint] = []
    raw: list[float] = []
    for i, bucket in enumerate(buckets):
        index = first_index + i
        month = f"{index // 12:04d}-{index % 12 + 1:02d}"
        if len(bucket) >= MIN_TREND_COUNT:
            median = quantile(sorted(bucket), 0.5)
            raw.append(median)
            points.append(TrendPoint(month, round_half_away(median), len(bucket)))
        else:
            points.append(TrendPoint(month, None, len(bucket)))
    change = round1((raw[-1] - raw[0]) / raw[0] * 100) if len(raw) >= 2 else None
    return tuple(points), change


def _days_on_market(comparables: Sequence[_Listing], today: _Day) -> float | None:
    days = sorted(
        float((c.removed.ordinal if c.removed else today.ordinal) - c.listed.ordinal)
        for c in comparables
        if c.listed is not None
    )
    return quantile(days, 0.5) if days else None


@dataclass(frozen=True)
class _Stats:
    n: int
    ppm2: float
    q1: float
    median: float
    q3: float
    percentile: float
    area: float
    object_days: int | None
    typical_days: float | None
    trend_change: float | None


def _recommend(s: _Stats) -> tuple[Recommendation, int | None, int | None, tuple[str, ...]]:
    if s.n == 0:
        return (
            Recommendation.INSUFFICIENT,
            None,
            None,
            ("Сравнимых объявлений не найдено даже по самым широким критериям — рекомендацию по цене дать нельзя.",),
        )
    if s.n < MIN_FOR_RECOMMENDATION:
        noun = plural(s.n, "сравнимое объявление", "сравнимых объявления", "сравнимых объявлений")
        return (
            Recommendation.INSUFFICIENT,
            None,
            None,
            (
                f"Найдено только {s.n} {noun} — этого мало для надёжной рекомендации "
                f"(нужно не меньше {MIN_FOR_RECOMMENDATION}).",
            ),
        )
    ppm2, q1, med, q3 = (round_half_away(v) for v in (s.ppm2, s.q1, s.median, s.q3))
    pct = fmt_dec(round1(s.percentile))
    typical = round_half_away(s.typical_days) if s.typical_days is not None else None
    slow = (
        s.object_days is not None and s.typical_days is not None and s.object_days > SLOW_SALE_FACTOR * s.typical_days
    )
    reasons: list[str] = []
    days_mentioned = False
    if s.ppm2 > s.q3:
        kind, low, high = Recommendation.LOWER, s.median, s.q3
        reasons.append(
            f"Цена за м² ({fmt_rub(ppm2)}/м²) выше верхнего квартиля рынка ({fmt_rub(q3)}/м²): "
            f"объект дороже {pct}% сравнимых предложений."
        )
        reasons.append("Целевой диапазон — между медианой и верхним квартилем цены за м² конкурентов.")
    elif s.ppm2 < s.q1:
        kind, low, high = Recommendation.RAISE, s.q1, s.median
        reasons.append(
            f"Цена за м² ({fmt_rub(ppm2)}/м²) ниже нижнего квартиля рынка ({fmt_rub(q1)}/м²): "
            f"объект дороже лишь {pct}% сравнимых предложений."
        )
        reasons.append("Целевой диапазон — между нижним квартилем и медианой цены за м² конкурентов.")
    elif s.ppm2 > s.median and slow:
        kind, low, high = Recommendation.LOWER, s.q1, s.median
        reasons.append(
            f"Цена за м² ({fmt_rub(ppm2)}/м²) в межквартильном диапазоне рынка, но выше медианы "
            f"({fmt_rub(med)}/м²), а объект в продаже уже {s.object_days} дн. — заметно дольше "
            f"типичного срока {typical} дн."
        )
        reasons.append("Снижение к диапазону от нижнего квартиля до медианы цены за м² ускорит продажу.")
        days_mentioned = True
    else:
        kind, low, high = Recommendation.KEEP, s.q1, s.q3
        reasons.append(
            f"Цена за м² ({fmt_rub(ppm2)}/м²) в межквартильном диапазоне рынка "
            f"({fmt_int(q1)} – {fmt_rub(q3)}/м²): объект дороже {pct}% сравнимых предложений."
        )
        reasons.append("Рыночный диапазон — от нижнего до верхнего квартиля цены за м² конкурентов.")
    if s.trend_change is not None:
        if s.trend_change >= TREND_NOTABLE_PCT:
            reasons.append(
                f"Медианная цена м² сравнимых объявлений за {TREND_MONTHS} мес. выросла на "
                f"{fmt_dec(s.trend_change)}% — рынок растёт."
            )
        elif s.trend_change <= -TREND_NOTABLE_PCT:
            reasons.append(
                f"Медианная цена м² сравнимых объявлений за {TREND_MONTHS} мес. снизилась на "
                f"{fmt_dec(-s.trend_change)}% — затягивать с продажей рискованно."
            )
        else:
            reasons.append(
                f"За {TREND_MONTHS} мес. медианная цена м² почти не изменилась ({fmt_signed_pct(s.trend_change)})."
            )
    if s.object_days is not None and typical is not None and not days_mentioned:
        reasons.append(f"Объект в продаже {s.object_days} дн. при типичном сроке экспозиции {typical} дн.")
    if s.n < MIN_COMPARABLES:
        reasons.append(f"Сравнимых объявлений немного ({s.n}), поэтому выводы ориентировочные.")
    return kind, _round_target(low * s.area), _round_target(high * s.area), tuple(reasons)


def analyze(
    object_code: str,
    objects: Sequence[Mapping[str, object]],
    market: Sequence[Mapping[str, object]],
    today: date,
) -> Report:
    """Analyze the agency object `object_code` against the market listings as of `today`."""
    get = _find_object(object_code, objects)
    code = get(OBJECT_CODE).strip()
    obj_type, area, price = _object_figures(code, get)
    today_day = _Day(today.toordinal(), today.year, today.month)
    obj_listed = _parse_day(get(OBJECT_LISTED_AT))
    if obj_listed is not None and obj_listed.ordinal > today_day.ordinal:
        obj_listed = None
    obj = _Listing(
        obj_type,
        norm_text(get(OBJECT_DISTRICT)),
        parse_rooms(get(OBJECT_ROOMS)),
        area,
        price,
        price / area,
        obj_listed,
        None,
    )

    listings = [_parse_listing(row, today_day) for row in market]
    usable = [x for x in listings if x is not None]
    cutoff = today_day.ordinal - RECENT_DAYS
    pool = [x for x in usable if x.type == obj.type and (x.removed is None or x.removed.ordinal >= cutoff)]

    level, comparables = LADDER[-1], []
    for candidate in LADDER:
        found = [x for x in pool if _matches(x, candidate, obj)]
        level, comparables = candidate, found
        if len(found) >= MIN_COMPARABLES:
            break

    values = sorted(c.ppm2 for c in comparables)
    n = len(values)
    trend, trend_change = _trend(comparables, today_day)
    typical_days = _days_on_market(comparables, today_day)
    object_days = today_day.ordinal - obj_listed.ordinal if obj_listed is not None else None
    if n:
        q1, median, q3 = quantile(values, 0.25), quantile(values, 0.5), quantile(values, 0.75)
        percentile = _percentile_rank(values, obj.ppm2)
        median_price: int | None = round_half_away(quantile(sorted(c.price for c in comparables), 0.5))
    else:
        q1 = median = q3 = percentile = math.nan
        median_price = None
    kind, target_low, target_high, reasoning = _recommend(
        _Stats(n, obj.ppm2, q1, median, q3, percentile, area, object_days, typical_days, trend_change)
    )

    def whole(x: float) -> int | None:
        return round_half_away(x) if n else None

    return Report(
        object_code=code,
        object_type=" ".join(get(OBJECT_TYPE).split()),
        district=" ".join(get(OBJECT_DISTRICT).split()),
        address=" ".join(get(OBJECT_ADDRESS).split())[:200],
        status=" ".join(get(OBJECT_STATUS).split()),
        rooms=obj.rooms,
        area=round1(area),
        price=round_half_away(price),
        price_per_m2=round_half_away(obj.ppm2),
        listed_at=obj_listed.iso() if obj_listed is not None else None,
        days_on_market=object_days,
        today=today.isoformat(),
        criteria_level=level.level,
        criteria=level.description,
        same_district=level.same_district,
        same_rooms=level.same_rooms,
        area_tolerance_pct=level.area_tolerance_pct,
        criteria_note=_criteria_note(level, n),
        comparables_count=n,
        market_listings=len(usable),
        invalid_listings=len(listings) - len(usable),
        median_ppm2=whole(median),
        q1_ppm2=whole(q1),
        q3_ppm2=whole(q3),
        min_ppm2=whole(values[0]) if n else None,
        max_ppm2=whole(values[-1]) if n else None,
        median_price=median_price,
        price_percentile=round1(percentile) if n else None,
        diff_from_median_pct=round1((obj.ppm2 - median) / median * 100) if n else None,
        trend=trend,
        trend_change_pct=trend_change,
        typical_days_on_market=round_half_away(typical_days) if typical_days is not None else None,
        sold_count=sum(1 for c in comparables if c.removed is not None),
        histogram=_histogram(values),
        recommendation=kind,
        target_price_low=target_low,
        target_price_high=target_high,
        reasoning=reasoning,
    )


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data (the shape the JS twin returns)."""
    data = asdict(report)
    data["recommendation"] = str(report.recommendation)
    return data


# ---------------------------------------------------------------- texts


def _rooms_label(rooms: int | None) -> str:
    if rooms is None:
        return "комнат: н/д"
    return "студия" if rooms == 0 else f"{rooms} комн."


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _trend_line(report: Report) -> str:
    points = [p for p in report.trend if p.median_ppm2 is not None]
    if report.trend_change_pct is None or len(points) < 2:
        return f"• Тренд медианы за {TREND_MONTHS} мес.: недостаточно данных"
    return (
        f"• Тренд медианы за {TREND_MONTHS} мес.: {fmt_signed_pct(report.trend_change_pct)} "
        f"({month_label(points[0].month)} → {month_label(points[-1].month)})"
    )


def recommendation_line(report: Report) -> str:
    """`снизить цену до 35 300 000 – 39 600 000 ₽` and the like."""
    low, high = report.target_price_low, report.target_price_high
    if low is None or high is None:
        return RECOMMENDATION_LABELS[report.recommendation]
    span = f"{fmt_int(low)} – {fmt_rub(high)}"
    if report.recommendation == Recommendation.KEEP:
        return f"сохранить цену (рыночный диапазон {span})"
    if report.recommendation == Recommendation.RAISE:
        return f"можно поднять цену до {span}"
    return f"снизить цену до {span}"


def render_summary(report: Report, narrative: str | None = None) -> str:
    """The Russian summary for one Telegram message; uses `narrative` only if its numbers check out."""
    n = report.comparables_count
    lines = [
        f"📊 Аналитика 360 · {report.object_code}",
        " · ".join(
            part
            for part in (
                _capitalized(report.object_type),
                _rooms_label(report.rooms),
                f"{fmt_dec(report.area)}{NBSP}м²",
                report.district,
            )
            if part
        ),
    ]
    if report.address:
        lines.append(report.address)
    lines.append(f"Цена: {fmt_rub(report.price)} — {fmt_rub(report.price_per_m2)}/м²")
    if report.days_on_market is not None:
        lines.append(f"В продаже: {report.days_on_market} дн.")
    lines.append("")
    noun = plural(n, "сравнимое объявление", "сравнимых объявления", "сравнимых объявлений")
    lines.append(f"Рынок: {n} {noun} ({report.criteria})")
    if n and report.median_ppm2 is not None and report.q1_ppm2 is not None and report.q3_ppm2 is not None:
        lines.append(
            f"• Медиана: {fmt_rub(report.median_ppm2)}/м²; квартили: "
            f"{fmt_int(report.q1_ppm2)} – {fmt_rub(report.q3_ppm2)}/м²"
        )
        if report.diff_from_median_pct is not None and report.price_percentile is not None:
            lines.append(
                f"• Объект: {fmt_signed_pct(report.diff_from_median_pct)} к медиане; "
                f"дороже {fmt_dec(report.price_percentile)}% конкурентов"
            )
        lines.append(_trend_line(report))
        days = report.typical_days_on_market
        lines.append(
            f"• Типичный срок экспозиции: {days} дн."
            if days is not None
            else "• Типичный срок экспозиции: нет данных о датах"
        )
    lines.append("")
    lines.append(f"Рекомендация: {recommendation_line(report)}")
    if narrative is not None and usable_narrative(narrative, report):
        lines.append(" ".join(narrative.split()))
    else:
        lines.extend(report.reasoning)
    lines.append("")
    if report.criteria_note:
        lines.append(f"Примечание: {report.criteria_note}")
    lines.append(
        f"Расчёт на {fmt_date_ru(report.today)} по {fmt_int(report.market_listings)} "
        f"{plural(report.market_listings, 'объявлению', 'объявлениям', 'объявлениям')} рынка."
    )
    return "\n".join(lines)


def figures_for_narrative(report: Report) -> list[tuple[str, str]]:
    """The labelled figures an AI narrative may use (also the allowed numbers)."""
    rows: list[tuple[str, str]] = [
        (
            "Объект",
            f"{report.object_code}, {report.object_type}, {_rooms_label(report.rooms)}, "
            f"{fmt_dec(report.area)} м², район {report.district or 'н/д'}",
        ),
        ("Цена", fmt_rub(report.price)),
        ("Цена за м²", f"{fmt_rub(report.price_per_m2)}/м²"),
        ("Сравнимых объявлений", str(report.comparables_count)),
        ("Критерии", report.criteria),
    ]
    if report.days_on_market is not None:
        rows.append(("Объект в продаже, дней", str(report.days_on_market)))
    if report.median_ppm2 is not None and report.q1_ppm2 is not None and report.q3_ppm2 is not None:
        rows += [
            ("Медиана цены за м²", f"{fmt_rub(report.median_ppm2)}/м²"),
            ("Нижний квартиль (25%) цены за м²", f"{fmt_rub(report.q1_ppm2)}/м²"),
            ("Верхний квартиль (75%) цены за м²", f"{fmt_rub(report.q3_ppm2)}/м²"),
        ]
    if report.price_percentile is not None:
        rows.append(("Объект дороже такой доли конкурентов", f"{fmt_dec(report.price_percentile)}%"))
    if report.diff_from_median_pct is not None:
        rows.append(("Отклонение от медианы", fmt_signed_pct(report.diff_from_median_pct)))
    if report.trend_change_pct is not None:
        rows.append((f"Изменение медианы за {TREND_MONTHS} мес.", fmt_signed_pct(report.trend_change_pct)))
    if report.typical_days_on_market is not None:
        rows.append(("Типичный срок экспозиции, дней", str(report.typical_days_on_market)))
    rows.append(("Рекомендация", RECOMMENDATION_LABELS[report.recommendation]))
    if report.target_price_low is not None and report.target_price_high is not None:
        rows.append(
            ("Целевой диапазон цены", f"{fmt_rub(report.target_price_low)} – {fmt_rub(report.target_price_high)}")
        )
    return rows


def narrative_prompt(report: Report) -> str:
    """The instruction for the AI narrative: the computed figures and nothing else."""
    figures = "\n".join(f"- {label}: {value}" for label, value in figures_for_narrative(report))
    return (
        "Ты аналитик агентства недвижимости. Напиши один абзац (3–5 предложений) на русском языке "
        "для партнёра агентства: оценка цены объекта относительно рынка и рекомендация. "
        "Используй только числа из списка ниже, в том же виде; не придумывай новых чисел, дат и "
        "процентов, не пересчитывай и не округляй их. Без заголовков, списков и разметки.\n\n"
        f"Данные анализа:\n{figures}"
    )


_NUMBER_TOKEN = re.compile(
    "(?<![0-9A-Za-zА-Яа-яЁё_])"
    "([0-9]{1,3}(?:[ \u00a0\u202f\u2009][0-9]{3})+|[0-9]+)"
    "(?:[.,]([0-9]+))?"
    "(?:[ \u00a0]?(млрд|млн|тыс)\\.?)?"
)
# `9,6–10,9 млн`: the unit after a range's second number applies to the first one too.
_RANGE_TAIL = re.compile(
    "[ \u00a0]*[-–—][ \u00a0]*[0-9]{1,3}(?:[ \u00a0\u202f\u2009][0-9]{3})*(?:[.,][0-9]+)?[ \u00a0]?(млрд|млн|тыс)"
)
_MULTIPLIERS = {"млрд": 1e9, "млн": 1e6, "тыс": 1e3}


def _allowed_numbers(report: Report) -> list[float]:
    values: list[float | int | None] = [
        report.price,
        report.price_per_m2,
        report.area,
        report.rooms,
        report.days_on_market,
        report.comparables_count,
        report.market_listings,
        report.median_ppm2,
        report.q1_ppm2,
        report.q3_ppm2,
        report.min_ppm2,
        report.max_ppm2,
        report.median_price,
        report.price_percentile,
        report.diff_from_median_pct,
        report.trend_change_pct,
        report.typical_days_on_market,
        report.sold_count,
        report.target_price_low,
        report.target_price_high,
        report.area_tolerance_pct,
        MIN_COMPARABLES,
        TREND_MONTHS,
        25,
        50,
        75,
        int(report.today[0:4]),
    ]
    if report.price_percentile is not None:
        values.append(100 - report.price_percentile)
    for point in report.trend:
        values.append(point.median_ppm2)
        values.append(int(point.month[0:4]))
    return [abs(float(v)) for v in values if v is not None]


def narrative_numbers_ok(text: str, report: Report) -> bool:
    """True when every number in `text` is one of the report's figures (as written, within rounding)."""
    if not text.strip():
        return False
    for day in (report.today, report.listed_at):
        if day:
            text = text.replace(day, " ").replace(fmt_date_ru(day), " ")
    allowed = _allowed_numbers(report)
    for match in _NUMBER_TOKEN.finditer(text):
        whole, frac, unit = match.group(1), match.group(2), match.group(3)
        if unit is None:
            tail = _RANGE_TAIL.match(text, match.end())
            unit = tail.group(1) if tail else None
        value = float(_NUMBER_JUNK.sub("", whole) + ("." + frac if frac else ""))
        scale = _MULTIPLIERS[unit] if unit else 1.0
        value *= scale
        tolerance = scale * 0.5 * 10.0 ** -(len(frac) if frac else 0)
        if not any(abs(value - a) <= tolerance + 1e-9 * max(1.0, a) for a in allowed):
            return False
    return True


def usable_narrative(text: str, report: Report) -> bool:
    """An AI narrative may replace the template reasoning: short enough and every number checks out."""
    return len(text) <= NARRATIVE_MAX_CHARS and narrative_numbers_ok(text, report)
