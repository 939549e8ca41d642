"""Bounded growth: delivered analytics requests move to «Очередь архив», old state-store entries are pruned.

Run hourly. Очередь keeps what is pending and what was delivered within QUEUE_RETENTION_DAYS; the state store
keeps delivery ledgers while they can still matter and per-day counters for a week.
"""

from __future__ import annotations

import logging
from datetime import timedelta, tzinfo

from bot.services.ports import Clock, utc_now
from bot.services.sheet_time import MOSCOW, parse_stamp
from gateway import AsyncSheetsGateway, GatewayError, MoveResult, Record, move_rows, prune_state
from gateway.schemas import QUEUE, QUEUE_ARCHIVE, QueueCol, QueueStatus

log = logging.getLogger(__name__)

COUNTER_DAYS = 7  # the AI-answer counters are per day; /stats shows today
LEDGER_GRACE_DAYS = 30  # a delivery ledger outlives its queue row by this much (a late replay still finds it)


class RetentionService:
    """Archives delivered queue rows past the retention and prunes the state store."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        *,
        queue_retention_days: int = 30,
        clock: Clock = utc_now,
        tz: tzinfo = MOSCOW,
    ) -> None:
        self._gw = gw
        self._retention = timedelta(days=queue_retention_days)
        self._clock = clock
        self._tz = tz

    async def run_once(self) -> MoveResult:
        """One pass: move expired rows in one batch, then prune ledgers and counters."""
        now = self._clock()
        cutoff = now - self._retention

        def expired(rec: Record) -> bool:
            status = rec[QueueCol.STATUS].strip().upper()
            delivered = parse_stamp(rec[QueueCol.DELIVERED_AT], self._tz)
            return status in (QueueStatus.DONE, QueueStatus.ERROR) and delivered is not None and delivered < cutoff

        def in_progress(rec: Record) -> bool:
            # The Apps Script worker finds its row by id, then writes by row number: do not shift rows meanwhile.
            return rec[QueueCol.STATUS].strip().upper() in (QueueStatus.NEW, QueueStatus.PROCESSING)

        try:
            result = await move_rows(self._gw, QUEUE, QUEUE_ARCHIVE, expired, hold_if=in_progress)
        except GatewayError as exc:
            log.warning("queue archiving postponed: %s", exc)
            result = MoveResult(skipped=str(exc))
        days = self._retention.days + LEDGER_GRACE_DAYS
        ledgers, counters = await prune_state(
            self._gw, ledger_days=days, counter_days=COUNTER_DAYS, today=now.astimezone(self._tz).date().isoformat()
        )
        if result.moved or ledgers or counters:
            log.info(
                "retention: %d queue rows archived, %d ledger and %d counter entries pruned",
                result.moved,
                ledgers,
                counters,
            )
        return result
