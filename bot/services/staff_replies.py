"""Staff answer from Telegram: «Взять» / «Решено» on a notice, and a Telegram reply that reaches the partner once.

Every staff-chat notice about a partner (an escalation, a message while «В работе», an AI failure) is posted
through `post_notice`, which remembers durably (state store, ledger `staff-notice`: the notice's message id →
the partner's Telegram ID) whom it is about. Then, for a member of the staff chat only:

- «Взять» sets «Статус» = `В работе` and edits the notice to «Взял(а): <имя>»;
- «Решено» sets `Решено` (the partner is back with the AI) and edits the notice to «Решено: <имя>»;
- a Telegram reply to such a notice is journaled first (ledger `staff-reply`, keyed by the reply's own
  message id, so a redelivered update is the same reply), then delivered through the delivery module
  (bot/services/delivery.py, the same exactly-once rule as column G), then logged in «текст_обращений» as
  `Оператор (<имя>): …` in ONE write (status `В работе` when it was `Новое`/`Ответ ИИ`, as for column G).

A crash anywhere is picked up by `resume_pending` (a periodic job): a reply not yet accepted is sent from the
part in flight (the delivery module's one duplicate window), one already sent is only logged, one already
logged is left alone (the log entry is written with the time stamped at the journal, so finding it in the
log means it was written).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.services import chatlog
from bot.services.appeals import canonical_status
from bot.services.chatlog import Author
from bot.services.delivery import Deliveries, Outcome
from bot.services.locks import KeyedLock
from bot.services.operator_replies import reply_hash, reply_parts
from bot.services.ports import Clock, InlineButton, Messenger, StaffChat, utc_now
from bot.services.sheet_time import MOSCOW, stamp
from gateway import AsyncSheetsGateway, DeliveryPhase, GatewayError
from gateway.schemas import APPEALS, AppealCol, AppealStatus

log = logging.getLogger(__name__)

REPLY_KIND = "staff-reply"
CALLBACK_PREFIX = "staff"
TAKE, SOLVE = "take", "solve"
# Statuses a human reply moves to `В работе` (a human is now talking; the AI must not talk over them).
_TAKE_OVER_FROM = frozenset({"", AppealStatus.NEW, AppealStatus.AI})
_TAKEN_MARK, _SOLVED_MARK = "✋ Взял(а): ", "✅ Решено: "


@dataclass(frozen=True)
class StaffMember:
    """Who pressed a button or replied in the staff chat."""

    user_id: int
    name: str


class ReplyOutcome(StrEnum):
    """What became of a staff member's Telegram reply."""

    DELIVERED = "delivered"  # sent to the partner and logged (or already was)
    PENDING = "pending"  # journaled; Telegram or the sheet failed for now, the periodic job finishes it
    FAILED = "failed"  # Telegram refuses for good (the partner blocked the bot); staff told
    NOT_A_NOTICE = "not-a-notice"  # a reply to a message that is about no partner: staff talking, ignored
    NOT_MEMBER = "not-member"  # not a member of the staff chat: ignored


def callback_data(action: str, telegram_id: int) -> str:
    """The button payload: `staff:take:<Telegram ID>` (well under Telegram's 64 bytes)."""
    return f"{CALLBACK_PREFIX}:{action}:{telegram_id}"


def notice_buttons(telegram_id: int, *, taken: bool = False) -> list[InlineButton]:
    """«Взять» and «Решено» (after taking, «Решено» only)."""
    solve = InlineButton("Решено", callback_data(SOLVE, telegram_id))
    return [solve] if taken else [InlineButton("Взять", callback_data(TAKE, telegram_id)), solve]


