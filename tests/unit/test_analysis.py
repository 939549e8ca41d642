"""Аналитика 360, Python twin: hand-checked figures, parsing, errors, texts, the narrative check, demo data."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pytest

from bot.analytics.analysis import (
    NARRATIVE_MAX_CHARS,
    SUMMARY_MAX_CHARS,
    InvalidObjectData,
    ObjectNotFound,
    Recommendation,
    Report,
    analyze,
    narrative_numbers_ok,
    parse_date,
    parse_number,
    parse_rooms,
    quantile,
    render_summary,
    round1,
    round_half_away,
    usable_narrative,
)
from bot.analytics.demo_data import DEMO_MARKET_COUNT, demo_market, demo_objects

TODAY = date(2026, 11, 24)
VECTORS_DIR = Path(__file__).resolve().parents[2] / "gas" / "test" / "vectors"


def hand_small_inputs() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The objects and market rows of the hand-checked vector (inputs only; figures are checked below)."""
    vector = json.loads((VECTORS_DIR / "hand_small.json").read_text(encoding="utf-8"))
    return vector["objects"], vector["market"]


@pytest.fixture
def hand_report() -> Report:
    """The analysis of H-1: six comparables at 180…260 thousand ₽/m², the object at 200 000 ₽/m²."""
    objects, market = hand_small_inputs()
    return analyze("H-1", objects, market, TODAY)


def test_hand_checked_figures(hand_report: Report) -> None:
    """H-1's figures equal the ones worked out by hand (quantiles by linear interpolation, n = 6)."""
    r = hand_report
    assert (r.criteria_level, r.comparables_count, r.criteria_note) == (1, 6, None)
    # sorted ppm2: 180 190 200 210 220 260 (thousand); pos = 5q
    assert (r.q1_ppm2, r.median_ppm2, r.q3_ppm2) == (192_500, 205_000, 217_500)
    assert (r.min_ppm2, r.max_ppm2, r.median_price) == (180_000, 260_000, 10_250_000)
    assert r.price_percentile == 41.7  # (2 below + 0.5 × 1 equal) / 6
    assert r.diff_from_median_pct == -2.4  # (200 − 205) / 205
    # June: 180, 210, 260 → 210; November: 190, 200, 220 → 200; other months empty
    assert [(p.month, p.median_ppm2, p.count) for p in r.trend] == [
        ("2026-06", 210_000, 3),
        ("2026-07", None, 0),
        ("2026-08", None, 0),
        ("2026-09", None, 0),
        ("2026-10", None, 0),
        ("2026-11", 200_000, 3),
    ]
    assert r.trend_change_pct == -4.8
    # days: 30, 60 (sold), 157, 23, 19, 14 (active) → median of 14 19 23 30 60 157 = 26.5 → 27
    assert (r.typical_days_on_market, r.sold_count, r.days_on_market) == (27, 2, 30)
    assert [b.count for b in r.histogram] == [1, 1, 1, 1, 1, 0, 0, 1]
    assert [b.low for b in r.histogram] == list(range(180_000, 260_000, 10_000))
    # keep: target Q1…Q3 × 50 m² = 9 625 000 … 10 875 000 → to 10 000 ₽, halves away from zero
    assert r.recommendation == Recommendation.KEEP
    assert (r.target_price_low, r.target_price_high) == (9_630_000, 10_880_000)
    assert (r.market_listings, r.invalid_listings) == (9, 1)


def test_quantile_is_linear_interpolation() -> None:
    """Quantiles follow numpy's default (linear) method."""
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.25) == 1.75
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([7.0], 0.75) == 7.0


