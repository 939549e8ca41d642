"""The ways into the Mini App from Telegram: real python-telegram-bot long-polling the fake Bot API, with the
real chat services on a local gateway (/app, the button after authorization, the menu button)."""

from __future__ import annotations

import datetime as dtm
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application, ApplicationBuilder

from bot.services.auth import TEXT_NOT_FOUND
from bot.telegram.context import BotContext
from bot.telegram.handlers.chat import register_chat_handlers
from bot.telegram.handlers.webapp import (
    BUTTON_TEXT,
    MENU_BUTTON_TEXT,
    TEXT_AFTER_AUTH,
    TEXT_NOT_AUTHORIZED,
    TEXT_NOT_CONFIGURED,
    TEXT_OPEN,
    register_webapp_handlers,
    set_menu_button,
    usable_webapp_url,
)
from gateway import build_gateway
from tests.chat_support import add_partner, build_kit, chat_gateway_config
from tests.fakes.telegram_server import FakeTelegramServer, SentMessage
from tests.telegram_support import fake_bot_app

WEBAPP_URL = "https://miniapp.example.test/"
PARTNER = 100001
NEWCOMER = 100002
STRANGER = 300003

StartBot = Callable[[str | None], Awaitable[FakeTelegramServer]]


def text_of(message: SentMessage) -> str:
    """What the user sees."""
    return message.plain_text or message.text or ""


def webapp_button(url: str) -> list[list[dict[str, Any]]]:
    """The inline keyboard with the one Mini App button, as Telegram receives it."""
    return [[{"text": BUTTON_TEXT, "web_app": {"url": url}}]]


@pytest.fixture
async def start_bot(tmp_path: Path, telegram_server: FakeTelegramServer) -> AsyncIterator[StartBot]:
    """Start the bot with a given WEBAPP_URL: the demo partner is authorized, a newcomer is in Auth."""
    gw = build_gateway(chat_gateway_config(tmp_path))
    await gw.start()
    await gw.ensure_sheets()
    await add_partner(gw, "DEMO-001", "+79000000001", name="Демо Партнёр", status="authorized", telegram_id=PARTNER)
    await add_partner(gw, "P-002", "8 (916) 555-44-33", name="Новый Партнёр")
    kit = build_kit(gw)
    apps: list[Application[Any, Any, Any, Any, Any, Any]] = []

    async def start(webapp_url: str | None) -> FakeTelegramServer:
        app: Application[Any, Any, Any, Any, Any, Any] = fake_bot_app(telegram_server)
        services = BotContext(
            auth=kit.auth, appeals=kit.appeals, messenger=kit.messenger, webapp_url=usable_webapp_url(webapp_url)
        )
        register_webapp_handlers(app, webapp_url)
        register_chat_handlers(app, services)
        await app.initialize()
        await app.start()
        apps.append(app)
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=dtm.timedelta(seconds=1))
        return telegram_server

    try:
        yield start
    finally:
        for app in apps:
            assert app.updater is not None
            await app.updater.stop()
            await app.stop()
            await app.shutdown()
        await gw.close()


async def test_app_command_sends_the_web_app_button(start_bot: StartBot) -> None:
    """/app from an authorized partner answers with one inline web_app button opening WEBAPP_URL."""
    tg = await start_bot(WEBAPP_URL)
    tg.user_sends_command(PARTNER, "/app")
    answer = await tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(answer) == TEXT_OPEN
    assert answer.inline_keyboard == webapp_button(WEBAPP_URL)


async def test_app_command_for_an_unauthorized_user_points_to_start(start_bot: StartBot) -> None:
    """/app from someone not authorized in Auth gets no button, only how to authorize."""
    tg = await start_bot(WEBAPP_URL)
    tg.user_sends_command(STRANGER, "/app")
    answer = await tg.wait_for_sent(chat_id=STRANGER, method="sendMessage")
    assert text_of(answer) == TEXT_NOT_AUTHORIZED
    assert answer.reply_markup is None


@pytest.mark.parametrize("url", [None, "", "http://127.0.0.1:8080/", "https://"])
async def test_app_command_without_a_usable_url_explains(start_bot: StartBot, url: str | None) -> None:
    """Without WEBAPP_URL, or with one Telegram cannot open (not https), /app says the app is not configured."""
    tg = await start_bot(url)
    tg.user_sends_command(PARTNER, "/app")
    answer = await tg.wait_for_sent(chat_id=PARTNER, method="sendMessage")
    assert text_of(answer) == TEXT_NOT_CONFIGURED
    assert answer.reply_markup is None


