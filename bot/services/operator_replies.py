"""Operator replies: text staff type into Обращения.«Ответ оператора» is delivered to the partner exactly once.

Each poll is ONE read of three columns for every row. A reply is delivered through the delivery module
(bot/services/delivery.py: a typed record per partner, keyed by the partner's Telegram ID, fingerprinted by
the hash of the reply text; written before and after each piece of a long reply), then logged:

    SENDING → send piece(s) to Telegram → SENT → ONE write: log += «Оператор: …», G cleared → SETTLED

A crash (or a lost response) at any point is resolved on the next poll from the record:
- nothing recorded, or a different text: a new reply, deliver it;
- SENDING for this text: resumed at the piece that may have been in flight (the delivery module's one
  duplicate window);
- SENT for this text: delivered, not yet logged: only the write is redone (also when the sheet could not be
  read or written right after the send: the write waits for the next poll rather than the outbox, so it is
  made with a fresh look at G and cannot wipe a newer reply typed meanwhile);
- SETTLED for this text while G still shows it: if writes were waiting in the outbox when G was read, the
  clear had not reached the sheet yet, so wait; otherwise staff typed the same text again: deliver it anew.

Records written by older releases in the string ledger (`hash`, `hash#i`) are read as typed records, so an
upgrade never re-sends a reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from bot.services import chatlog
from bot.services.appeals import canonical_status
from bot.services.chatlog import Author
from bot.services.delivery import Deliveries, Outcome
from bot.services.message_parts import split_message
from bot.services.ports import Clock, DeliveryError, LiveSink, Messenger, utc_now
from bot.services.sheet_time import MOSCOW, stamp
from gateway import AsyncSheetsGateway, DeliveryPhase, DeliveryRecord, GatewayError, LedgerEntry, Record, normalize_key
from gateway.schemas import APPEALS, AppealCol, AppealStatus

log = logging.getLogger(__name__)

LEDGER_KIND = "operator-reply"
# The string ledger of older releases: state, and payload `hash` or `hash#i` (pieces before i were sent).
_LEGACY_PHASES = {
    "sending": DeliveryPhase.SENDING,
    "sent": DeliveryPhase.SENT,
    "cleared": DeliveryPhase.SETTLED,
    "failed": DeliveryPhase.FAILED,
}
# Statuses an operator's reply moves to `В работе` (a human is now talking; the AI must not talk over them).
_TAKE_OVER_FROM = frozenset({"", AppealStatus.NEW, AppealStatus.AI})


def reply_hash(text: str) -> str:
    """A short, stable fingerprint of a reply's text."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def legacy_record(entry: LedgerEntry) -> DeliveryRecord | None:
    """A reply recorded by an older release (`hash` / `hash#i`) as a typed delivery record."""
    if entry.state not in _LEGACY_PHASES:
        return None
    h, _, piece = entry.payload.partition("#")
    return DeliveryRecord(_LEGACY_PHASES[entry.state], h, int(piece) if piece.isdigit() else 0)


def format_operator_message(text: str) -> str:
    """How an operator's reply looks to the partner."""
    return f"Ответ оператора:\n\n{text}"


def reply_parts(messenger: Messenger, chat_id: int, text: str) -> list[Callable[[], Awaitable[None]]]:
    """An operator's reply as the parts one delivery sends: formatted, split into Telegram messages."""

    def part(piece: str) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            await messenger.send_text(chat_id, piece)

        return send

    return [part(p) for p in split_message(format_operator_message(text))]


