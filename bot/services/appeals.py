"""The partner's conversation: history from Обращения, the AI's answer, escalation to a human.

Stateless: every message loads the partner's row fresh (so a staff edit of the log or the status is seen by
the very next message) and writes the turn back in ONE gateway write. Turns of one partner are serialized
with a per-partner lock; different partners run concurrently and share batched sheet calls.

Status rules (column «Статус»):
- A partner's row is created with `Новое` when they authorize (`open`), or by their first message.
- An AI answer sets `Ответ ИИ`, but only when the status is something else: a turn never rewrites the
  status it read, so a staff change made while the model was thinking (e.g. to `В работе`) is not undone.
- An escalation keyword or the «Позвать оператора» button sets `В работе`. While `В работе` the AI is silent:
  messages are still appended to the log and the staff chat hears about them.
- Staff setting `Ответ ИИ` or `Решено` hands the partner back to the AI; a message after `Решено` reopens
  the conversation as `Ответ ИИ`.

Reply first, write after (`reply_first`, on in production): the turn's write is journaled durably in local
state before the reply goes out and lands in the sheet right after, off the reply's path. Every load overlays
the journaled and outboxed writes the sheet does not hold yet, so the next turn's history is never missing a
turn (during an outage too), while the sheet is still read, so staff edits are seen.

Only the partner's messages and what the assistant actually answered go into the log; canned notices (the
daily limit, "an operator will answer") are not written, so they never become part of the model's history.
A message refused for the daily limit is not written either (the partner is told so).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.ai.base import DeltaSink, Turn
from bot.ai.fallback import AIAnswer, FallbackAI
from bot.ai.prompt import SystemPrompt
from bot.services import chatlog
from bot.services.auth import Partner
from bot.services.chatlog import Author, ChatEntry
from bot.services.escalation import EscalationMatcher
from bot.services.knowledge import KnowledgeBase
from bot.services.locks import KeyedLock
from bot.services.partner_limits import StaffNoticeBatcher
from bot.services.ports import Clock, LiveSink, Messenger, StaffNotices, utc_now
from bot.services.sheet_time import MOSCOW, stamp
from bot.services.turn_context import current_turn
from gateway import AsyncSheetsGateway, GatewayError, Record, WriteOp
from gateway.schemas import APPEALS, AppealCol, AppealStatus

log = logging.getLogger(__name__)

DEFAULT_ESCALATION_KEYWORDS = ("оператор", "менеджер", "человек", "operator")
STAFF_HISTORY_ENTRIES = 6


class ReplyKind(StrEnum):
    """What kind of reply the partner gets."""

    ANSWER = "answer"  # the configured AI (or the offline responder when that is the configured provider)
    FALLBACK = "fallback"  # the provider failed: the offline answer, staff notified
    ESCALATED = "escalated"  # handed to a human
    SILENT = "silent"  # a human has the conversation: the AI says nothing
    LIMIT = "limit"  # the daily limit is reached


@dataclass(frozen=True)
class ChatReply:
    """The reply to one message: `text` ('' means send nothing), the row's status after it, and whether
    this message handed the conversation to a human."""

    text: str
    status: str
    escalated: bool = False
    kind: ReplyKind = ReplyKind.ANSWER

    @property
    def offer_operator(self) -> bool:
        """Whether to show the «Позвать оператора» button under the reply."""
        return self.kind in (ReplyKind.ANSWER, ReplyKind.FALLBACK, ReplyKind.LIMIT)


@dataclass(frozen=True)
class WorkingHours:
    """When operators answer: every day from `start` to `end` in `tz`."""

    start: dtime = dtime(9, 0)
    end: dtime = dtime(20, 0)
    tz: ZoneInfo = MOSCOW

    def is_open(self, moment: datetime) -> bool:
        """Whether an operator is on duty at `moment`."""
        local = moment.astimezone(self.tz).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # a night shift crossing midnight

    def next_opening(self, moment: datetime) -> datetime:
        """The next start of working hours after `moment` (in `tz`)."""
        local = moment.astimezone(self.tz)
        candidate = local.replace(hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0)
        return candidate if candidate > local else candidate + timedelta(days=1)

    def describe(self) -> str:
        """`с 09:00 до 20:00 по московскому времени`."""
        zone = "по московскому времени" if self.tz.key == "Europe/Moscow" else f"({self.tz.key})"
        return f"с {self.start:%H:%M} до {self.end:%H:%M} {zone}"


def canonical_status(raw: str) -> str:
    """A status as staff typed it, matched case-insensitively to the known ones (`в работе` → `В работе`)."""
    text = " ".join(raw.split())
    return next((s.value for s in AppealStatus if s.casefold() == text.casefold()), text)


def contains_keyword(text: str, keywords: Sequence[str]) -> bool:
    """Whether `text` asks to reach a person named by one of `keywords`, as whole words (bot/services/escalation.py)."""
    return EscalationMatcher(keywords).matches(text)


class AppealsService:
    """Answers partners' messages and keeps Обращения up to date."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        ai: FallbackAI,
        prompt: SystemPrompt,
        knowledge: KnowledgeBase,
        messenger: Messenger,
        *,
        daily_limit: int = 30,
        escalation_keywords: Sequence[str] = DEFAULT_ESCALATION_KEYWORDS,
        working_hours: WorkingHours | None = None,
        history_turns: int = 20,
        history_chars: int = 12_000,
        knowledge_k: int = 3,
        failure_notify_interval: float = 600.0,
        staff_notice_interval: float = 0.0,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        live: LiveSink | None = None,
        staff_notices: StaffNotices | None = None,
        reply_first: bool = False,
    ) -> None:
        self._gw = gw
        self._live = live  # open Mini Apps hear about each written turn at once
        self._staff_notices = staff_notices  # notices staff can act on from Telegram (buttons, replies)
        self._reply_first = reply_first
        self._table = gw.table(APPEALS)
        self._ai = ai
        self._prompt = prompt
        self._knowledge = knowledge
        self._messenger = messenger
        self.daily_limit = daily_limit  # 0 switches the limit off
        self._escalation = EscalationMatcher(tuple(escalation_keywords))
        self._hours = working_hours or WorkingHours()
        self._tz = self._hours.tz
        self._history_turns = history_turns
        self._history_chars = history_chars
        self._knowledge_k = knowledge_k
        self._failure_notify_interval = failure_notify_interval
        self._clock = clock
        self._monotonic = monotonic
        self._locks = KeyedLock()
        self._failure_notified: dict[int, float] = {}
        self._recent = RecentHistories()  # what each partner's last answered turn left for the next one
        # Messages sent while «В работе»: at most one staff notice per partner per interval (0: each at once).
        self._in_work_notices = StaffNoticeBatcher(
            self._notify_partner_staff, staff_notice_interval, monotonic=monotonic
        )

    # -- public API ----------------------------------------------------------------------------

    async def open(self, partner: Partner) -> None:
        """Create the partner's row with status `Новое` unless they already have one (after authorization)."""
        now = self._clock()
        try:
            await self._table.write(
                [self._table.op_upsert(str(partner.telegram_id), {}, insert_defaults=self._row_defaults(partner, now))]
            )
        except GatewayError as exc:
            log.error("could not open the Обращения row of %s: %s", partner.telegram_id, exc)

    @property
    def streams(self) -> bool:
        """Whether the AI's answers arrive piece by piece (worth showing as they are written)."""
        return self._ai.can_stream

    async def handle_message(
        self,
        telegram_id: int,
        text: str,
        authorize: Callable[[int], Awaitable[Partner | None]],
        on_delta: DeltaSink | None = None,
    ) -> tuple[Partner | None, ChatReply | None]:
        """Answer one message (or stay silent while a human has the conversation); the one entry point of a
        chat turn, for Telegram and the Mini App alike. `authorize` and the Обращения read go out together, so
        the gateway sends them as one batched call. (None, None) when the sender is not authorized.
        `on_delta` receives the AI's answer as it is written (nothing for canned replies).

        When the partner's previous turn was answered here, the model is asked at once with the history that
        turn left, while the row is read; the answer is shown only once the fresh row confirms that history
        and status (a staff edit made meanwhile restarts the turn from the fresh row). So the sheet read no
        longer sits in front of the model, yet every turn still sees what staff changed before it."""
        text = text.strip()
        async with self._locks(telegram_id):
            history = self._speculable(telegram_id, text)
            if history is None:
                partner, (row, readable) = await asyncio.gather(authorize(telegram_id), self._load(telegram_id))
                if partner is None:
                    return None, None
                return partner, await self._turn(partner, text, row, readable, on_delta)
            return await self._speculative_turn(telegram_id, text, authorize, history, on_delta)

    async def _turn(
        self, partner: Partner, text: str, row: Record | None, readable: bool, on_delta: DeltaSink | None = None
    ) -> ChatReply:
        now = self._clock()
        status = canonical_status(row[AppealCol.STATUS]) if row else ""
        entries = chatlog.parse(row[AppealCol.LOG], self._tz) if row else []
        user_block = chatlog.format_entry(now.astimezone(self._tz), Author.USER, text)
        if status == AppealStatus.IN_WORK:
            return await self._while_in_work(partner, user_block, text, now)
        if self._escalation.matches(text):
            return await self._escalate(partner, entries, [user_block], now, status)
        if await self._limit_reached(partner.telegram_id):
            # Not stored: a partner over the limit must not be able to fill the sheet (and its write quota).
            return ChatReply(limit_text(self.daily_limit), status or AppealStatus.NEW, kind=ReplyKind.LIMIT)
        # An unreadable row's status is unknown: the turn must not overwrite it (e.g. staff's В работе).
        return await self._answer(partner, text, entries, user_block, now, status if readable else None, on_delta)

    async def request_human(self, partner: Partner) -> ChatReply:
        """The «Позвать оператора» button: hand the conversation to a human."""
        async with self._locks(partner.telegram_id):
            self._recent.forget(partner.telegram_id)
            now = self._clock()
            row, _ = await self._load(partner.telegram_id)
            status = canonical_status(row[AppealCol.STATUS]) if row else ""
            if status == AppealStatus.IN_WORK:
                return ChatReply(TEXT_ALREADY_IN_WORK, status, kind=ReplyKind.ESCALATED)
            entries = chatlog.parse(row[AppealCol.LOG], self._tz) if row else []
            return await self._escalate(partner, entries, [], now, status)

    async def aclose(self) -> None:
        """Post staff notices still gathered (on shutdown)."""
        await self._in_work_notices.aclose()

    async def history(self, telegram_id: int) -> list[ChatEntry]:
        """The partner's, assistant's and operator's entries of the log, oldest first (read fresh; raises
        SheetUnavailable when down). Staff notes (untagged text, other authors) are not the partner's to read."""
        row = await self._table.get(str(telegram_id))
        row = await self._gw.turns.overlay(APPEALS.title, str(telegram_id), row, APPEALS.headers)
        entries = chatlog.parse(row[AppealCol.LOG], self._tz) if row else []
        if (
            row is not None
            and canonical_status(row[AppealCol.STATUS]) != AppealStatus.IN_WORK
            and not await self._limit_reached(telegram_id)
        ):
            # A partner looking at their conversation (the Mini App opening) is likely to write next.
            self._recent.remember(telegram_id, self._history(entries))
        return [e for e in entries if e.known_author is not None]

    # -- steps ---------------------------------------------------------------------------------

    async def _load(self, telegram_id: int) -> tuple[Record | None, bool]:
        """The partner's row (None when absent), and whether the sheet could be read at all."""
        try:
            row, readable = await self._table.get(str(telegram_id)), True
        except GatewayError as exc:
            # Answer anyway, from the journaled history: the write still lands, later, through the outbox.
            log.warning("Обращения unreadable for %s (%s); answering from the local journal", telegram_id, exc)
            row, readable = None, False
        # Writes the sheet does not hold yet (journaled turns, the outbox) complete the history.
        return await self._gw.turns.overlay(APPEALS.title, str(telegram_id), row, APPEALS.headers), readable

    async def _answer(
        self,
        partner: Partner,
        text: str,
        entries: list[ChatEntry],
        user_block: str,
        now: datetime,
        status: str | None,
        on_delta: DeltaSink | None = None,
    ) -> ChatReply:
        """The model's answer; `status` None means unknown (unreadable row): it is then left as it is."""
        history = self._history(entries)
        answer = await self._ask(text, history, on_delta)
        return await self._conclude(partner, text, history, user_block, now, status, answer)

    async def _ask(self, text: str, history: list[Turn], on_delta: DeltaSink | None) -> AIAnswer:
        return await self._ai.answer(self._prompt.text, history, text, await self._context(text), on_delta)

    async def _conclude(
        self,
        partner: Partner,
        text: str,
        history: list[Turn],
        user_block: str,
        now: datetime,
        status: str | None,
        answer: AIAnswer,
    ) -> ChatReply:
        """Count, log and remember an answer the model gave with `history` (or the fallback standing in)."""
        used = 0
        if answer.from_model and self.daily_limit:
            used = await self._gw.ledgers.ai_answers.add(str(partner.telegram_id), self._today())
        ai_block = chatlog.format_entry(self._clock().astimezone(self._tz), Author.AI, answer.text)
        new_status = None if status is None or status == AppealStatus.AI else AppealStatus.AI
        kind = ReplyKind.FALLBACK if answer.failed else ReplyKind.ANSWER
        reply = ChatReply(answer.text, AppealStatus.AI, kind=kind)
        await self._append(partner, [user_block, ai_block], now, new_status, reply)
        # The next turn's history as it will read back from the log (parsed from the very blocks written).
        written = chatlog.as_turns(chatlog.parse(f"{user_block}\n{ai_block}", self._tz))
        if self.daily_limit and used >= self.daily_limit:
            # The next message gets the limit's reply: it must read first, not start (and pay for) a model call.
            self._recent.forget(partner.telegram_id)
        else:
            self._recent.remember(
                partner.telegram_id, chatlog.trim_turns(history + written, self._history_turns, self._history_chars)
            )
        if answer.failed:
            await self._notify_failure(partner, text, answer)
        return reply

    def _history(self, entries: list[ChatEntry]) -> list[Turn]:
        return chatlog.to_turns(entries, self._history_turns, self._history_chars)

    # -- answering while the row is read -----------------------------------------------------------

    def _speculable(self, telegram_id: int, text: str) -> list[Turn] | None:
        """The history to ask the model with before the row is read, or None when the turn must read first:
        no previous answered turn to go by, or a message that hands the conversation to a human."""
        history = self._recent.get(telegram_id)
        if history is None or self._escalation.matches(text):
            return None
        return history

    async def _speculative_turn(
        self,
        telegram_id: int,
        text: str,
        authorize: Callable[[int], Awaitable[Partner | None]],
        history: list[Turn],
        on_delta: DeltaSink | None,
    ) -> tuple[Partner | None, ChatReply | None]:
        now = self._clock()
        held = _HeldDeltas(on_delta) if on_delta is not None else None
        asked = asyncio.create_task(self._ask(text, history, held.put if held is not None else None))
        try:
            # The daily limit is checked beside the reads, not before the model: a turn that reached it left
            # nothing to go by, so this only catches answers counted elsewhere (the other slot, a new day).
            partner, (row, readable), limited = await asyncio.gather(
                authorize(telegram_id), self._load(telegram_id), self._limit_reached(telegram_id)
            )
        except BaseException:
            self._recent.forget(telegram_id)
            await _cancelled(asked)
            raise
        if partner is None:
            self._recent.forget(telegram_id)
            await _cancelled(asked)
            return None, None
        if limited:
            await _cancelled(asked)
            return partner, await self._turn(partner, text, row, readable, on_delta)  # the limit's reply
        status = canonical_status(row[AppealCol.STATUS]) if row else ""
        entries = chatlog.parse(row[AppealCol.LOG], self._tz) if row else []
        # An unreadable row confirms nothing, but the history the last turn left is the best one there is (the
        # journal only holds turns it already includes); its status stays unknown, so it is not overwritten.
        if readable and (status == AppealStatus.IN_WORK or self._history(entries) != history):
            # Staff changed the conversation since the last turn: the fresh row decides, from the start.
            log.info("history of %s changed since its last turn: asking again from the fresh row", telegram_id)
            self._recent.forget(telegram_id)
            await _cancelled(asked)
            return partner, await self._turn(partner, text, row, readable, on_delta)
        if held is not None:
            held.release()
        answer = await asked
        user_block = chatlog.format_entry(now.astimezone(self._tz), Author.USER, text)
        reply = await self._conclude(partner, text, history, user_block, now, status if readable else None, answer)
        return partner, reply

    async def _escalate(
        self, partner: Partner, entries: list[ChatEntry], blocks: list[str], now: datetime, status: str
    ) -> ChatReply:
        self._recent.forget(partner.telegram_id)  # a human has it now: the next turn reads before anything
        reply = ChatReply(self._escalation_text(now), AppealStatus.IN_WORK, escalated=True, kind=ReplyKind.ESCALATED)
        await self._append(partner, blocks, now, AppealStatus.IN_WORK, reply)
        recent = entries[-STAFF_HISTORY_ENTRIES:] + chatlog.parse("\n".join(blocks), self._tz)
        await self._notify(
            "🔔 Партнёр просит оператора\n"
            f"{_who(partner)}\n\n"
            + ("Последние сообщения:\n" + chatlog.render(recent[-STAFF_HISTORY_ENTRIES:]) + "\n\n" if recent else "")
            + "Ответить партнёру: ответьте на это сообщение (Reply) или напишите в лист «Обращения», колонка "
            "«Ответ оператора». Чтобы вернуть партнёра ассистенту — кнопка «Решено» или статус «Ответ ИИ»/«Решено».",
            partner=partner.telegram_id,
            actions=True,
        )
        log.info("partner %s escalated (status was %r)", partner.telegram_id, status)
        return reply

    async def _while_in_work(self, partner: Partner, user_block: str, text: str, now: datetime) -> ChatReply:
        self._recent.forget(partner.telegram_id)
        reply = ChatReply("", AppealStatus.IN_WORK, kind=ReplyKind.SILENT)
        await self._append(partner, [user_block], now, None, reply)
        header = (
            f"✉️ Новое сообщение в обращении «В работе»\n{_who(partner)}\n"
            "Ответить партнёру: ответьте на это сообщение (Reply)."
        )
        await self._in_work_notices.add(partner.telegram_id, header, text)
        return reply

    async def _limit_reached(self, telegram_id: int) -> bool:
        if not self.daily_limit:
            return False
        used = await self._gw.ledgers.ai_answers.get(str(telegram_id), self._today())
        return used >= self.daily_limit

    async def _context(self, text: str) -> list[str]:
        try:
            return [e.render() for e in await self._knowledge.search(text, self._knowledge_k)]
        except Exception:  # the knowledge base is a help, never a reason not to answer
            log.exception("knowledge base search failed")
            return []

    async def _append(
        self, partner: Partner, blocks: list[str], now: datetime, status: str | None, reply: ChatReply | None = None
    ) -> None:
        """ONE write: the blocks appended to the log, «Обновлено», and the status when it changes. With
        reply_first, the write (and the reply it goes with) is journaled and lands in the sheet after the reply."""
        values: dict[str, str] = {AppealCol.UPDATED: stamp(now, self._tz)}
        if status is not None:
            values[AppealCol.STATUS] = status
        op = self._table.op_append_text(
            str(partner.telegram_id),
            AppealCol.LOG,
            "\n".join(b for b in blocks if b),
            values=dict(values),
            insert_defaults=self._row_defaults(partner, now),
            archive_overflow=True,
        )
        if self._reply_first:
            await self._journal(op, reply)  # reads overlay it from now on, so open Mini Apps may hear of it
        else:
            try:
                await self._gw.write([op])
            except GatewayError as exc:  # not an outage (those go to the outbox): bad data or a broken sheet
                log.error("could not write the turn of %s to Обращения: %s", partner.telegram_id, exc)
                return
        if self._live is not None:
            self._live.entries_added(partner.telegram_id, chatlog.parse("\n".join(b for b in blocks if b), self._tz))
            if status is not None:
                self._live.status_changed(partner.telegram_id, status)

    async def _journal(self, op: WriteOp, reply: ChatReply | None) -> None:
        """Journal the turn durably (with its reply, for a resumed update), then write it in the background."""
        turn = current_turn()
        turn_id = turn.turn_id if turn is not None and turn.turn_id else f"op:{op.op_id}"
        await self._gw.turns.commit(turn_id, op, encode_reply(reply) if reply is not None else "")

    def _row_defaults(self, partner: Partner, now: datetime) -> dict[str, str]:
        return {
            AppealCol.DATE: stamp(now, self._tz),
            AppealCol.CODE: partner.code,
            AppealCol.NAME: partner.name,
            AppealCol.STATUS: AppealStatus.NEW,
            AppealCol.UPDATED: stamp(now, self._tz),
        }

    async def _notify_failure(self, partner: Partner, text: str, answer: AIAnswer) -> None:
        last = self._failure_notified.get(partner.telegram_id)
        if last is not None and self._monotonic() - last < self._failure_notify_interval:
            return  # one note per partner per interval, not one per message during an outage
        self._failure_notified[partner.telegram_id] = self._monotonic()
        await self._notify(
            "⚠️ ИИ недоступен, партнёр получил офлайн-ответ\n"
            f"{_who(partner)}\n\nСообщение: {text}\n\nОшибка: {answer.error}\n\n"
            "Ответить можно ответом (Reply) на это сообщение или в листе «Обращения», колонка «Ответ оператора».",
            partner=partner.telegram_id,
        )

    async def _notify_partner_staff(self, telegram_id: int, text: str) -> None:
        """A gathered «В работе» notice, posted so that staff can reply to it (StaffNoticeBatcher's sender)."""
        await self._notify(text, partner=telegram_id)

    async def _notify(self, text: str, *, partner: int | None = None, actions: bool = False) -> None:
        try:
            if self._staff_notices is not None and partner is not None:
                await self._staff_notices.post_notice(partner, text, actions=actions)
                return
            await self._messenger.notify_staff(text)
        except Exception:  # the partner's turn must not fail because the staff chat did
            log.exception("staff notification failed")

    def _escalation_text(self, now: datetime) -> str:
        if self._hours.is_open(now):
            return TEXT_ESCALATED
        opening = self._hours.next_opening(now)
        local = now.astimezone(self._tz)
        day = "сегодня" if opening.date() == local.date() else "завтра"
        return (
            f"Сейчас нерабочее время: операторы отвечают {self._hours.describe()}. "
            f"Ваш вопрос передан, оператор ответит здесь {day} после {opening:%H:%M}. "
            "Пока вопрос у оператора, автоматические ответы ассистента отключены."
        )

    def _today(self) -> str:
        return self._clock().astimezone(self._tz).date().isoformat()


