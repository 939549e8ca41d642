"""Demo data for `marketingbot local`: the demo partner and a starter knowledge base (both idempotent)."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.services.auth import AUTHORIZED
from bot.services.knowledge import demo_knowledge
from bot.services.sheet_time import MOSCOW, stamp
from gateway import AsyncSheetsGateway
from gateway.schemas import AUTH, KNOWLEDGE, AuthCol

log = logging.getLogger(__name__)

DEMO_CODE = "DEMO-001"
DEMO_PHONE = "+79000000001"
DEMO_TELEGRAM_ID = 100001
DEMO_NAME = "Демо Партнёр"


async def seed_demo_partner(
    gw: AsyncSheetsGateway, *, now: datetime | None = None, working_hours: str | None = None
) -> None:
    """Write the demo partner (only if DEMO-001 is absent) and the demo knowledge base (only if it is empty).

    Existing rows are never overwritten, so staff changes to demo data survive restarts.
    """
    moment = now or datetime.now(MOSCOW)
    auth = gw.table(AUTH)
    ops = [
        auth.op_upsert(
            DEMO_CODE,
            {},
            insert_defaults={
                AuthCol.PHONE: DEMO_PHONE,
                AuthCol.NAME: DEMO_NAME,
                AuthCol.STATUS: AUTHORIZED,
                AuthCol.TELEGRAM_ID: str(DEMO_TELEGRAM_ID),
                AuthCol.AUTHORIZED_AT: stamp(moment),
                AuthCol.PROMO_OPT_IN: "да",
            },
        )
    ]
    knowledge = gw.table(KNOWLEDGE)
    if not await knowledge.all():
        entries = demo_knowledge(working_hours) if working_hours else demo_knowledge()
        ops += [knowledge.op_insert(dict(entry)) for entry in entries]
        log.info("seeding %d demo knowledge-base entries", len(ops) - 1)
    await gw.write(ops)
