"""The Telegram assistant end to end: real python-telegram-bot long-polling the fake Bot API, the real gateway
(local store, and Google via real gspread against the fake Sheets API), real google-genai against fake Gemini."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import AIORateLimiter

from bot.ai.fallback import OPERATOR_NOTIFIED, FallbackAI
from bot.ai.gemini import GeminiProvider
from bot.ai.offline import OFFLINE_INTRO
from bot.ai.prompt import SystemPrompt
from bot.ai.resilience import AIRetryPolicy
from bot.jobs import Periodic
from bot.services.appeals import TEXT_ESCALATED, AppealsService, WorkingHours, limit_text
from bot.services.auth import TEXT_NOT_OWN_CONTACT, AuthService
from bot.services.knowledge import KnowledgeBase
from bot.services.operator_replies import OperatorReplyService, format_operator_message
from bot.services.partner_limits import PartnerRateLimiter
from bot.telegram.context import BotContext, bot_context
from bot.telegram.handlers.chat import (
    CALLBACK_HUMAN,
    TEXT_GREETING,
    TEXT_NON_TEXT,
    TEXT_UNAUTHORIZED,
    register_chat_handlers,
)
from bot.telegram.messenger import TelegramMessenger
from bot.telegram.ordering import PerChatUpdateProcessor
from gateway import AsyncSheetsGateway, GatewayConfig, build_gateway
from gateway.schemas import APPEALS, AUTH, AppealCol, AuthCol
from tests.chat_support import (
    FAST_RETRY,
    PROMPT_PATH,
    FlakyBackend,
    ManualClock,
    add_demo_partner,
    add_fact,
    chat_gateway_config,
    moscow,
)
from tests.fakes.gemini_server import FakeGeminiServer, last_user_text
from tests.fakes.sheets_server import FakeSheetsServer
from tests.fakes.telegram_server import FakeTelegramServer, SentMessage
from tests.telegram_support import fake_bot_app, long_polling

PARTNER = 100001
NEWCOMER = 100002
STRANGER = 300003
STAFF_CHAT = -1001234
POLL = 0.05
AI_RETRY = AIRetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, max_retry_after=0.5, deadline=3.0)


@dataclass
class World:
    """Everything one e2e test drives and inspects."""

    tg: FakeTelegramServer
    gemini: FakeGeminiServer
    gw: AsyncSheetsGateway
    services: BotContext
    prompt: SystemPrompt
    clock: ManualClock
    set_sheet_down: Callable[[bool], None]
    said: list[tuple[float, int, str]] = field(default_factory=list)
    app: Any = None  # the PTB Application (its bot_data)

    async def appeal(self, tid: int = PARTNER) -> dict[str, str]:
        """The partner's Обращения row, read fresh."""
        rec = await self.gw.table(APPEALS).get(str(tid))
        assert rec is not None
        return dict(rec)

    async def staff_sets(self, tid: int, values: dict[str, str]) -> None:
        """Staff type into the partner's Обращения row."""
        await self.gw.table(APPEALS).write([self.gw.table(APPEALS).op_upsert(str(tid), values, create=False)])

    def user_writes(self, text: str, tid: int = PARTNER) -> None:
        """The user writes (recorded for the transcript)."""
        self.said.append((time.time(), tid, text))
        self.tg.user_sends_text(tid, text)

    async def say(self, text: str, tid: int = PARTNER, wait: float = 5.0) -> SentMessage:
        """The user writes; returns the bot's next message to them."""
        self.user_writes(text, tid)
        return await self.tg.wait_for_sent(chat_id=tid, method="sendMessage", timeout=wait)

    async def settle(self, polls: int = 4) -> None:
        """Let the bot fetch every update and the jobs run a few times."""
        await self.tg.wait_for_delivery()
        await asyncio.sleep(POLL * polls)


def text_of(message: SentMessage) -> str:
    """What the user sees."""
    return message.plain_text or message.text or ""


