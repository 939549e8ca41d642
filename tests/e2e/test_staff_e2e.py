"""Staff answer from Telegram end to end: real python-telegram-bot long-polling the fake Bot API, the real
gateway on the local store, real google-genai against fake Gemini; «Взять»/«Решено» and Telegram replies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from telegram.ext import AIORateLimiter

from bot.ai.fallback import FallbackAI
from bot.ai.gemini import GeminiProvider
from bot.ai.prompt import SystemPrompt
from bot.jobs import Periodic
from bot.services.appeals import AppealsService, WorkingHours
from bot.services.auth import AuthService
from bot.services.knowledge import KnowledgeBase
from bot.services.message_parts import split_message
from bot.services.operator_replies import OperatorReplyService, format_operator_message
from bot.services.staff_replies import StaffDesk
from bot.telegram.context import BotContext
from bot.telegram.handlers.chat import register_chat_handlers
from bot.telegram.handlers.staff import register_staff_handlers
from bot.telegram.messenger import TelegramMessenger
from bot.telegram.ordering import PerChatUpdateProcessor
from bot.telegram.staff_chat import TelegramStaffChat
from gateway import AsyncSheetsGateway, build_gateway
from gateway.schemas import APPEALS, AppealCol
from tests.chat_support import PROMPT_PATH, add_demo_partner, chat_gateway_config
from tests.fakes.gemini_server import FakeGeminiServer, last_user_text
from tests.fakes.telegram_server import FakeTelegramServer, SentMessage
from tests.telegram_support import fake_bot_app, long_polling

PARTNER = 100001
STAFF_CHAT = -1009876
OTHER_GROUP = -1005555
ANNA = 700001  # a member of the staff chat
BORIS = 700002  # an administrator
GONE = 700003  # left the staff chat
STRANGER = 700004  # never in it
POLL = 0.05


@dataclass
class Bot:
    """One running bot process (its own gateway handle, services and PTB application) over shared files."""

    gw: AsyncSheetsGateway
    desk: StaffDesk
    stack: AsyncExitStack


class World:
    """The fakes, the files and the bot process, which can be stopped and started again (a restart)."""

    def __init__(self, tmp_path: Path, tg: FakeTelegramServer, gemini: FakeGeminiServer) -> None:
        self.cfg = chat_gateway_config(tmp_path)
        self.tg = tg
        self.gemini = gemini
        self.bot: Bot | None = None

    async def start(self) -> Bot:
        """Start a bot process: gateway, services, handlers, the operator-reply and staff-reply jobs."""
        stack = AsyncExitStack()
        gw = build_gateway(self.cfg)
        await gw.start()
        stack.push_async_callback(gw.close)
        await gw.ensure_sheets()
        app = fake_bot_app(
            self.tg, rate_limiter=AIORateLimiter(max_retries=2), concurrent_updates=PerChatUpdateProcessor(64)
        )
        messenger = TelegramMessenger(app.bot, staff_chat_id=STAFF_CHAT)
        desk = StaffDesk(gw, messenger, TelegramStaffChat(app.bot, STAFF_CHAT))
        gemini = GeminiProvider(api_key="test-key", model="gemini-test", base_url=self.gemini.url, timeout=2.0)
        stack.push_async_callback(gemini.aclose)
        prompt = SystemPrompt(PROMPT_PATH)
        knowledge = KnowledgeBase(gw, refresh_seconds=0.0)
        appeals = AppealsService(
            gw, FallbackAI(gemini), prompt, knowledge, messenger, working_hours=WorkingHours(), staff_notices=desk
        )
        replies = OperatorReplyService(gw, messenger)
        services = BotContext(
            auth=AuthService(gw), appeals=appeals, messenger=messenger, staff_desk=desk, staff_chat_id=STAFF_CHAT
        )
        register_staff_handlers(app, STAFF_CHAT)
        register_chat_handlers(app, services)
        await stack.enter_async_context(long_polling(app))
        for job in (
            Periodic("operator-replies", POLL, replies.poll_once, first=POLL),
            Periodic("staff-replies", POLL, desk.resume_pending, first=POLL),  # as in bot/app.py
        ):
            job.start()
            stack.push_async_callback(job.stop)
        self.bot = Bot(gw, desk, stack)
        return self.bot

    async def stop(self) -> None:
        """Stop the bot process (jobs, PTB, gateway); the files and the fakes stay."""
        if self.bot is not None:
            await self.bot.stack.aclose()
            self.bot = None

    @property
    def gw(self) -> AsyncSheetsGateway:
        assert self.bot is not None
        return self.bot.gw

    async def appeal(self) -> dict[str, str]:
        """The partner's Обращения row, read fresh."""
        rec = await self.gw.table(APPEALS).get(str(PARTNER))
        assert rec is not None
        return dict(rec)

    async def escalate(self) -> SentMessage:
        """The partner asks for a person; returns the staff chat's notice."""
        self.tg.user_sends_text(PARTNER, "Позовите оператора, пожалуйста")
        await self.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
        return await self.tg.wait_for_sent(chat_id=STAFF_CHAT, method="sendMessage")

    async def settle(self, polls: int = 6) -> None:
        """Let the bot fetch every update and the jobs run a few times."""
        await self.tg.wait_for_delivery()
        await asyncio.sleep(POLL * polls)

    def partner_texts(self) -> list[str]:
        return self.tg.texts_to(PARTNER)