def test_rounding_is_half_away_from_zero() -> None:
    """Halves round away from zero (not to even), and −0 never appears."""
    assert round_half_away(962.5) == 963
    assert round_half_away(-962.5) == -963
    assert round_half_away(2.5) == 3
    assert round1(0.25) == 0.3
    assert str(round1(-0.01)) == "0.0"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5 000 000", 5_000_000.0),
        ("5000000,00", 5_000_000.0),
        ("45,5", 45.5),
        ("45,5 м²", 45.5),
        ("5.000.000,50", 5_000_000.5),
        ("1,234,567.8", 1_234_567.8),
        ("9 100 000 руб.", 9_100_000.0),
        ("5\u00a0200\u00a0000 ₽", 5_200_000.0),
        ("", None),
        ("договорная", None),
        ("12abc34", None),
        ("-", None),
    ],
)
def test_parse_number(text: str, value: float | None) -> None:
    """Staff-typed numbers are read; anything else is missing."""
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2026-05-01", date(2026, 5, 1)),
        ("01.05.2026", date(2026, 5, 1)),
        ("2026-05-01T10:00:00", date(2026, 5, 1)),
        ("1.5.2026 10:00", date(2026, 5, 1)),
        ("2026-02-29", None),
        ("31.04.2026", None),
        ("вчера", None),
        ("", None),
    ],
)
def test_parse_date(text: str, value: date | None) -> None:
    """ISO and dd.mm.yyyy dates are read; impossible or other text is missing."""
    assert parse_date(text) == value


def test_parse_rooms() -> None:
    """Rooms are whole numbers 0-20 or `студия`."""
    assert [parse_rooms(x) for x in ("2", " 3 ", "студия", "Студия", "2,5", "", "25")] == [2, 3, 0, 0, None, None, None]


def test_unknown_object_raises_object_not_found() -> None:
    """An unknown code raises ObjectNotFound with a Russian message naming the code."""
    objects, market = hand_small_inputs()
    with pytest.raises(ObjectNotFound, match="NOPE-7 не найден"):
        analyze("NOPE-7", objects, market, TODAY)


def test_code_lookup_ignores_case_and_spaces() -> None:
    """The code is matched case-insensitively and trimmed."""
    objects, market = hand_small_inputs()
    assert analyze("  h-1 ", objects, market, TODAY).object_code == "H-1"


@pytest.mark.parametrize(
    ("field", "value", "expected_field"),
    [
        ("area", "0", "area"),
        ("area", "5000", "area"),
        ("price", "0", "price"),
        ("price", "1", "price"),
        ("price", "10 000 000 000 000", "price"),
        ("type", " ", "type"),
    ],
)
def test_absurd_object_data_raises_invalid_object(field: str, value: str, expected_field: str) -> None:
    """Zero or absurd area/price, or no type, raise InvalidObjectData naming the field, in Russian."""
    objects, market = hand_small_inputs()
    objects[0][field] = value
    with pytest.raises(InvalidObjectData) as caught:
        analyze("H-1", objects, market, TODAY)
    assert caught.value.field == expected_field
    assert "H-1" in caught.value.message and "менеджеру" in caught.value.message


def test_figures_do_not_depend_on_row_order(hand_report: Report) -> None:
    """Shuffling the market rows leaves every figure unchanged."""
    objects, market = hand_small_inputs()
    random.Random(5).shuffle(market)
    assert analyze("H-1", objects, market, TODAY) == hand_report


def test_analysis_is_deterministic_on_demo_data() -> None:
    """The same data analysed twice gives identical reports and summaries."""
    objects, market = demo_objects(3, TODAY), demo_market(3, TODAY)
    first, second = analyze("DEMO-0007", objects, market, TODAY), analyze("DEMO-0007", objects, market, TODAY)
    assert first == second
    assert render_summary(first) == render_summary(second)


def test_summary_shows_the_figures(hand_report: Report) -> None:
    """The summary names the object, the market figures and the recommendation, in Russian."""
    text = render_summary(hand_report)
    for fragment in (
        "Аналитика 360 · H-1",
        "10\u00a0000\u00a0000\u00a0₽",
        "205\u00a0000\u00a0₽/м²",
        "192\u00a0500 – 217\u00a0500\u00a0₽/м²",
        "дороже 41,7% конкурентов",
        "−4,8%",
        "27 дн.",
        "Рекомендация: сохранить цену (рыночный диапазон 9\u00a0630\u00a0000 – 10\u00a0880\u00a0000\u00a0₽)",
    ):
        assert fragment in text


def test_summary_without_comparables_says_so() -> None:
    """With no comparables the summary has no market figures and says no recommendation is possible."""
    objects, market = hand_small_inputs()
    objects[0]["type"] = "таунхаус"
    report = analyze("H-1", objects, market, TODAY)
    text = render_summary(report)
    assert report.recommendation == Recommendation.INSUFFICIENT
    assert "Рынок: 0 сравнимых объявлений" in text and "Медиана" not in text
    assert "рекомендацию по цене дать нельзя" in text