def transcript(world: World, chats: tuple[int, ...]) -> str:
    """The conversation in time order: user messages and what the bot sent to `chats` (shown with `pytest -s`)."""
    events = [(at, f"{tid} → бот: {text}") for at, tid, text in world.said if tid in chats]
    for m in world.tg.sent:
        if m.method == "sendMessage" and m.chat_id in chats:
            labels = [b["text"] for row in m.inline_keyboard for b in row]
            buttons = f"  [кнопки: {', '.join(labels)}]" if labels else ""
            events.append((m.timestamp, f"бот → {m.chat_id}: {text_of(m)}{buttons}"))
    return "\n".join(line for _, line in sorted(events, key=lambda e: e[0]))


def answer_with_turn_number(body: dict[str, Any]) -> str:
    """A deterministic model: names the turn (how many user turns it saw) and echoes the question."""
    users = sum(1 for c in body.get("contents", []) if c.get("role") == "user")
    return f"Ответ на «{last_user_text(body)}» (реплик партнёра в истории: {users})."


@pytest.fixture(params=["local", "google"])
async def world(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    telegram_server: FakeTelegramServer,
    gemini_server: FakeGeminiServer,
) -> AsyncIterator[World]:
    """The assistant running against the fakes, with the demo partner authorized and one knowledge entry."""
    sheets: FakeSheetsServer | None = None
    if request.param == "google":
        sheets = FakeSheetsServer().start()
        cfg = GatewayConfig(
            backend="google",
            local_db_path=tmp_path / "sheets.db",
            spreadsheet_id=sheets.spreadsheet_id,
            sheets_api_base_url=sheets.url,
            request_timeout=2.0,
            reads_per_minute=None,
            writes_per_minute=None,
            retry=FAST_RETRY,
            replay_interval=0.05,
            breaker_fail_max=50,
            breaker_reset_timeout=0.1,
        )
    else:
        cfg = chat_gateway_config(tmp_path)
    gw = build_gateway(cfg)
    flaky = FlakyBackend(gw.backend.inner)
    gw.backend.inner = flaky

    def set_sheet_down(down: bool) -> None:
        if sheets is not None:
            sheets.set_outage(down)
        else:
            flaky.down = down

    await gw.start()
    await gw.ensure_sheets()
    await add_demo_partner(gw, PARTNER)
    await gw.table(AUTH).write(
        [
            gw.table(AUTH).op_insert(
                {AuthCol.CODE: "P-002", AuthCol.PHONE: "8 (916) 555-44-33", AuthCol.NAME: "Новый Партнёр"}
            )
        ]
    )
    await add_fact(gw, "Какое вознаграждение у партнёра?", "50% от комиссии агентства по сделке.", "комиссия, процент")

    gemini_server.set_responder(answer_with_turn_number)
    clock = ManualClock(moscow(2026, 11, 23, 14, 5))
    app = fake_bot_app(
        telegram_server, rate_limiter=AIORateLimiter(max_retries=2), concurrent_updates=PerChatUpdateProcessor(64)
    )
    messenger = TelegramMessenger(app.bot, staff_chat_id=STAFF_CHAT)
    gemini = GeminiProvider(
        api_key="test-key", model="gemini-test", base_url=gemini_server.url, timeout=2.0, retry=AI_RETRY
    )
    prompt = SystemPrompt(PROMPT_PATH)
    knowledge = KnowledgeBase(gw, refresh_seconds=0.0)
    replies = OperatorReplyService(gw, messenger, clock=clock)
    services = BotContext(
        auth=AuthService(gw, clock=clock, monotonic=clock.monotonic),
        appeals=AppealsService(
            gw,
            FallbackAI(gemini),
            prompt,
            knowledge,
            messenger,
            daily_limit=5,
            working_hours=WorkingHours(),
            clock=clock,
            monotonic=clock.monotonic,
        ),
        messenger=messenger,
    )
    register_chat_handlers(app, services)
    job = Periodic("operator-replies", POLL, replies.poll_once, first=POLL)  # as in bot/app.py
    try:
        async with long_polling(app):
            job.start()
            try:
                yield World(telegram_server, gemini_server, gw, services, prompt, clock, set_sheet_down, app=app)
            finally:
                await job.stop()
    finally:
        set_sheet_down(False)
        await gemini.aclose()
        await gw.close()
        if sheets is not None:
            sheets.stop()