def text_of(message: SentMessage) -> str:
    """What the chat sees."""
    return message.plain_text or message.text or ""


@pytest.fixture
async def world(
    tmp_path: Path, telegram_server: FakeTelegramServer, gemini_server: FakeGeminiServer
) -> AsyncIterator[World]:
    """The bot running against the fakes: the demo partner authorized, Anna and Boris in the staff chat."""
    w = World(tmp_path, telegram_server, gemini_server)
    gemini_server.set_responder(lambda body: f"ИИ: {last_user_text(body)}")
    telegram_server.set_chat_member(STAFF_CHAT, ANNA, "member", first_name="Анна", last_name="Петрова")
    telegram_server.set_chat_member(STAFF_CHAT, BORIS, "administrator", first_name="Борис")
    telegram_server.set_chat_member(STAFF_CHAT, GONE, "left", first_name="Григорий")
    telegram_server.set_chat_member(OTHER_GROUP, STRANGER, "member", first_name="Чужой")
    gw = (await w.start()).gw
    await add_demo_partner(gw, PARTNER)
    try:
        yield w
    finally:
        await w.stop()


async def test_take_and_solve_buttons_name_the_operator_and_set_the_status(world: World) -> None:
    """«Взять» sets «В работе» and names the operator on the notice; «Решено» hands the partner back to the AI."""
    notice = await world.escalate()
    assert [b["text"] for row in notice.inline_keyboard for b in row] == ["Взять", "Решено"]
    assert notice.message_id is not None
    await world.gw.table(APPEALS).write(
        [world.gw.table(APPEALS).op_upsert(str(PARTNER), {AppealCol.STATUS: "Новое"}, create=False)]
    )
    take = next(b["callback_data"] for row in notice.inline_keyboard for b in row if "Взять" in b["text"])
    world.tg.user_presses_button(ANNA, take, notice.message_id, chat_id=STAFF_CHAT)
    answer = await world.tg.wait_for_sent(chat_id=STAFF_CHAT, method="answerCallbackQuery")
    assert "В работе" in text_of(answer)
    edited = await world.tg.wait_for_sent(chat_id=STAFF_CHAT, method="editMessageText")
    assert text_of(edited).endswith("✋ Взял(а): Анна Петрова")
    assert (await world.appeal())[AppealCol.STATUS] == "В работе"

    world.tg.user_presses_button(BORIS, take.replace("take", "solve"), notice.message_id, chat_id=STAFF_CHAT)
    await world.tg.wait_for_sent(chat_id=STAFF_CHAT, method="answerCallbackQuery")
    solved = await world.tg.wait_for_sent(chat_id=STAFF_CHAT, method="editMessageText")
    assert text_of(solved).endswith("✅ Решено: Борис") and "Взял(а)" not in text_of(solved)
    assert solved.inline_keyboard == []
    assert (await world.appeal())[AppealCol.STATUS] == "Решено"
    world.tg.user_sends_text(PARTNER, "Спасибо, а сколько длится сделка?")
    back = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(back).startswith("ИИ:") and "сколько длится сделка?" in text_of(back)  # the AI is back


async def test_a_staff_reply_reaches_the_partner_once_and_is_logged(world: World) -> None:
    """A member's Telegram reply to the notice is delivered once, logged as «Оператор (Анна Петрова)»; G works too."""
    notice = await world.escalate()
    assert notice.message_id is not None
    update = world.tg.user_sends_group_text(
        STAFF_CHAT, ANNA, "Добрый день! Выплата придёт в пятницу.", reply_to_message_id=notice.message_id
    )
    got = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(got) == format_operator_message("Добрый день! Выплата придёт в пятницу.")
    confirm = await world.tg.wait_for_sent(chat_id=STAFF_CHAT, method="sendMessage")
    assert text_of(confirm) == "✅ Отправлено партнёру."
    world.tg.enqueue_update({"message": update["message"]})  # the same update delivered again
    await world.settle()
    assert world.partner_texts().count(text_of(got)) == 1
    row = await world.appeal()
    assert row[AppealCol.LOG].endswith("Оператор (Анна Петрова): Добрый день! Выплата придёт в пятницу.")
    assert row[AppealCol.STATUS] == "В работе"

    # The partner writes while «В работе»: that notice can be answered by a reply too.
    world.tg.user_sends_text(PARTNER, "А документы?")
    relay = await world.tg.wait_for_sent(chat_id=STAFF_CHAT, method="sendMessage")
    assert "А документы?" in text_of(relay) and relay.message_id is not None
    world.tg.user_sends_group_text(STAFF_CHAT, BORIS, "Паспорт и договор.", reply_to_message_id=relay.message_id)
    second = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(second) == format_operator_message("Паспорт и договор.")

    await world.gw.table(APPEALS).write(
        [world.gw.table(APPEALS).op_upsert(str(PARTNER), {AppealCol.OPERATOR_REPLY: "И из таблицы."}, create=False)]
    )
    third = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(third) == format_operator_message("И из таблицы.")
    await world.settle()
    log = (await world.appeal())[AppealCol.LOG]
    assert log.index("Оператор (Борис): Паспорт и договор.") < log.index("Оператор: И из таблицы.")


