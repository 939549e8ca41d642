"""Synthetic demo data for Объекты and Рынок (the agency's objects and the market listings).

Everything here is made up by a seeded generator: the districts are real Moscow districts so the
report reads naturally, but no listing, address or price is real. The same seed and `today` always
give the same rows. Values are strings formatted as staff type them (`45,5`, `38 500 000`, `01.05.2026`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta

DEMO_OBJECT_COUNT = 20
DEMO_MARKET_COUNT = 4000
SOURCES = ("ЦИАН", "Авито", "Яндекс Недвижимость", "ДомКлик")


@dataclass(frozen=True)
class _District:
    name: str
    ppm2: float  # price per m² of a flat today, ₽
    monthly_growth: float
    apartments_share: float
    streets: tuple[str, ...]


DISTRICTS: tuple[_District, ...] = (
    _District("Хамовники", 820_000, 0.006, 0.2, ("ул. Льва Толстого", "Комсомольский пр-т", "ул. Плющиха")),
    _District("Пресненский", 700_000, 0.008, 0.3, ("ул. Красная Пресня", "Пресненская наб.", "ул. Заморёнова")),
    _District("Басманный", 560_000, 0.005, 0.25, ("ул. Бауманская", "Спартаковская ул.", "ул. Покровка")),
    _District("Сокольники", 430_000, 0.004, 0.05, ("ул. Стромынка", "Сокольническая пл.", "ул. Матросская Тишина")),
    _District("Митино", 300_000, 0.003, 0.05, ("Пятницкое ш.", "ул. Барышиха", "Митинская ул.")),
    _District("Марьино", 275_000, -0.002, 0.03, ("Люблинская ул.", "ул. Перерва", "Новочеркасский б-р")),
)

# (share of listings, lowest area, highest area, price-per-m² factor) for 1-4 rooms
ROOMS: dict[int, tuple[float, float, float, float]] = {
    1: (0.3, 30.0, 46.0, 1.06),
    2: (0.35, 44.0, 68.0, 1.0),
    3: (0.25, 62.0, 98.0, 0.97),
    4: (0.1, 88.0, 150.0, 0.99),
}
APARTMENTS_FACTOR = 0.85


def _pick_rooms(rng: random.Random) -> int:
    x, total = rng.random(), 0.0
    for rooms, (share, *_rest) in ROOMS.items():
        total += share
        if x < total:
            return rooms
    return 4


def _area(rng: random.Random, rooms: int) -> float:
    _, low, high, _factor = ROOMS[rooms]
    return round(rng.uniform(low, high), 1)


def _ppm2(district: _District, kind: str, rooms: int, months_ago: float) -> float:
    """The market's typical price per m² for this kind of flat `months_ago` months before today."""
    base = district.ppm2 * ROOMS[rooms][3] * (APARTMENTS_FACTOR if kind == "апартаменты" else 1.0)
    growth: float = (1 + district.monthly_growth) ** months_ago
    return base / growth


def _fmt_area(rng: random.Random, area: float) -> str:
    text = f"{area:.1f}"
    return text.replace(".", ",") if rng.random() < 0.5 else text


def _fmt_price(rng: random.Random, price: int) -> str:
    if rng.random() < 0.1:
        return f"{price:,}".replace(",", " ")
    return str(price)


def _fmt_date(rng: random.Random, day: date) -> str:
    return day.strftime("%d.%m.%Y") if rng.random() < 0.1 else day.isoformat()


def demo_market(seed: int, today: date, count: int = DEMO_MARKET_COUNT) -> list[dict[str, str]]:
    """`count` synthetic market listings over the 12 months before `today` (rows for Рынок)."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for i in range(1, count + 1):
        district = rng.choice(DISTRICTS)
        kind = "апартаменты" if rng.random() < district.apartments_share else "квартира"
        rooms = _pick_rooms(rng)
        area = _area(rng, rooms)
        age = rng.randint(0, 364)
        listed = today - timedelta(days=age)
        noise = rng.lognormvariate(0.0, 0.05)
        price = round(_ppm2(district, kind, rooms, age / 30.4) * noise * area, -4)
        # Overpriced listings sell slower: days on market grow steeply with the price noise.
        days = min(400, max(3, round(rng.lognormvariate(math.log(70), 0.55) * noise**6)))
        removed = listed + timedelta(days=days)
        rows.append(
            {
                "id": f"MKT-{i:05d}",
                "type": kind,
                "district": district.name,
                "rooms": str(rooms),
                "area": _fmt_area(rng, area),
                "price": _fmt_price(rng, int(price)),
                "listed_at": _fmt_date(rng, listed),
                "removed_at": _fmt_date(rng, removed) if removed < today else "",
                "source": rng.choice(SOURCES),
            }
        )
    return rows


# How far each demo object's asking price is from its market, so the reports differ.
_PRICE_FACTORS = (0.86, 0.95, 1.0, 1.03, 0.98, 1.1, 1.2, 0.92, 1.01, 1.06)


def demo_objects(seed: int, today: date) -> list[dict[str, str]]:
    """The agency's synthetic objects DEMO-0001 … DEMO-0020 (rows for Объекты)."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for i in range(1, DEMO_OBJECT_COUNT + 1):
        district = DISTRICTS[(i - 1) % len(DISTRICTS)]
        kind = "апартаменты" if i in (2, 9, 15, 18) else "квартира"
        rooms = (i - 1) % 4 + 1
        area = _area(rng, rooms)
        factor = _PRICE_FACTORS[(i * 7) % len(_PRICE_FACTORS)]
        price = round(_ppm2(district, kind, rooms, 0) * factor * area, -4)
        listed = today - timedelta(days=rng.randint(5, 120))
        rows.append(
            {
                "code": f"DEMO-{i:04d}",
                "type": kind,
                "district": district.name,
                "address": f"Москва, {rng.choice(district.streets)}, д. {rng.randint(1, 60)}",
                "rooms": str(rooms),
                "area": _fmt_area(rng, area),
                "price": _fmt_price(rng, int(price)),
                "listed_at": listed.isoformat(),
                "status": "в продаже",
            }
        )
    return rows