async def test_authorize_by_own_contact_only(world: World) -> None:
    """/start asks for the phone; someone else's contact is refused; the own contact authorizes and opens a row."""
    tg = world.tg
    tg.user_sends_command(NEWCOMER, "/start")
    greeting = await tg.wait_for_sent(chat_id=NEWCOMER)
    assert text_of(greeting) == TEXT_GREETING
    assert greeting.reply_markup is not None and greeting.reply_markup["keyboard"][0][0]["request_contact"] is True
    tg.user_sends_contact(NEWCOMER, "+79165554433", contact_user_id=STRANGER)
    refused = await tg.wait_for_sent(chat_id=NEWCOMER)
    assert text_of(refused) == TEXT_NOT_OWN_CONTACT
    tg.user_sends_contact(NEWCOMER, "79165554433")
    welcome = await tg.wait_for_sent(chat_id=NEWCOMER)
    assert text_of(welcome).startswith("Новый Партнёр, добро пожаловать!")
    assert welcome.reply_markup == {"remove_keyboard": True}
    row = await world.gw.table(AUTH).get("P-002")
    assert row is not None and row[AuthCol.STATUS] == "authorized" and row[AuthCol.TELEGRAM_ID] == str(NEWCOMER)
    assert row[AuthCol.AUTHORIZED_AT] == "2026-11-23 14:05:00"
    appeal = await world.appeal(NEWCOMER)
    assert appeal[AppealCol.STATUS] == "Новое" and appeal[AppealCol.CODE] == "P-002"
    answer = await world.say("Привет!", tid=NEWCOMER)
    assert "Привет!" in text_of(answer)


async def test_three_turns_exact_history_and_log(world: World) -> None:
    """Three turns: the model gets exactly the log's history, E holds exactly the turns, staff edits are seen."""
    r1 = await world.say("Какой у меня процент?")
    assert text_of(r1) == "Ответ на «Какой у меня процент?» (реплик партнёра в истории: 1)."
    assert r1.parse_mode is None and r1.button_data == [CALLBACK_HUMAN]
    world.clock.advance(minutes=1)
    r2 = await world.say('Формула =IMPORTXML("http://x.example","//a") и символы _*[ ок?')
    assert (
        text_of(r2)
        == 'Ответ на «Формула =IMPORTXML("http://x.example","//a") и символы _*[ ок?» (реплик партнёра в истории: 2).'
    )
    log2 = (await world.appeal())[AppealCol.LOG]
    assert log2 == (
        "[2026-11-23 14:05] Пользователь: Какой у меня процент?\n"
        "[2026-11-23 14:05] ИИ: Ответ на «Какой у меня процент?» (реплик партнёра в истории: 1).\n"
        '[2026-11-23 14:06] Пользователь: Формула =IMPORTXML("http://x.example","//a") и символы _*[ ок?\n'
        '[2026-11-23 14:06] ИИ: Ответ на «Формула =IMPORTXML("http://x.example","//a") и символы _*[ ок?» '
        "(реплик партнёра в истории: 2)."
    )
    # Staff correct the first answer by hand between turns.
    edited = log2.replace(
        "ИИ: Ответ на «Какой у меня процент?» (реплик партнёра в истории: 1).", "ИИ: 50% по договору."
    )
    await world.staff_sets(PARTNER, {AppealCol.LOG: edited})
    world.clock.advance(minutes=1)
    r3 = await world.say("Спасибо")
    assert text_of(r3) == "Ответ на «Спасибо» (реплик партнёра в истории: 3)."
    requests = world.gemini.requests
    assert len(requests) == 3
    assert requests[0].contents == (("user", "Какой у меня процент?"),)
    assert requests[2].contents == (
        ("user", "Какой у меня процент?"),
        ("model", "50% по договору."),
        ("user", 'Формула =IMPORTXML("http://x.example","//a") и символы _*[ ок?'),
        (
            "model",
            'Ответ на «Формула =IMPORTXML("http://x.example","//a") и символы _*[ ок?» (реплик партнёра в истории: 2).',
        ),
        ("user", "Спасибо"),
    )
    assert requests[0].system_instruction is not None
    assert requests[0].system_instruction.startswith(world.prompt.text)
    assert "50% от комиссии агентства по сделке." in requests[0].system_instruction  # the knowledge base
    final = await world.appeal()
    assert final[AppealCol.LOG] == (
        edited + "\n[2026-11-23 14:07] Пользователь: Спасибо\n"
        "[2026-11-23 14:07] ИИ: Ответ на «Спасибо» (реплик партнёра в истории: 3)."
    )
    assert final[AppealCol.STATUS] == "Ответ ИИ" and final[AppealCol.UPDATED] == "2026-11-23 14:07:00"
    print("\n" + transcript(world, (PARTNER,)))