async def test_replies_and_presses_from_outside_the_staff_chat_are_ignored(world: World) -> None:
    """A user who left the staff chat, a stranger, or a reply in another chat reach nobody and change nothing."""
    notice = await world.escalate()
    assert notice.message_id is not None
    await world.settle()
    before = list(world.partner_texts())
    world.tg.user_sends_group_text(STAFF_CHAT, GONE, "Я уже не сотрудник", reply_to_message_id=notice.message_id)
    world.tg.user_sends_group_text(STAFF_CHAT, STRANGER, "Я чужой", reply_to_message_id=notice.message_id)
    world.tg.user_sends_group_text(OTHER_GROUP, STRANGER, "Из другого чата")
    world.tg.user_presses_button(GONE, f"staff:solve:{PARTNER}", notice.message_id, chat_id=STAFF_CHAT)
    refusal = await world.tg.wait_for_sent(chat_id=STAFF_CHAT, method="answerCallbackQuery")
    assert "только для сотрудников" in text_of(refusal)
    await world.settle()
    assert world.partner_texts() == before
    assert (await world.appeal())[AppealCol.STATUS] == "В работе"
    assert "Я уже не сотрудник" not in (await world.appeal())[AppealCol.LOG]
    assert world.tg.sent_to(STAFF_CHAT, methods={"editMessageText"}) == []


async def test_a_restart_mid_delivery_neither_loses_nor_doubles_the_reply(world: World) -> None:
    """A long reply whose second part fails is finished after a restart: every part once, logged once."""
    notice = await world.escalate()
    assert notice.message_id is not None
    long_reply = "Подробный ответ про условия сделки. " * 150 + "Конец ответа."  # two Telegram messages
    parts = split_message(format_operator_message(long_reply.strip()))
    assert len(parts) == 2 and "Конец ответа." in parts[1]
    await world.settle()
    world.tg.fail_next("sendMessage", n=1000, status=500, chat_id=PARTNER, text_contains="Конец ответа.")
    world.tg.user_sends_group_text(STAFF_CHAT, ANNA, long_reply, reply_to_message_id=notice.message_id)
    first = await world.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(first) == parts[0]
    pending = await world.tg.wait_for_sent(chat_id=STAFF_CHAT, method="sendMessage")
    assert "будет отправлен" in text_of(pending)
    await world.stop()  # the process goes away with the reply half delivered …
    world.tg.reset()  # … Telegram recovers meanwhile (faults and records forgotten)
    await world.start()
    await world.settle(polls=10)
    assert [text_of(m) for m in world.tg.sent_to(PARTNER)] == [parts[1]]  # only the missing part, once
    log = (await world.appeal())[AppealCol.LOG]
    assert log.count("Оператор (Анна Петрова): Подробный ответ") == 1


async def test_a_reply_journaled_before_a_crash_is_sent_after_the_restart(world: World) -> None:
    """Telegram refuses every attempt until the process is gone: the restarted bot delivers the reply once."""
    notice = await world.escalate()
    assert notice.message_id is not None
    await world.settle()
    world.tg.fail_next("sendMessage", n=1000, status=502, chat_id=PARTNER)
    world.tg.user_sends_group_text(STAFF_CHAT, BORIS, "Перезвоню через час.", reply_to_message_id=notice.message_id)
    await world.tg.wait_for_sent(chat_id=STAFF_CHAT, method="sendMessage")  # ⏳ pending
    await world.stop()
    world.tg.reset()
    await world.start()
    await world.settle(polls=10)
    assert [text_of(m) for m in world.tg.sent_to(PARTNER)] == [format_operator_message("Перезвоню через час.")]
    assert (await world.appeal())[AppealCol.LOG].endswith("Оператор (Борис): Перезвоню через час.")