class OperatorReplyService:
    """Polls «Ответ оператора» and delivers each reply once (see the module docstring)."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        messenger: Messenger,
        *,
        clock: Clock = utc_now,
        tz: ZoneInfo = MOSCOW,
        live: LiveSink | None = None,
    ) -> None:
        self._gw = gw
        self._live = live  # an open Mini App shows the delivered reply at once
        self._table = gw.table(APPEALS)
        self._messenger = messenger
        self._deliveries = Deliveries(gw.ledgers.deliveries(LEDGER_KIND, legacy=legacy_record))
        self._clock = clock
        self._tz = tz
        self._lock = asyncio.Lock()
        self._warned_rows: set[tuple[int, str]] = set()

    async def poll_once(self) -> int:
        """One poll: deliver every pending reply; returns how many were delivered (sent or resent)."""
        if self._lock.locked():
            return 0  # the previous poll is still running; the operator-replies job calls again
        async with self._lock:
            # Taken BEFORE the read: a clear replayed from the outbox after the read has not reached `rows`.
            journaled = self._gw.outbox_depth > 0
            try:
                rows = await self._table.select([AppealCol.TELEGRAM_ID, AppealCol.STATUS, AppealCol.OPERATOR_REPLY])
            except GatewayError as exc:
                log.warning("operator replies not polled: %s", exc)
                return 0
            delivered = 0
            seen: set[str] = set()
            for row in rows:
                raw_id = normalize_key(row[AppealCol.TELEGRAM_ID])
                first = raw_id not in seen  # the gateway addresses a Telegram ID's first row only
                seen.add(raw_id)
                if row[AppealCol.OPERATOR_REPLY].strip():
                    if not first and raw_id:
                        # A copy of the partner's row: its G could never be cleared, so it would go out again
                        # on every poll. Staff are told to type the reply into the partner's first row.
                        await self._warn_duplicate(row.row, raw_id)
                        continue
                    try:
                        delivered += await self._handle(row, journaled)
                    except GatewayError as exc:
                        log.warning("operator reply for row %d postponed: %s", row.row, exc)
            return delivered

    async def _handle(self, row: Record, journaled: bool) -> int:
        raw_id, text = normalize_key(row[AppealCol.TELEGRAM_ID]), row[AppealCol.OPERATOR_REPLY].strip()
        if not raw_id.lstrip("-").isdigit():
            if (row.row, raw_id) not in self._warned_rows:
                self._warned_rows.add((row.row, raw_id))
                log.warning("Обращения row %d has a reply but no valid Telegram ID (%r)", row.row, raw_id)
            return 0
        chat_id = int(raw_id)
        h = reply_hash(text)
        record = await self._deliveries.record(raw_id)
        same = record is not None and record.fingerprint == h
        if same and record is not None and record.phase is DeliveryPhase.FAILED:
            return 0  # undeliverable (e.g. the partner blocked the bot); staff were told, G is left for them
        if same and record is not None and record.phase is DeliveryPhase.SETTLED:
            if journaled or self._gw.outbox_depth:
                return 0  # the clearing write was still queued in the outbox when G was read
            same = False  # staff typed the same text again: a new reply
        delivered = 0
        if not (same and record is not None and record.phase is DeliveryPhase.SENT):
            # A reply longer than one Telegram message goes out piece by piece, each recorded, so a failure
            # midway resends only the pieces not yet accepted.
            parts = reply_parts(self._messenger, chat_id, text)
            result = await self._deliveries.deliver(raw_id, h, parts, fresh=not same)
            if result.outcome is Outcome.RETRY:
                log.warning("operator reply to %s not delivered yet: %s", chat_id, result.error)
                return 0  # stays SENDING at this piece: the next poll tries again
            if result.outcome is Outcome.FAILED:
                assert isinstance(result.error, DeliveryError)
                await self._notify_failure(chat_id, text, result.error)
                return 0
            delivered = 1
        try:
            await self._log_and_clear(row, raw_id, text)
        except GatewayError as exc:
            # Stays SENT: the next poll redoes only the write (with a fresh look at G), never the send.
            log.warning("operator reply to %s sent; logging it postponed: %s", chat_id, exc)
            return delivered
        await self._deliveries.settle(raw_id, h)
        return delivered

    async def _log_and_clear(self, row: Record, raw_id: str, text: str) -> None:
        """ONE write: «Оператор: …» appended to the log, G cleared (if unchanged), «Обновлено», status."""
        now = self._clock()
        values: dict[str, str] = {AppealCol.UPDATED: stamp(now, self._tz)}
        # Staff may have typed a newer reply while we were sending: clear G only if it still holds this one.
        current = await self._table.get(raw_id)
        if current is None or current[AppealCol.OPERATOR_REPLY].strip() == text:
            values[AppealCol.OPERATOR_REPLY] = ""
        status = canonical_status((current or row)[AppealCol.STATUS])
        if status in _TAKE_OVER_FROM:
            values[AppealCol.STATUS] = AppealStatus.IN_WORK
        block = chatlog.format_entry(now.astimezone(self._tz), Author.OPERATOR, text)
        await self._gw.write(
            [
                self._table.op_append_text(
                    raw_id, AppealCol.LOG, block, values=values, create=False, archive_overflow=True
                )
            ]
        )
        if self._live is not None:
            self._live.entries_added(int(raw_id), chatlog.parse(block, self._tz))
            if AppealCol.STATUS in values:
                self._live.status_changed(int(raw_id), values[AppealCol.STATUS])

    async def _warn_duplicate(self, row: int, raw_id: str) -> None:
        if (row, raw_id) in self._warned_rows:
            return
        self._warned_rows.add((row, raw_id))
        log.warning("Обращения row %d repeats Telegram ID %s: its reply is not sent", row, raw_id)
        try:
            await self._messenger.notify_staff(
                f"❗ Ответ оператора в строке {row} листа «Обращения» не отправлен: Telegram ID {raw_id} "
                "уже есть в строке выше. Перенесите ответ в первую строку этого партнёра, а копию удалите."
            )
        except Exception:
            log.exception("staff notification failed")

    async def _notify_failure(self, chat_id: int, text: str, exc: DeliveryError) -> None:
        try:
            await self._messenger.notify_staff(
                f"❗ Ответ оператора не доставлен (Telegram ID {chat_id}): {exc}\n\n{text}\n\n"
                "Ответ остался в колонке «Ответ оператора»; очистите её, когда вопрос решён другим способом."
            )
        except Exception:
            log.exception("staff notification failed")