async def test_escalation_operator_reply_and_return_to_ai(world: World) -> None:
    """Escalation silences the AI, the operator's reply is delivered once, status Ответ ИИ brings the AI back."""
    await world.say("Сколько ждать выплату?")
    escalated = await world.say("Позовите менеджера")
    assert text_of(escalated) == TEXT_ESCALATED and escalated.inline_keyboard == []
    staff = await world.tg.wait_for_sent(chat_id=STAFF_CHAT)
    assert "Демо Партнёр" in text_of(staff) and "DEMO-001" in text_of(staff) and "Позовите менеджера" in text_of(staff)
    assert (await world.appeal())[AppealCol.STATUS] == "В работе"
    world.user_writes("Жду ответа")
    await world.tg.wait_for_sent(chat_id=STAFF_CHAT)  # staff hear about it …
    await world.settle()
    assert world.tg.texts_to(PARTNER)[-1] == TEXT_ESCALATED  # … the partner hears nothing from the AI
    assert world.gemini.request_count == 1
    assert (await world.appeal())[AppealCol.LOG].endswith("Пользователь: Жду ответа")

    await world.staff_sets(PARTNER, {AppealCol.OPERATOR_REPLY: "Выплата придёт в пятницу. _Менеджер_ [Анна]"})
    reply = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(reply) == format_operator_message("Выплата придёт в пятницу. _Менеджер_ [Анна]")
    await world.settle(polls=6)
    assert world.tg.texts_to(PARTNER).count(text_of(reply)) == 1  # delivered once
    row = await world.appeal()
    assert row[AppealCol.OPERATOR_REPLY] == ""
    assert row[AppealCol.LOG].endswith("Оператор: Выплата придёт в пятницу. _Менеджер_ [Анна]")

    await world.staff_sets(PARTNER, {AppealCol.STATUS: "Ответ ИИ"})
    back = await world.say("А документы какие нужны?")
    assert text_of(back).startswith("Ответ на «А документы какие нужны?»")
    history = world.gemini.last_request.contents
    assert ("model", "Оператор: Выплата придёт в пятницу. _Менеджер_ [Анна]") in history
    print("\n" + transcript(world, (PARTNER, STAFF_CHAT)))


async def test_quick_messages_are_answered_in_order_while_others_are_served(world: World) -> None:
    """Two quick messages from one partner are answered in order (the second sees the first); another partner
    is served meanwhile."""
    world.gemini.set_latency(0.3)
    world.user_writes("Первое")
    world.user_writes("Второе")
    await world.tg.wait_for_delivery()
    world.gemini.set_latency(0.0)
    other = await world.say("Я тоже здесь", tid=NEWCOMER)
    assert text_of(other) == TEXT_UNAUTHORIZED  # not authorized, but answered without waiting for the model
    first = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    second = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(first) == "Ответ на «Первое» (реплик партнёра в истории: 1)."
    assert text_of(second) == "Ответ на «Второе» (реплик партнёра в истории: 2)."
    assert other.timestamp < first.timestamp


