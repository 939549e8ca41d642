"""Writes the shared analysis vectors gas/test/vectors/*.json from the Python twin.

Run after a deliberate change to the algorithm: `.venv/bin/python tests/unit/make_analysis_vectors.py`.
Each vector holds the inputs (objects, market, object code, today) and the expected output: the report
figures, the summary text and the AI prompt, or the error kind, field and message. The JS twin's Node
tests and tests/unit/test_analysis_vectors.py both replay them. `hand_small` is also checked against
figures worked out by hand in tests/unit/test_analysis.py, so a regenerated file cannot hide a bug.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from bot.analytics.analysis import (
    AnalysisError,
    Report,
    analyze,
    fmt_dec,
    fmt_int,
    narrative_numbers_ok,
    narrative_prompt,
    render_summary,
    report_to_dict,
)
from bot.analytics.demo_data import demo_market, demo_objects

VECTORS_DIR = Path(__file__).resolve().parents[2] / "gas" / "test" / "vectors"
TODAY = date(2026, 11, 24)


def obj(
    code: str,
    type_: str = "квартира",
    district: str = "Хамовники",
    rooms: str = "2",
    area: str = "50",
    price: str = "10000000",
    listed_at: str = "2026-10-25",
) -> dict[str, str]:
    return {
        "code": code,
        "type": type_,
        "district": district,
        "address": f"Москва, ул. Тестовая, {code}",
        "rooms": rooms,
        "area": area,
        "price": price,
        "listed_at": listed_at,
        "status": "в продаже",
    }


def listing(
    i: int,
    price: str,
    area: str = "50",
    listed_at: str = "2026-11-01",
    removed_at: str = "",
    type_: str = "квартира",
    district: str = "Хамовники",
    rooms: str = "2",
) -> dict[str, str]:
    return {
        "id": f"M-{i}",
        "type": type_,
        "district": district,
        "rooms": rooms,
        "area": area,
        "price": price,
        "listed_at": listed_at,
        "removed_at": removed_at,
        "source": "ЦИАН",
    }


def hand_small() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    market = [
        listing(1, "9000000", listed_at="2026-06-05", removed_at="2026-07-05"),
        listing(2, "10500000", listed_at="2026-06-10", removed_at="2026-08-09"),
        listing(3, "13000000", listed_at="2026-06-20"),
        listing(4, "9500000", listed_at="2026-11-01"),
        listing(5, "10000000", listed_at="2026-11-05"),
        listing(6, "11000000", listed_at="2026-11-10"),
        listing(7, "9000000", district="Марьино"),
        listing(8, "9000000", type_="апартаменты"),
        listing(9, "9000000", listed_at="2026-01-10", removed_at="2026-03-01"),
        listing(10, "договорная"),
    ]
    return [obj("H-1"), obj("H-2", district="Марьино")], market


def spread(prefix: int, ppm2s: list[int], area: float = 50.0, **kw: str) -> list[dict[str, str]]:
    """Listings of `area` m² priced at the given prices per m², listed in turn over four months."""
    months = ["2026-07-15", "2026-08-15", "2026-09-15", "2026-10-15"]
    return [
        listing(
            prefix + i,
            str(round(p * area)),
            area=str(area),
            listed_at=kw.get("listed_at", months[i % 4]),
            removed_at=kw.get("removed_at", ""),
            rooms=kw.get("rooms", "2"),
            district=kw.get("district", "Хамовники"),
        )
        for i, p in enumerate(ppm2s)
    ]


def cases() -> dict[str, dict[str, Any]]:
    objects_small, market_small = hand_small()
    base_ppm2 = [
        190_000,
        195_000,
        200_000,
        205_000,
        210_000,
        215_000,
        220_000,
        198_000,
        202_000,
        207_000,
        188_000,
        212_000,
        199_000,
    ]
    objects = [
        obj("K-1", price="10200000"),
        obj("L-1", price="12500000"),
        obj("R-1", price="8500000"),
        obj("S-1", price="10400000", listed_at="2026-03-01"),
        obj("W-2", area="66", price="13500000"),
        obj("W-3", rooms="3", area="52", price="10400000"),
        obj("W-4", district="Арбат", rooms="2", area="50", price="10000000"),
        obj("W-5", district="Арбат", rooms="5", area="50", price="10000000"),
        obj("N-0", type_="таунхаус"),
        obj("O-1", type_="пентхаус", price="30000000"),
        obj("Z-0", area="0"),
        obj("Z-1", area=""),
        obj("P-1", price="1"),
        obj("P-2", price="900000000000"),
        obj("P-3", area="30", price="400000000"),
        obj("T-0", type_=""),
        obj("D-0"),
    ]
    # Recently sold listings make a short typical exposure for the slow-sale case.
    market = spread(100, base_ppm2, removed_at="2026-11-20")
    market += spread(200, [190_000, 200_000, 210_000, 220_000, 230_000, 195_000], area=82.0)
    market += spread(300, [205_000, 207_000, 209_000], area=50.0, rooms="4", district="Хамовники")
    market += [listing(400, "31000000", type_="пентхаус", district="Пресненский", listed_at="2026-09-01")]
    market += [
        listing(500 + i, str(p), listed_at=d, removed_at=r, district="Тверской")
        for i, (p, d, r) in enumerate(
            [
                ("9800000", "", ""),
                ("10100000", "неизвестно", ""),
                ("10400000", "2026-13-45", ""),
                ("9900000", "31.02.2026", "2026-11-01"),
                ("10200000", "2027-01-01", ""),
                ("10300000", "", "2026-10-01"),
            ]
        )
    ]
    objects.append(obj("D-1", district="Тверской", listed_at=""))
    messy_objects = [
        {
            "Code ": " msg-1 ",
            " TYPE": "Квартира",
            "District": "  хамовники ",
            "Address": "Москва,   Арбат  1",
            "Rooms": "студия",
            "AREA": "45,5 м²",
            "Price": "9 100 000,00 ₽",
            "Listed_At": "01.10.2026",
            "Status": "в продаже",
        },
    ]
    messy_market = [
        {
            "id": "X-1",
            "type": "квартира ",
            "district": "Хамовники",
            "rooms": "0",
            "area": "44.0",
            "price": "8 800 000",
            "listed_at": "15.10.2026",
            "removed_at": "",
            "source": "Авито",
        },
        {
            "id": "X-2",
            "type": "КВАРТИРА",
            "district": "хамовники",
            "rooms": "студия",
            "area": "46,2",
            "price": "9.250.000",
            "listed_at": "2026-10-03T12:00:00",
            "removed_at": "2026-11-02",
            "source": "",
        },
        {
            "id": "X-3",
            "type": "квартира",
            "district": "Хамовники",
            "rooms": "0",
            "area": "47",
            "price": "9,400,000.00",
            "listed_at": "2026-10-10 09:30",
            "removed_at": "05.11.2026",
            "source": "",
        },
        {
            "id": "X-4",
            "type": "квартира",
            "district": "Хамовники",
            "rooms": "0",
            "area": "45",
            "price": "9100000 руб.",
            "listed_at": "2026-10-20",
            "removed_at": "",
            "source": "",
        },
        {
            "id": "X-5",
            "type": "квартира",
            "district": "Хамовники",
            "rooms": "0",
            "area": "43,9",
            "price": "8 990 000 р.",
            "listed_at": "2026-11-11",
            "removed_at": "",
            "source": "",
        },
        {
            "id": "X-6",
            "type": "квартира",
            "district": "Хамовники",
            "rooms": "0",
            "area": "abc",
            "price": "9000000",
            "listed_at": "2026-11-11",
            "removed_at": "",
            "source": "",
        },
        {
            "id": "X-7",
            "type": "квартира",
            "district": "Хамовники",
            "rooms": "0",
            "area": "45",
            "price": "45",
            "listed_at": "2026-11-11",
            "removed_at": "",
            "source": "",
        },
        {
            "id": "X-8",
            "type": "квартира",
            "district": "Хамовники",
            "rooms": "0",
            "area": "45",
            "price": "5 000 000 000 000",
            "listed_at": "2026-11-11",
            "removed_at": "",
            "source": "",
        },
    ]
    demo_today = TODAY
    demo_objs = demo_objects(11, demo_today)
    demo_mkt = demo_market(11, demo_today, count=700)  # a small slice keeps the file small

    def case(
        description: str, code: str, objs: list[dict[str, str]], mkt: list[dict[str, str]], today: date = TODAY
    ) -> dict[str, Any]:
        return {
            "description": description,
            "object_code": code,
            "today": today.isoformat(),
            "objects": objs,
            "market": mkt,
        }

    return {
        "hand_small": case(
            "Six comparables, hand-checked figures; noise rows of other district/type, "
            "an old removal and a garbage price.",
            "H-1",
            objects_small,
            market_small,
        ),
        "keep_in_range": case("Price inside the interquartile range: keep.", "K-1", objects, market),
        "lower_above_q3": case("Price above the upper quartile: lower to median…Q3.", "L-1", objects, market),
        "raise_below_q1": case("Price below the lower quartile: raise to Q1…median.", "R-1", objects, market),
        "slow_sale_lower": case(
            "Above the median, on sale far longer than typical: lower to Q1…median.", "S-1", objects, market
        ),
        "widening_area30": case("Too few at ±15% area: widened to ±30%.", "W-2", objects, market),
        "widening_any_rooms": case("Too few with the same rooms: any rooms in the district.", "W-3", objects, market),
        "widening_city": case("Nothing in the district: same rooms across the city.", "W-4", objects, market),
        "widening_city_any_rooms": case(
            "Rare room count in an empty district: the whole city, any rooms.", "W-5", objects, market
        ),
        "no_comparables": case("A type nobody else lists: no comparables, no recommendation.", "N-0", objects, market),
        "one_comparable": case("A single comparable across the whole ladder.", "O-1", objects, market),
        "listings_without_dates": case(
            "Comparables with missing, garbage, impossible and future dates.", "D-1", objects, market
        ),
        "messy_formats": case(
            "Staff formats: header case, spaces, commas, units, dd.mm.yyyy, студия.",
            "MSG-1",
            messy_objects,
            messy_market,
        ),
        "demo_sample": case("Synthetic demo data (seed 11, 700 listings).", "DEMO-0005", demo_objs, demo_mkt),
        "demo_widened": case("Synthetic demo data, apartments widened to any rooms.", "DEMO-0004", demo_objs, demo_mkt),
        "object_missing": case("Unknown object code.", "NOPE-1", objects, market),
        "empty_code": case("Empty object code.", "   ", objects, market),
        "zero_area": case("Area 0.", "Z-0", objects, market),
        "empty_area": case("Area missing.", "Z-1", objects, market),
        "absurd_price_low": case("Price of 1 ruble.", "P-1", objects, market),
        "absurd_price_high": case("Price of 900 billion.", "P-2", objects, market),
        "absurd_price_per_m2": case("13.3 million per m².", "P-3", objects, market),
        "missing_type": case("Object type empty.", "T-0", objects, market),
    }


def narratives(report: Report) -> list[dict[str, Any]]:
    """Narrative texts with the verdict the check must give (stated here, then confirmed by the twin)."""
    f = report_to_dict(report)
    # An invented percentage: the first candidate that is not one of this report's figures.
    invented = next(x for x in ("37,9", "93,1", "57,3", "61,9") if not narrative_numbers_ok(f"{x}%", report))
    return [
        {
            "ok": True,
            "text": f"Цена объекта {fmt_int(f['price'])} ₽, это {fmt_int(f['price_per_m2'])} ₽ за м². "
            f"Медиана аналогов — {fmt_int(f['median_ppm2'])} ₽/м², объект дороже "
            f"{fmt_dec(f['price_percentile'])}% из {f['comparables_count']} конкурентов.",
        },
        {
            "ok": True,
            "text": f"Объект стоит около {fmt_dec(f['price'] / 1e6)} млн ₽; медиана — примерно "
            f"{round(f['median_ppm2'] / 1000)} тыс. ₽ за м².",
        },
        {"ok": True, "text": "Рекомендуем обсудить цену с собственником: рынок в районе стабилен."},
        {
            "ok": True,
            "text": f"Разумный диапазон — {fmt_dec(f['target_price_low'] / 1e6)}–"
            f"{fmt_dec(f['target_price_high'] / 1e6)} млн ₽ за {f['area_tolerance_pct']}% "
            "допуска по площади.",
        }
        if f["target_price_low"] is not None
        else {"ok": False, "text": "Разумный диапазон — 1,1–1,2 млн ₽."},
        {"ok": False, "text": f"Медиана {fmt_int(f['median_ppm2'])} ₽/м², а через год цены вырастут на {invented}%."},
        {"ok": False, "text": f"Цена объекта {fmt_int(f['price'] + 153_000)} ₽."},
        {"ok": False, "text": "   "},
    ]


def expected(case: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    today = date.fromisoformat(case["today"])
    try:
        report = analyze(case["object_code"], case["objects"], case["market"], today)
    except AnalysisError as e:
        return {"error": {"kind": e.kind, "field": e.field, "message": e.message}}, []
    figures = report_to_dict(report)
    checks: list[dict[str, Any]] = []
    if report.median_ppm2 is not None and report.price_percentile is not None:
        checks = narratives(report)
        for item in checks:
            assert narrative_numbers_ok(item["text"], report) == item["ok"], item
    return {"report": figures, "summary": render_summary(report), "prompt": narrative_prompt(report)}, checks


def dump(vector: dict[str, Any]) -> str:
    """JSON with one top-level key per line and one sheet row per line (readable diffs, small files)."""

    def value(v: Any) -> str:
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            return "[\n  " + ",\n  ".join(json.dumps(x, ensure_ascii=False) for x in v) + "\n ]"
        return json.dumps(v, ensure_ascii=False)

    body = ",\n".join(f" {json.dumps(k)}: {value(v)}" for k, v in vector.items())
    return "{\n" + body + "\n}\n"


def main() -> None:
    """Regenerate every vector file."""
    VECTORS_DIR.mkdir(parents=True, exist_ok=True)
    for old in VECTORS_DIR.glob("*.json"):
        old.unlink()
    for name, case in cases().items():
        result, checks = expected(case)
        vector = {"name": name, **case, "expected": result, "narratives": checks}
        path = VECTORS_DIR / f"{name}.json"
        path.write_text(dump(vector), encoding="utf-8")
        print(path.name, result.get("error", {}).get("kind") or result["report"]["recommendation"])


if __name__ == "__main__":
    main()
