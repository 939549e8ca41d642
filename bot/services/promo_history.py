"""Promotions a partner has received, for the Mini App's «Акции» tab.

What was sent is known from the broadcast's delivery ledger (one entry per promotion and recipient, see
bot/services/promotions.py); the text comes from Акции as it reads now. Everything the Mini App needs from
the delivery records goes through `sent_to`, so a change of the ledger touches one function.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.services.promotions import LEDGER_PREFIX, SENT, Promotion
from gateway import AsyncSheetsGateway
from gateway.schemas import PROMOTIONS


@dataclass(frozen=True, slots=True)
class SentPromotion:
    """One promotion as the partner received it; `picture` is a fetchable URL or ''."""

    id: str
    title: str
    text: str
    picture: str
    sent_at: datetime


async def sent_to(gw: AsyncSheetsGateway, telegram_id: int) -> list[SentPromotion]:
    """Promotions delivered to this partner, newest first (one read of Акции, then the local ledger)."""
    promos = [Promotion.from_record(r) for r in await gw.table(PROMOTIONS).all()]
    promos = [p for p in promos if p.id]
    entries = await asyncio.gather(*(gw.state.ledger_get(LEDGER_PREFIX + p.id, str(telegram_id)) for p in promos))
    out = [
        SentPromotion(p.id, p.title, p.text, p.picture_url or "", datetime.fromtimestamp(e.updated, UTC))
        for p, e in zip(promos, entries, strict=True)
        if e is not None and e.state == SENT
    ]
    return sorted(out, key=lambda s: s.sent_at, reverse=True)