async def test_operator_button_escalates(world: World) -> None:
    """The «Позвать оператора» button under an answer hands the chat to a human."""
    answer = await world.say("Вопрос")
    assert answer.message_id is not None
    world.tg.user_presses_button(PARTNER, CALLBACK_HUMAN, answer.message_id)
    escalated = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(escalated) == TEXT_ESCALATED
    assert (await world.appeal())[AppealCol.STATUS] == "В работе"
    await world.tg.wait_for_sent(chat_id=STAFF_CHAT)


async def test_daily_limit(world: World) -> None:
    """After DAILY_AI_LIMIT (5) answers the partner gets the limit message instead of the model."""
    for i in range(5):
        await world.say(f"Вопрос {i}")
    limited = await world.say("Вопрос 5")
    assert text_of(limited) == limit_text(5)
    assert world.gemini.request_count == 5


async def test_messages_over_the_partner_rate_are_refused_politely_and_not_stored(world: World) -> None:
    """Past the per-partner burst a message gets a polite refusal saying it was not saved; it never reaches the
    model nor the log."""
    bot_context(world.app).rate_limiter = PartnerRateLimiter(per_minute=1, burst=2)
    for i in range(2):
        await world.say(f"Вопрос {i}")
    refused = await world.say("Лишний вопрос")
    assert "слишком часто" in text_of(refused) and "не сохранено" in text_of(refused)
    await world.settle()
    log = (await world.appeal())[AppealCol.LOG]
    assert "Вопрос 1" in log and "Лишний вопрос" not in log
    assert world.gemini.request_count == 2


async def test_gemini_down_gives_offline_answer_and_tells_staff(world: World) -> None:
    """Gemini failing: the partner gets the offline answer from the knowledge base + note; staff are notified."""
    world.gemini.fail_next(10, 503)
    reply = await world.say("какой процент у партнёра?")
    assert text_of(reply) == f"{OFFLINE_INTRO}\n\n50% от комиссии агентства по сделке.\n\n{OPERATOR_NOTIFIED}"
    staff = await world.tg.wait_for_sent(chat_id=STAFF_CHAT)
    assert "ИИ недоступен" in text_of(staff) and "Демо Партнёр" in text_of(staff)


async def test_sheet_down_turn_is_answered_and_lands_later(world: World) -> None:
    """With the sheet down the partner is still answered, with the conversation so far (the bot remembers the turn
    it answered last); the turn reaches Обращения from the outbox later."""
    await world.say("Первый")  # the bot has now seen this partner authorized
    world.set_sheet_down(True)
    reply = await world.say("Второй, пока таблица недоступна", wait=10)
    assert text_of(reply) == "Ответ на «Второй, пока таблица недоступна» (реплик партнёра в истории: 2)."
    assert world.gw.outbox_depth >= 1
    world.set_sheet_down(False)
    assert await world.gw.writer.wait_empty(10)
    log = (await world.appeal())[AppealCol.LOG]
    assert log.count("Пользователь: Первый") == 1
    assert log.endswith(
        "Пользователь: Второй, пока таблица недоступна\n"
        "[2026-11-23 14:05] ИИ: Ответ на «Второй, пока таблица недоступна» (реплик партнёра в истории: 2)."
    )


async def test_strangers_and_non_text(world: World) -> None:
    """An unknown user is told how to get access; a sticker gets a polite text-only note; long answers split."""
    stranger = await world.say("Привет", tid=STRANGER)
    assert text_of(stranger) == TEXT_UNAUTHORIZED
    world.tg.user_sends_sticker(PARTNER)
    note = await world.tg.wait_for_sent(chat_id=PARTNER)
    assert text_of(note) == TEXT_NON_TEXT
    world.gemini.set_responder(lambda body: "Абзац. " * 1000)
    world.tg.user_sends_text(PARTNER, "Расскажи подробно")
    first = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    second = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert len(text_of(first)) <= 4096 and len(text_of(second)) <= 4096
    assert (text_of(first) + " " + text_of(second)).split() == ("Абзац. " * 1000).split()
    assert first.inline_keyboard == [] and second.button_data == [CALLBACK_HUMAN]
