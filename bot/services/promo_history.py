"""Promotions a partner has received, for the Mini App's «Акции» tab.

What was sent is known from the broadcast's delivery ledger (one entry per promotion and recipient, see
bot/services/promotions.py); the text comes from Акции as it reads now. Everything the Mini App needs from
the delivery records goes through `sent_to`, so a change of the ledger touches one function.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.services.promotions import LEDGER_PREFIX, Promotion, legacy_record
from gateway import AsyncSheetsGateway, DeliveryPhase, DeliveryRecord
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
    records = await asyncio.gather(*(_record(gw, LEDGER_PREFIX + p.id, str(telegram_id)) for p in promos))
    out = [
        SentPromotion(p.id, p.title, p.text, p.picture_url or "", datetime.fromtimestamp(updated, UTC))
        for p, (record, updated) in zip(promos, records, strict=True)
        if record is not None and record.phase in (DeliveryPhase.SENT, DeliveryPhase.SETTLED)
    ]
    return sorted(out, key=lambda s: s.sent_at, reverse=True)


async def _record(gw: AsyncSheetsGateway, kind: str, key: str) -> tuple[DeliveryRecord | None, float]:
    """The recipient's delivery record and when it was written (an older release's ledger entry as a fallback)."""
    record = await gw.ledgers.deliveries(kind, legacy=legacy_record).get(key)
    return (record, record.updated) if record is not None else (None, 0.0)