async def test_authorization_is_followed_by_the_web_app_button(start_bot: StartBot) -> None:
    """Sharing one's own phone authorizes (reply keyboard removed), then a message brings the Mini App button."""
    tg = await start_bot(WEBAPP_URL)
    tg.user_sends_contact(NEWCOMER, "79165554433")
    welcome = await tg.wait_for_sent(chat_id=NEWCOMER, method="sendMessage")
    assert text_of(welcome).startswith("Новый Партнёр, добро пожаловать!")
    assert welcome.reply_markup == {"remove_keyboard": True}
    offer = await tg.wait_for_sent(chat_id=NEWCOMER, method="sendMessage")
    assert text_of(offer) == TEXT_AFTER_AUTH
    assert offer.inline_keyboard == webapp_button(WEBAPP_URL)


async def test_failed_authorization_offers_no_web_app(start_bot: StartBot) -> None:
    """A phone that is not in Auth is refused and no Mini App button follows."""
    tg = await start_bot(WEBAPP_URL)
    tg.user_sends_contact(STRANGER, "+79990001122")
    refused = await tg.wait_for_sent(chat_id=STRANGER, method="sendMessage")
    assert text_of(refused) == TEXT_NOT_FOUND
    tg.user_sends_command(STRANGER, "/app")  # a marker: the next message is the answer to it, nothing in between
    after = await tg.wait_for_sent(chat_id=STRANGER, method="sendMessage")
    assert text_of(after) == TEXT_NOT_AUTHORIZED
    assert all(not m.inline_keyboard for m in tg.sent_to(STRANGER))


async def test_authorization_without_url_sends_no_extra_message(start_bot: StartBot) -> None:
    """Without WEBAPP_URL the authorization reply is the only message (no empty Mini App offer)."""
    tg = await start_bot(None)
    tg.user_sends_contact(NEWCOMER, "79165554433")
    welcome = await tg.wait_for_sent(chat_id=NEWCOMER, method="sendMessage")
    assert text_of(welcome).startswith("Новый Партнёр, добро пожаловать!")
    tg.user_sends_command(NEWCOMER, "/app")
    after = await tg.wait_for_sent(chat_id=NEWCOMER, method="sendMessage")
    assert text_of(after) == TEXT_NOT_CONFIGURED


async def test_menu_button_opens_the_mini_app(telegram_server: FakeTelegramServer) -> None:
    """set_menu_button sets the default menu button of every chat to a web_app button with WEBAPP_URL."""
    app = ApplicationBuilder().token(telegram_server.token).base_url(telegram_server.api_base_url).build()
    async with app:
        assert await set_menu_button(app.bot, WEBAPP_URL) is True
    expected = {"type": "web_app", "text": MENU_BUTTON_TEXT, "web_app": {"url": WEBAPP_URL}}
    assert telegram_server.menu_button() == expected
    assert telegram_server.menu_button(PARTNER) == expected


@pytest.mark.parametrize("url", [None, "http://127.0.0.1:8080/"])
async def test_menu_button_left_alone_without_a_usable_url(
    telegram_server: FakeTelegramServer, url: str | None
) -> None:
    """Without an https WEBAPP_URL the menu button is not touched (it may have been set in @BotFather)."""
    app = ApplicationBuilder().token(telegram_server.token).base_url(telegram_server.api_base_url).build()
    async with app:
        assert await set_menu_button(app.bot, url) is False
    assert telegram_server.call_count("setChatMenuButton") == 0
    assert telegram_server.menu_button() == {"type": "default"}


async def test_menu_button_failure_is_not_fatal(telegram_server: FakeTelegramServer) -> None:
    """When Telegram refuses setChatMenuButton the start-up goes on (False is returned, nothing raised)."""
    telegram_server.fail_next("setChatMenuButton", status=400, description="Bad Request: test")
    app = ApplicationBuilder().token(telegram_server.token).base_url(telegram_server.api_base_url).build()
    async with app:
        assert await set_menu_button(app.bot, WEBAPP_URL) is False
    assert telegram_server.menu_button() == {"type": "default"}


def test_usable_webapp_url() -> None:
    """Only absolute https URLs are usable as a Mini App address (surrounding spaces trimmed)."""
    assert usable_webapp_url(" https://bot.example.test/app ") == "https://bot.example.test/app"
    assert usable_webapp_url("http://bot.example.test/") is None
    assert usable_webapp_url("bot.example.test") is None
    assert usable_webapp_url("https:///path") is None
    assert usable_webapp_url(None) is None