def test_every_demo_summary_fits_one_message() -> None:
    """Every demo object's summary (even with the longest allowed narrative) stays under 3500 characters."""
    objects, market = demo_objects(9, TODAY), demo_market(9, TODAY)
    for row in objects:
        report = analyze(row["code"], objects, market, TODAY)
        narrative = ("Рынок стабилен. " * 200)[:NARRATIVE_MAX_CHARS]
        assert len(render_summary(report, narrative)) < SUMMARY_MAX_CHARS


@pytest.mark.parametrize(
    "text",
    [
        "Цена 10 000 000 ₽, то есть 200 000 ₽ за м²; медиана — 205 000 ₽/м².",
        "Объект стоит 10 млн ₽, медиана около 205 тыс. ₽ за м², дороже 41,7% аналогов.",
        "Квартира 50 м², 2-комнатная, цена на 2,4% ниже медианы; 6 аналогов за 6 мес.",
        "Медиана снизилась на 4,8% с июня 2026 года; типичный срок — 27 дней, объект в продаже 30 дней.",
        "Диапазон 9,63–10,88 млн ₽. Отчёт на 24.11.2026.",
        "Рекомендуем сохранить цену.",
    ],
)
def test_narrative_with_computed_numbers_passes(hand_report: Report, text: str) -> None:
    """Numbers written as computed figures (any usual formatting) pass the check."""
    assert narrative_numbers_ok(text, hand_report)


@pytest.mark.parametrize(
    "text",
    [
        "Через год цена вырастет на 17%.",
        "Медиана 210 500 ₽/м².",
        "Объект стоит 14 млн ₽.",
        "Продано 14 квартир.",
        "Отчёт на 25.11.2026.",
        "",
    ],
)
def test_narrative_with_invented_numbers_fails(hand_report: Report, text: str) -> None:
    """Any number that is not a computed figure (or an empty text) fails the check."""
    assert not narrative_numbers_ok(text, hand_report)


def test_too_long_narrative_is_not_used(hand_report: Report) -> None:
    """A narrative longer than the limit is rejected even if its numbers are right."""
    text = "Рекомендуем сохранить цену. " * 80
    assert narrative_numbers_ok(text, hand_report)
    assert not usable_narrative(text, hand_report)
    assert "Рекомендуем сохранить цену." not in render_summary(hand_report, text)


def test_valid_narrative_replaces_template_reasoning(hand_report: Report) -> None:
    """A checked narrative takes the place of the template reasoning in the summary."""
    narrative = "Цена соответствует рынку: медиана 205 000 ₽/м², объект дороже 41,7% аналогов."
    text = render_summary(hand_report, narrative)
    assert narrative in text
    assert hand_report.reasoning[0] not in text


def test_demo_data_is_deterministic_and_well_formed() -> None:
    """Demo rows are the same for a seed, differ across seeds, and are all usable listings."""
    objects, market = demo_objects(1, TODAY), demo_market(1, TODAY)
    assert objects == demo_objects(1, TODAY) and market == demo_market(1, TODAY)
    assert market != demo_market(2, TODAY)
    assert [o["code"] for o in objects] == [f"DEMO-{i:04d}" for i in range(1, 21)]
    assert len(market) == DEMO_MARKET_COUNT
    assert len({m["district"] for m in market}) >= 5
    assert {m["type"] for m in market} == {"квартира", "апартаменты"}
    assert {m["rooms"] for m in market} == {"1", "2", "3", "4"}
    listed = [parse_date(m["listed_at"]) for m in market]
    assert all(d is not None and 0 <= (TODAY - d).days < 366 for d in listed)
    sold = [m for m in market if m["removed_at"]]
    assert 0.3 * len(market) < len(sold) < 0.95 * len(market)
    report = analyze("DEMO-0001", objects, market, TODAY)
    assert report.invalid_listings == 0 and report.market_listings == DEMO_MARKET_COUNT


def test_demo_objects_get_varied_recommendations() -> None:
    """The demo objects are priced so that the reports differ (lower, keep and raise all occur)."""
    objects, market = demo_objects(1, TODAY), demo_market(1, TODAY)
    kinds = {analyze(o["code"], objects, market, TODAY).recommendation for o in objects}
    assert {Recommendation.LOWER, Recommendation.KEEP, Recommendation.RAISE} <= kinds