class StaffDesk:
    """The staff chat as a place to answer partners (see the module docstring)."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        messenger: Messenger,
        chat: StaffChat,
        *,
        clock: Clock = utc_now,
        tz: ZoneInfo = MOSCOW,
    ) -> None:
        self._gw = gw
        self._table = gw.table(APPEALS)
        self._messenger = messenger
        self._chat = chat
        self._clock = clock
        self._tz = tz
        self._deliveries = Deliveries(gw.ledgers.deliveries(REPLY_KIND))
        self._jobs = gw.ledgers.jobs(REPLY_KIND)  # the replies journaled before they are delivered
        self._locks = KeyedLock()
        # Held while a notice is posted and recorded: a reply to it that arrives meanwhile waits for the record.
        self._posting = asyncio.Lock()

    # -- notices -------------------------------------------------------------------------------

    async def post_notice(self, telegram_id: int, text: str, *, actions: bool) -> None:
        """Post a notice about a partner (with «Взять»/«Решено» when `actions`) and remember whom it is about."""
        try:
            buttons = notice_buttons(telegram_id) if actions else []
            async with self._posting:
                ids = await self._chat.post(text, buttons)
                for message_id in ids:
                    await self._gw.ledgers.staff_notices.link(message_id, telegram_id)
        except Exception:  # the partner's turn must not fail because the staff chat did
            log.exception("staff notice about %s failed", telegram_id)

    async def partner_of(self, message_id: int) -> int | None:
        """The partner a staff-chat message of the bot is about, if it is a notice."""
        return await self._gw.ledgers.staff_notices.partner_of(message_id)

    # -- buttons -------------------------------------------------------------------------------

    async def press(self, action: str, telegram_id: int, who: StaffMember, message_id: int, notice: str) -> str:
        """«Взять» or «Решено» pressed under notice `message_id`; returns the short answer for the button."""
        if action not in (TAKE, SOLVE):
            return "Неизвестная кнопка."
        if not await self._is_member(who):
            return "Кнопки — только для сотрудников из чата поддержки."
        status = AppealStatus.IN_WORK if action == TAKE else AppealStatus.SOLVED
        now = self._clock()
        values: dict[str, str] = {AppealCol.STATUS: status, AppealCol.UPDATED: stamp(now, self._tz)}
        try:
            await self._gw.write([self._table.op_upsert(str(telegram_id), values, create=False)])
        except GatewayError as exc:
            log.warning("staff %s could not %s partner %s: %s", who.name, action, telegram_id, exc)
            return "Таблица сейчас недоступна — попробуйте ещё раз через минуту."
        mark = _TAKEN_MARK if action == TAKE else _SOLVED_MARK
        lines = [ln for ln in notice.rstrip().split("\n") if not ln.startswith((_TAKEN_MARK, _SOLVED_MARK))]
        text = "\n".join(lines).rstrip() + f"\n\n{mark}{chatlog.safe_name(who.name) or who.user_id}"
        await self._chat.edit(message_id, text, notice_buttons(telegram_id, taken=True) if action == TAKE else [])
        log.info("staff %s (%s) set %s for partner %s", who.name, who.user_id, status, telegram_id)
        if action == TAKE:
            return "Обращение ваше: статус «В работе». Ответьте на уведомление (Reply), чтобы написать партнёру."
        return "Отмечено «Решено»: партнёру снова отвечает ассистент."

    # -- replies -------------------------------------------------------------------------------

    async def reply(self, message_id: int, reply_to: int, who: StaffMember, text: str) -> ReplyOutcome:
        """A staff member's Telegram reply (`message_id`) to the bot's message `reply_to`: deliver it once."""
        async with self._posting:
            pass  # a notice being posted right now is recorded first
        telegram_id = await self.partner_of(reply_to)
        if telegram_id is None or not text.strip():
            return ReplyOutcome.NOT_A_NOTICE
        if not await self._is_member(who):
            log.warning("reply by %s (%s), not a staff chat member, ignored", who.name, who.user_id)
            return ReplyOutcome.NOT_MEMBER
        key = str(message_id)
        async with self._locks(telegram_id):
            if await self._jobs.get(key) is None:  # a redelivered update is the same reply
                block = chatlog.format_entry(
                    self._clock().astimezone(self._tz), Author.OPERATOR, text.strip(), name=who.name
                )
                await self._jobs.add(
                    key, {"partner": telegram_id, "name": who.name, "text": text.strip(), "block": block}
                )
            return await self._process(key, first_try=True)

    async def resume_pending(self) -> int:
        """Finish every journaled reply (after a crash or a failure); returns how many were delivered now."""
        done = 0
        for pending in await self._jobs.pending():
            async with self._locks(int(pending.data["partner"])):
                if await self._process(pending.key, first_try=False) is ReplyOutcome.DELIVERED:
                    done += 1
        return done

    async def _process(self, key: str, *, first_try: bool) -> ReplyOutcome:
        """Deliver, log and close one journaled reply; the staff member hears the outcome (a wait only once)."""
        journaled = await self._jobs.get(key)
        if journaled is None or not journaled.pending:
            return ReplyOutcome.DELIVERED
        job = journaled.data
        telegram_id, text, block = int(job["partner"]), str(job["text"]), str(job["block"])
        h = reply_hash(text)
        result = await self._deliveries.deliver(key, h, reply_parts(self._messenger, telegram_id, text))
        if result.outcome is Outcome.RETRY:
            log.warning("staff reply %s to %s not delivered yet: %s", key, telegram_id, result.error)
            if first_try:
                await self._tell(key, "⏳ Telegram не ответил; ответ будет отправлен партнёру автоматически.")
            return ReplyOutcome.PENDING
        if result.outcome in (Outcome.FAILED, Outcome.ABANDONED):
            await self._jobs.finish(key)
            await self._tell(key, f"❗ Ответ не доставлен партнёру: {result.record.note}")
            return ReplyOutcome.FAILED
        if result.record.phase is not DeliveryPhase.SETTLED:
            try:
                await self._log(telegram_id, block)
            except GatewayError as exc:
                log.warning("staff reply %s sent; logging it postponed: %s", key, exc)
                return ReplyOutcome.PENDING  # stays SENT: the periodic job redoes only the write
            await self._deliveries.settle(key, h)
        await self._jobs.finish(key)
        log.info("staff reply %s by %s delivered to %s", key, job.get("name", ""), telegram_id)
        await self._tell(key, "✅ Отправлено партнёру.")
        return ReplyOutcome.DELIVERED

    async def _log(self, telegram_id: int, block: str) -> None:
        """ONE write: the entry appended to the log (unless already there), «Обновлено», the status."""
        row = await self._table.get(str(telegram_id))
        if row is not None and block in row[AppealCol.LOG]:
            return  # written before a crash that came before the record
        values: dict[str, str] = {AppealCol.UPDATED: stamp(self._clock(), self._tz)}
        if row is None or canonical_status(row[AppealCol.STATUS]) in _TAKE_OVER_FROM:
            values[AppealCol.STATUS] = AppealStatus.IN_WORK
        op = self._table.op_append_text(
            str(telegram_id), AppealCol.LOG, block, values=values, create=False, archive_overflow=True
        )
        await self._gw.write([op])

    async def _tell(self, key: str, text: str) -> None:
        """A short note in the staff chat, as a reply to the staff member's message."""
        try:
            await self._chat.post(text, [], reply_to=int(key))
        except Exception:
            log.exception("staff chat note failed")

    async def _is_member(self, who: StaffMember) -> bool:
        try:
            return await self._chat.is_member(who.user_id)
        except Exception as exc:  # unknown is not a member: a reply must never leak in from outside
            log.warning("membership of %s in the staff chat unknown: %s", who.user_id, exc)
            return False
