"""The durable inbox with real python-telegram-bot against the fake Bot API: updates are journaled before Telegram
is told they arrived, marked done after their turn, and a resumed turn sends its logged reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from bot.services.appeals import ChatReply, encode_reply
from bot.services.turn_context import current_turn
from bot.telegram.handlers.chat import OPERATOR_BUTTON
from bot.telegram.inbox import DurableUpdateProcessor, InboxPoller, inbox_entry, journal_update, resume_unfinished
from bot.telegram.messenger import TelegramMessenger
from gateway import AsyncSheetsGateway, InboxUpdate
from gateway.schemas import APPEALS, AppealStatus
from tests.fakes.telegram_server import FakeTelegramServer
from tests.telegram_support import fake_bot_app

App = Application[Any, Any, Any, Any, Any, Any]


@pytest.fixture
async def app(telegram_server: FakeTelegramServer, local_gateway: AsyncSheetsGateway) -> AsyncIterator[App]:
    """A PTB application wired like the composition root: no Updater, the durable processor attached."""
    tg = telegram_server
    application: App = fake_bot_app(tg, updater=False, concurrent_updates=DurableUpdateProcessor(16))
    processor = application.update_processor
    assert isinstance(processor, DurableUpdateProcessor)
    processor.attach(local_gateway.inbox, local_gateway.turns, TelegramMessenger(application.bot), OPERATOR_BUTTON)
    await application.initialize()
    yield application
    if application.running:
        await application.stop()
    await application.shutdown()


def _echo(seen: list[tuple[str, str | None]]) -> MessageHandler[Any, Any]:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_message.text is not None
        turn = current_turn()
        seen.append((update.effective_message.text, turn.turn_id if turn else None))
        await update.effective_message.reply_text(f"эхо: {update.effective_message.text}")

    return MessageHandler(filters.TEXT, echo)


async def test_updates_are_journaled_before_the_offset_acknowledges_them(
    app: App, telegram_server: FakeTelegramServer, local_gateway: AsyncSheetsGateway
) -> None:
    """Polled updates are in the inbox before Telegram forgets them, handled in order with their turn id, then done."""
    tg, inbox = telegram_server, local_gateway.inbox
    seen: list[tuple[str, str | None]] = []
    app.add_handler(_echo(seen))
    await app.start()
    poller = InboxPoller(app, inbox, timeout=1)
    await poller.start()
    try:
        first = tg.user_sends_text(501, "раз")["update_id"]
        tg.user_sends_text(501, "два")
        await tg.wait_for_sent(lambda s: s.text == "эхо: два", timeout=10)
    finally:
        await poller.stop()
    assert seen == [("раз", f"update:{first}"), ("два", f"update:{first + 1}")]
    assert await inbox.last_update_id() == first + 1
    for _ in range(50):  # done is recorded right after the handler returns
        if not await inbox.unfinished():
            break
        await asyncio.sleep(0.02)
    assert await inbox.unfinished() == []


async def test_an_update_that_cannot_be_journaled_is_not_acknowledged(
    app: App, telegram_server: FakeTelegramServer, local_gateway: AsyncSheetsGateway
) -> None:
    """When journaling fails, the poller never moves the offset past the update: Telegram keeps it for later."""
    tg, inbox = telegram_server, local_gateway.inbox

    async def broken(updates: list[InboxUpdate]) -> list[InboxUpdate]:
        raise OSError("disk full")

    inbox.put = broken  # type: ignore[method-assign]
    await app.start()
    poller = InboxPoller(app, inbox, timeout=0)
    await poller.start()
    tg.user_sends_text(502, "не потеряй")
    await asyncio.sleep(0.5)
    await poller.stop()
    assert tg.pending_updates == 1


async def test_a_resumed_update_sends_its_logged_reply_without_running_the_handlers(
    app: App, telegram_server: FakeTelegramServer, local_gateway: AsyncSheetsGateway
) -> None:
    """An update journaled by a run that crashed after its turn: the logged reply is sent, the model not asked."""
    tg, gw = telegram_server, local_gateway
    seen: list[tuple[str, str | None]] = []
    app.add_handler(_echo(seen))
    payload = tg.user_sends_text(503, "вопрос до сбоя")
    update = Update.de_json(payload, app.bot)
    assert update is not None
    await gw.inbox.put([inbox_entry(update)])
    op = gw.table(APPEALS).op_append_text("503", "текст_обращений", "[2026-11-23 14:05] Пользователь: вопрос до сбоя")
    logged = encode_reply(ChatReply("ответ из журнала", AppealStatus.AI))
    await gw.turns.record(f"update:{update.update_id}", op, logged)
    processor = app.update_processor
    assert isinstance(processor, DurableUpdateProcessor)
    assert await resume_unfinished(app, gw.inbox, processor) == 1
    await app.start()
    sent = await tg.wait_for_sent(lambda s: s.chat_id == 503, timeout=10)
    assert sent.text == "ответ из журнала" and sent.button_data == [OPERATOR_BUTTON.callback_data]
    await app.stop()
    assert seen == []
    assert await gw.inbox.unfinished() == []


async def test_a_webhook_update_delivered_twice_is_journaled_and_handled_once(
    app: App, telegram_server: FakeTelegramServer, local_gateway: AsyncSheetsGateway
) -> None:
    """The webhook path journals an update before answering; Telegram re-posting it does not handle it twice."""
    tg, gw = telegram_server, local_gateway
    seen: list[tuple[str, str | None]] = []
    app.add_handler(_echo(seen))
    await app.start()
    update = Update.de_json(tg.user_sends_text(504, "по вебхуку"), app.bot)
    assert update is not None
    await journal_update(app, gw.inbox, update)
    assert await gw.inbox.last_update_id() == update.update_id  # journaled when journal_update returns
    await journal_update(app, gw.inbox, update)  # Telegram did not see the 200 and posts it again
    await tg.wait_for_sent(lambda s: s.chat_id == 504, timeout=10)
    await app.stop()
    assert seen == [("по вебхуку", f"update:{update.update_id}")]