class RecentHistories:
    """Per partner, the model history their last answered turn left (what the next turn will most likely
    read back), for the newest `capacity` partners. A guess only: every use is checked against the sheet."""

    def __init__(self, capacity: int = 2048) -> None:
        self._capacity = capacity
        self._items: OrderedDict[int, list[Turn]] = OrderedDict()

    def get(self, telegram_id: int) -> list[Turn] | None:
        return self._items.get(telegram_id)

    def remember(self, telegram_id: int, history: list[Turn]) -> None:
        self._items[telegram_id] = history
        self._items.move_to_end(telegram_id)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def forget(self, telegram_id: int) -> None:
        self._items.pop(telegram_id, None)


class _HeldDeltas:
    """Deltas held back until the turn is confirmed (then passed on, the held ones first); dropped if not."""

    def __init__(self, sink: DeltaSink) -> None:
        self._sink = sink
        self._held: list[str] | None = []

    def put(self, text: str) -> None:
        if self._held is None:
            self._sink(text)
        else:
            self._held.append(text)

    def release(self) -> None:
        held, self._held = self._held or [], None
        if held:
            self._sink("".join(held))


async def _cancelled(task: asyncio.Task[AIAnswer]) -> None:
    """Cancel a model call whose answer will not be used, and wait until it has stopped."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _who(partner: Partner) -> str:
    code = f", код {partner.code}" if partner.code else ""
    return f"{partner.display_name}{code}, Telegram ID {partner.telegram_id}"


def encode_reply(reply: ChatReply) -> str:
    """A reply as journaled with its turn (what a resumed update sends instead of asking the model again)."""
    return json.dumps(
        {"text": reply.text, "status": reply.status, "escalated": reply.escalated, "kind": reply.kind.value},
        ensure_ascii=False,
    )


def decode_reply(raw: str) -> ChatReply | None:
    """Inverse of encode_reply (None for an empty or unreadable record)."""
    try:
        data = json.loads(raw)
        return ChatReply(str(data["text"]), str(data["status"]), bool(data["escalated"]), ReplyKind(data["kind"]))
    except (ValueError, KeyError, TypeError):
        return None


def limit_text(limit: int) -> str:
    """The message shown when the daily limit is reached."""
    return (
        f"На сегодня лимит ответов ассистента исчерпан ({limit} в день); завтра он обновится. "
        "Это сообщение не сохранено. Если вопрос срочный, напишите «оператор» — ответит сотрудник."
    )


TEXT_ESCALATED = (
    "Передал ваш вопрос оператору — он ответит здесь, в этом чате. "
    "Пока вопрос у оператора, автоматические ответы ассистента отключены."
)
TEXT_ALREADY_IN_WORK = "Оператор уже подключён к вашему вопросу и ответит здесь, в этом чате."
