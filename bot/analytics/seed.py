"""Seeds Объекты and Рынок with the synthetic demo data (`marketingbot local` on first start).

Idempotent: a sheet that already has data rows is left alone. All rows go in ONE gateway write, which
the gateway turns into one append per sheet, so a few thousand listings cost a handful of API calls.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date

from bot.analytics.demo_data import demo_market, demo_objects
from gateway import AsyncSheetsGateway
from gateway.schemas import MARKET, OBJECTS, MarketCol, ObjectCol

DEMO_SEED = 360


@dataclass(frozen=True)
class SeedResult:
    """How many rows were written to each sheet (0 when it already had data)."""

    objects: int
    market: int


async def seed_demo_market(gw: AsyncSheetsGateway, today: date, *, seed: int = DEMO_SEED) -> SeedResult:
    """Write the demo objects (DEMO-0001…) and market listings into empty Объекты / Рынок sheets."""
    objects, market = gw.table(OBJECTS), gw.table(MARKET)
    existing_objects, existing_market = await asyncio.gather(
        objects.select([ObjectCol.CODE]), market.select([MarketCol.ID])
    )
    ops = []
    object_rows = [] if existing_objects else demo_objects(seed, today)
    market_rows = [] if existing_market else demo_market(seed + 1, today)
    # Plain inserts of new keys: no per-row lookups, one append per sheet.
    ops += [objects.op_insert(row) for row in object_rows]
    ops += [market.op_insert(row) for row in market_rows]
    if ops:
        await gw.write(ops)
    return SeedResult(len(object_rows), len(market_rows))
