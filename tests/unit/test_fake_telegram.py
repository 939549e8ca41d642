"""The fake Bot API speaks Telegram's wire protocol well enough for the real python-telegram-bot."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    MenuButtonCommands,
    Message,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.helpers import escape_markdown

from tests.fakes._http import FakeServerError, FakeTimeout
from tests.fakes.telegram_server import (
    FakeTelegramServer,
    parse_html,
    parse_markdown,
    parse_markdown_v2,
)
from tests.telegram_support import long_polling

ROOT = Path(__file__).resolve().parents[2]


def make_bot(server: FakeTelegramServer, token: str | None = None) -> Bot:
    """A real PTB Bot pointed at the fake."""
    return Bot(token or server.token, base_url=server.api_base_url, base_file_url=server.file_base_url)


def make_app(server: FakeTelegramServer) -> Application[Any, Any, Any, Any, Any, Any]:
    """A real PTB Application pointed at the fake, built the way the bot builds its own."""
    return (
        ApplicationBuilder()
        .token(server.token)
        .base_url(server.api_base_url)
        .base_file_url(server.file_base_url)
        .build()
    )


@asynccontextmanager
async def polling(
    server: FakeTelegramServer, *handlers: BaseHandler[Any, Any, Any]
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """Run a PTB application with ``handlers`` in long-polling mode against the fake."""
    app = make_app(server)
    for handler in handlers:
        app.add_handler(handler)
    async with long_polling(app):
        yield app


# --- plain Bot API calls ------------------------------------------------------------------------------


async def test_get_me_returns_the_bot_identity(telegram_server: FakeTelegramServer) -> None:
    """getMe answers with the bot user derived from the token."""
    async with make_bot(telegram_server) as bot:
        me = await bot.get_me()
    assert me.is_bot
    assert me.id == int(telegram_server.token.split(":")[0])
    assert me.username == telegram_server.bot_user["username"]


async def test_send_message_is_recorded_with_markup(telegram_server: FakeTelegramServer) -> None:
    """sendMessage returns a Message and records text, parse mode and the parsed inline keyboard."""
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Позвать оператора", callback_data="human")]])
    async with make_bot(telegram_server) as bot:
        message = await bot.send_message(42, "Здравствуйте, *партнёр*", parse_mode="MarkdownV2", reply_markup=keyboard)
    assert message.text == "Здравствуйте, партнёр"
    assert message.entities[0].type == "bold"
    assert message.entities[0].offset == 14
    sent = await telegram_server.wait_for_sent(chat_id=42, timeout=1)
    assert sent.method == "sendMessage"
    assert sent.text == "Здравствуйте, *партнёр*"
    assert sent.plain_text == "Здравствуйте, партнёр"
    assert sent.parse_mode == "MarkdownV2"
    assert sent.message_id == message.message_id
    assert sent.button_data == ["human"]
    assert telegram_server.call_count("sendMessage") == 1


async def test_send_document_keeps_uploaded_bytes_and_filename(telegram_server: FakeTelegramServer) -> None:
    """sendDocument's multipart upload is parsed: the record holds the exact bytes and the file name."""
    payload = b"%PDF-1.4\r\n\x00\xff binary\r\n--not-a-boundary\r\n"
    async with make_bot(telegram_server) as bot:
        message = await bot.send_document(42, payload, filename="отчёт за май.pdf", caption="Отчёт")
    assert message.document is not None
    assert message.document.file_name == "отчёт за май.pdf"
    assert message.document.file_size == len(payload)
    assert message.caption == "Отчёт"
    sent = telegram_server.sent_to(42)[-1]
    assert (sent.method, sent.document, sent.filename, sent.text) == (
        "sendDocument",
        payload,
        "отчёт за май.pdf",
        "Отчёт",
    )


async def test_send_photo_and_chat_action_are_recorded(telegram_server: FakeTelegramServer) -> None:
    """sendPhoto records the upload; sendChatAction is recorded but not counted as a message."""
    async with make_bot(telegram_server) as bot:
        await bot.send_chat_action(42, "typing")
        await bot.send_photo(42, b"\x89PNG image", caption="График")
    assert [s.method for s in telegram_server.sent_to(42, methods=None)] == ["sendChatAction", "sendPhoto"]
    assert telegram_server.sent[0].action == "typing"
    assert (await telegram_server.wait_for_sent(chat_id=42, timeout=1)).document == b"\x89PNG image"


async def test_wrong_token_is_unauthorized(telegram_server: FakeTelegramServer) -> None:
    """A token other than the server's answers 401, which PTB raises as InvalidToken."""
    async with make_bot(telegram_server) as good:
        assert await good.get_me()
    with pytest.raises(InvalidToken):
        await make_bot(telegram_server, token="1:wrong").get_me()


async def test_unknown_method_is_404_in_bot_api_shape(telegram_server: FakeTelegramServer) -> None:
    """Unknown methods answer 404 with the Bot API error body."""
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{telegram_server.api_base_url}{telegram_server.token}/sendDice")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


BUTTON = {"text": "a", "callback_data": "b"}


async def test_json_bodies_are_accepted(telegram_server: FakeTelegramServer) -> None:
    """Clients that post JSON (not form data) are understood too."""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{telegram_server.api_base_url}{telegram_server.token}/sendMessage",
            json={
                "chat_id": 5,
                "text": "json",
                "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]},
            },
        )
    assert response.json()["ok"] is True
    assert telegram_server.sent[0].reply_markup == {"inline_keyboard": [[BUTTON]]}


# --- validation like Telegram --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Комиссия_партнёра", "Ставка 3.5%", "Смотрите [раздел 2", "Итого: 5 * 2", "Звоните (с 9 до 18)"],
)
async def test_unescaped_markdown_v2_is_rejected(telegram_server: FakeTelegramServer, text: str) -> None:
    """Reserved MarkdownV2 characters that are not escaped make Telegram refuse the message."""
    async with make_bot(telegram_server) as bot:
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(42, text, parse_mode="MarkdownV2")
    assert telegram_server.sent == []
    assert telegram_server.calls[-1].status == 400


async def test_escaped_markdown_v2_is_accepted_verbatim(telegram_server: FakeTelegramServer) -> None:
    """Text escaped with escape_markdown(version=2) is delivered exactly as written."""
    text = "Комиссия_партнёра 3.5% [раздел 2] (с 9 до 18) a-b! #1 +7 = {x} |y| ~z~ `код` > 5 \\ конец."
    async with make_bot(telegram_server) as bot:
        message = await bot.send_message(42, escape_markdown(text, version=2), parse_mode="MarkdownV2")
    assert message.text == text
    assert telegram_server.sent[0].plain_text == text


async def test_html_and_legacy_markdown_are_checked(telegram_server: FakeTelegramServer) -> None:
    """Unsupported HTML tags and unclosed legacy Markdown entities are refused; valid markup passes."""
    async with make_bot(telegram_server) as bot:
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities: unsupported start tag"):
            await bot.send_message(42, "строка<br>строка", parse_mode="HTML")
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(42, "1 < 2", parse_mode="HTML")
        with pytest.raises(BadRequest, match=r"(?i)can't find end of the entity"):
            await bot.send_message(42, "file_name", parse_mode="Markdown")
        ok = await bot.send_message(
            42, "<b>Итого</b> &lt;5&gt; <a href='https://example.org'>ссылка</a>", parse_mode="HTML"
        )
    assert ok.text == "Итого <5> ссылка"
    assert [e.type for e in ok.entities] == ["bold", "text_link"]


async def test_length_limits(telegram_server: FakeTelegramServer) -> None:
    """4096 characters after entity parsing pass; 4097 or an empty text are refused."""
    async with make_bot(telegram_server) as bot:
        assert await bot.send_message(42, "я" * 4096)
        assert await bot.send_message(42, "*" + "я" * 4096 + "*", parse_mode="MarkdownV2")
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(42, "я" * 4097)
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(42, "  \n ")
        with pytest.raises(BadRequest, match="caption is too long"):
            await bot.send_document(42, b"x", filename="a.txt", caption="я" * 1025)


async def test_blocked_chat_is_forbidden(telegram_server: FakeTelegramServer) -> None:
    """A user who blocked the bot makes sends fail with 403 Forbidden; unblocking restores them."""
    telegram_server.block_chat(7)
    async with make_bot(telegram_server) as bot:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(7, "Ответ оператора")
        assert await bot.send_message(8, "другому можно")
        telegram_server.unblock_chat(7)
        assert await bot.send_message(7, "снова можно")
    assert [s.chat_id for s in telegram_server.sent] == [8, 7]


async def test_injected_flood_limit_raises_retry_after(telegram_server: FakeTelegramServer) -> None:
    """flood_next answers 429 with parameters.retry_after, which PTB raises as RetryAfter."""
    telegram_server.flood_next(1, retry_after=4, method="sendMessage")
    async with make_bot(telegram_server) as bot:
        # PTB words the error from parameters.retry_after; reading .retry_after itself warns in PTB 22.
        with pytest.raises(RetryAfter, match="Retry in 4"):
            await bot.send_message(42, "раз")
        assert await bot.send_message(42, "два")
    statuses = [c.status for c in telegram_server.calls if c.method == "sendMessage"]
    assert statuses == [429, 200]


async def test_per_chat_flood_limit(telegram_server: FakeTelegramServer) -> None:
    """With a 1 msg/s per-chat limit a second message to the same chat gets 429; other chats are free."""
    telegram_server.set_flood_limits(per_chat_per_second=1)
    async with make_bot(telegram_server) as bot:
        await bot.send_message(1, "первое")
        await bot.send_message(2, "другой чат")
        with pytest.raises(RetryAfter):
            await bot.send_message(1, "второе подряд")


async def test_global_flood_limit(telegram_server: FakeTelegramServer) -> None:
    """A global N msgs/s limit refuses the N+1st message within a second whatever the chat."""
    telegram_server.set_flood_limits(global_per_second=3)
    async with make_bot(telegram_server) as bot:
        for chat in (1, 2, 3):
            await bot.send_message(chat, "ok")
        with pytest.raises(RetryAfter):
            await bot.send_message(4, "too many")


async def test_fail_next_injects_any_error(telegram_server: FakeTelegramServer) -> None:
    """fail_next can make a given method fail once with a given status and description."""
    telegram_server.fail_next("sendMessage", status=400, description="Bad Request: chat not found", chat_id=9)
    async with make_bot(telegram_server) as bot:
        assert await bot.send_message(8, "не тот чат")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(9, "x")
        assert await bot.send_message(9, "x")


# --- updates: long polling and simulated users ---------------------------------------------------------


async def test_get_updates_blocks_until_timeout_when_idle(telegram_server: FakeTelegramServer) -> None:
    """With nothing queued, getUpdates holds the request for its timeout and returns an empty list."""
    async with make_bot(telegram_server) as bot:
        started = time.monotonic()
        updates = await bot.get_updates(timeout=1)
    assert updates == ()
    assert time.monotonic() - started >= 0.9


async def test_get_updates_wakes_when_a_user_writes(telegram_server: FakeTelegramServer) -> None:
    """A pending long poll returns as soon as a simulated user sends a message."""
    async with make_bot(telegram_server) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=10))
        await asyncio.sleep(0.05)
        assert not poll.done()
        telegram_server.user_sends_text(42, "Добрый день", first_name="Иван")
        updates = await asyncio.wait_for(poll, 5)
    message = updates[0].message
    assert message is not None
    assert message.text == "Добрый день"
    assert message.chat.type == "private"
    assert message.chat.id == 42
    assert message.from_user is not None
    assert (message.from_user.first_name, message.from_user.is_bot) == ("Иван", False)


async def test_offset_confirms_updates(telegram_server: FakeTelegramServer) -> None:
    """Updates stay queued until a getUpdates offset confirms them; ids increase."""
    first = telegram_server.user_sends_text(1, "a")
    second = telegram_server.user_sends_text(2, "b")
    assert second["update_id"] == first["update_id"] + 1
    async with make_bot(telegram_server) as bot:
        assert len(await bot.get_updates(timeout=0)) == 2
        assert len(await bot.get_updates(timeout=0)) == 2  # not confirmed yet
        remaining = await bot.get_updates(offset=first["update_id"] + 1, timeout=0)
        assert [u.update_id for u in remaining] == [second["update_id"]]
        assert await bot.get_updates(offset=second["update_id"] + 1, timeout=0) == ()
    assert telegram_server.pending_updates == 0


async def test_application_answers_a_simulated_user(telegram_server: FakeTelegramServer) -> None:
    """A real PTB Application polls, handles a text message and its reply is awaited without sleeps."""

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"Вы написали: {update.effective_message.text}")

    async with polling(telegram_server, MessageHandler(filters.TEXT & ~filters.COMMAND, echo)):
        telegram_server.user_sends_text(42, "первое")
        telegram_server.user_sends_text(43, "второе")
        first = await telegram_server.wait_for_sent(chat_id=42)
        second = await telegram_server.wait_for_sent(chat_id=43)
        await telegram_server.wait_for_delivery()
    assert first.text == "Вы написали: первое"
    assert second.text == "Вы написали: второе"
    assert telegram_server.pending_updates == 0


async def test_command_contact_and_non_text_messages(telegram_server: FakeTelegramServer) -> None:
    """Commands carry a bot_command entity, contacts carry user_id, photos and stickers reach their filters."""
    seen: list[str] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(f"start:{context.args}")
        button = KeyboardButton("Поделиться номером", request_contact=True)
        await update.effective_chat.send_message("Ваш номер?", reply_markup=ReplyKeyboardMarkup([[button]]))  # type: ignore[union-attr]

    async def contact(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        shared = update.effective_message.contact  # type: ignore[union-attr]
        seen.append(f"contact:{shared.phone_number}:{shared.user_id}")  # type: ignore[union-attr]

    async def other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append("photo" if update.effective_message.photo else "sticker")  # type: ignore[union-attr]
        await update.effective_chat.send_message("Я понимаю только текст")  # type: ignore[union-attr]

    handlers = (
        CommandHandler("start", start),
        MessageHandler(filters.CONTACT, contact),
        MessageHandler(filters.PHOTO | filters.Sticker.ALL, other),
    )
    async with polling(telegram_server, *handlers):
        telegram_server.user_sends_command(42, "/start ref123")
        keyboard = await telegram_server.wait_for_sent(chat_id=42)
        telegram_server.user_sends_contact(42, "+79991234567")
        telegram_server.user_sends_contact(42, "+79990000000", contact_user_id=777)
        telegram_server.user_sends_contact(42, "+79991111111", omit_user_id=True)
        telegram_server.user_sends_photo(42)
        await telegram_server.wait_for_sent(chat_id=42)
        telegram_server.user_sends_sticker(42)
        await telegram_server.wait_for_sent(chat_id=42)
    assert keyboard.reply_markup is not None
    assert keyboard.reply_markup["keyboard"][0][0] == {"text": "Поделиться номером", "request_contact": True}
    assert seen == [
        "start:['ref123']",
        "contact:+79991234567:42",
        "contact:+79990000000:777",
        "contact:+79991111111:None",
        "photo",
        "sticker",
    ]


async def test_button_press_answer_and_edit(telegram_server: FakeTelegramServer) -> None:
    """A pressed inline button reaches CallbackQueryHandler with the bot's message; answers and edits are recorded."""

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        await query.answer("Передаю оператору")
        assert isinstance(query.message, Message)
        await query.edit_message_text(f"{query.message.text} — оператор подключится")

    async with polling(telegram_server, CallbackQueryHandler(pressed)):
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Оператор", callback_data="human")]])
        sent = await telegram_server_bot_send(telegram_server, 42, "Ответ ИИ", keyboard)
        update = telegram_server.user_presses_button(42, "human", sent)
        answer = await telegram_server.wait_for_sent(method="answerCallbackQuery")
        edit = await telegram_server.wait_for_sent(method="editMessageText")
    assert answer.callback_query_id == update["callback_query"]["id"]
    assert answer.text == "Передаю оператору"
    assert edit.text == "Ответ ИИ — оператор подключится"
    current = telegram_server.message(42, sent)
    assert current is not None and current["text"] == "Ответ ИИ — оператор подключится"
    assert "reply_markup" not in current  # edit without markup removes the keyboard, as in Telegram


async def telegram_server_bot_send(
    server: FakeTelegramServer, chat_id: int, text: str, markup: InlineKeyboardMarkup
) -> int:
    """Send a message through a separate real Bot and return its message_id."""
    async with make_bot(server) as bot:
        return (await bot.send_message(chat_id, text, reply_markup=markup)).message_id


async def test_edit_and_callback_errors(telegram_server: FakeTelegramServer) -> None:
    """Editing a missing or unchanged message and answering an unknown query fail like Telegram."""
    async with make_bot(telegram_server) as bot:
        message = await bot.send_message(42, "текст")
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("x", chat_id=42, message_id=999)
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text("текст", chat_id=42, message_id=message.message_id)
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query("nope")
        with pytest.raises(BadRequest, match="Button_data_invalid"):
            await bot.send_message(
                42, "x", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="я" * 40)]])
            )
        edited = await bot.edit_message_reply_markup(
            chat_id=42,
            message_id=message.message_id,
            reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Да", callback_data="yes")]]),
        )
    assert not isinstance(edited, bool) and edited.reply_markup is not None
    assert telegram_server.sent[-1].method == "editMessageReplyMarkup"
    current = telegram_server.message(42, message.message_id)
    assert current is not None and current["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "yes"


async def test_commands_menu_button_and_webhook_info(telegram_server: FakeTelegramServer) -> None:
    """setMyCommands/getMyCommands/deleteMyCommands, menu buttons and getWebhookInfo keep state."""
    async with make_bot(telegram_server) as bot:
        await bot.set_my_commands([("start", "Начать"), ("help", "Помощь")])
        assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
        with pytest.raises(BadRequest):
            await bot.set_my_commands([("Bad Command", "x")])
        await bot.delete_my_commands()
        assert await bot.get_my_commands() == ()
        assert (await bot.get_chat_menu_button()).type == "default"
        await bot.set_chat_menu_button(menu_button=MenuButtonCommands())
        assert (await bot.get_chat_menu_button()).type == "commands"
        assert (await bot.get_webhook_info()).url == ""
        assert await bot.delete_webhook()
        assert await bot.log_out()
        assert await bot.close()


async def test_files_can_be_downloaded(telegram_server: FakeTelegramServer) -> None:
    """A photo a user sent is reachable through getFile and base_file_url."""
    telegram_server.user_sends_photo(42, data=b"JPEG bytes", caption="смотрите")
    async with make_bot(telegram_server) as bot:
        update = (await bot.get_updates(timeout=0))[0]
        assert update.message is not None and update.message.caption == "смотрите"
        file = await bot.get_file(update.message.photo[-1].file_id)
        assert bytes(await file.download_as_bytearray()) == b"JPEG bytes"


async def test_webhook_mode_delivers_updates_and_blocks_polling(telegram_server: FakeTelegramServer) -> None:
    """With a webhook set, getUpdates conflicts and updates are POSTed with the secret token header."""
    received: list[tuple[dict[str, Any], str | None]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((json.loads(body), self.headers.get("X-Telegram-Bot-Api-Secret-Token")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        async with make_bot(telegram_server) as bot:
            await bot.set_webhook(f"http://127.0.0.1:{receiver.server_address[1]}/hook", secret_token="s3cret")
            with pytest.raises(Conflict):
                await bot.get_updates(timeout=0)
            telegram_server.user_sends_text(42, "через вебхук")
            await telegram_server.wait_for_delivery()
            assert (await bot.get_webhook_info()).pending_update_count == 0
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert received[0][0]["message"]["text"] == "через вебхук"
    assert received[0][1] == "s3cret"


async def test_wait_for_sent_times_out_with_a_useful_message(telegram_server: FakeTelegramServer) -> None:
    """wait_for_sent raises FakeTimeout listing what was sent when nothing matches."""
    async with make_bot(telegram_server) as bot:
        await bot.send_message(1, "не тому")
    with pytest.raises(FakeTimeout, match="не тому"):
        await telegram_server.wait_for_sent(chat_id=2, timeout=0.1)


async def test_wait_for_sent_returns_each_record_once(telegram_server: FakeTelegramServer) -> None:
    """Consecutive waits return consecutive messages, so multi-turn tests need no indices."""
    async with make_bot(telegram_server) as bot:
        await bot.send_message(1, "первый")
        await bot.send_message(1, "второй")
    assert (await telegram_server.wait_for_sent(chat_id=1)).text == "первый"
    assert (await telegram_server.wait_for_sent(chat_id=1)).text == "второй"
    assert len(telegram_server.sent_to(1)) == 2


async def test_sync_wait_works_off_the_loop_and_refuses_on_it(telegram_server: FakeTelegramServer) -> None:
    """wait_for_sent_sync serves threads (benchmark drivers) and refuses to block a running event loop."""
    async with make_bot(telegram_server) as bot:
        await bot.send_message(1, "из потока")
    record = await asyncio.to_thread(telegram_server.wait_for_sent_sync, None, 1.0, chat_id=1)
    assert record.text == "из потока"
    with pytest.raises(FakeServerError, match="event loop"):
        telegram_server.wait_for_sent_sync(timeout=0.1)


def test_stop_releases_a_blocked_long_poll() -> None:
    """Stopping the server answers a hanging getUpdates instead of leaving it for its whole timeout."""
    server = FakeTelegramServer().start()
    url = f"{server.api_base_url}{server.token}/getUpdates"
    result: list[float] = []

    def poll() -> None:
        started = time.monotonic()
        with suppress(httpx.HTTPError):
            httpx.post(url, data={"timeout": "30"}, timeout=40)
        result.append(time.monotonic() - started)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.1)
    server.stop()
    thread.join(10)
    assert result and result[0] < 10


def test_restart_keeps_the_port_and_state() -> None:
    """A stopped server restarts on the same URL with its records, to simulate a Telegram outage."""
    server = FakeTelegramServer().start()
    url = server.url
    server.user_sends_text(1, "до перезапуска")
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{server.api_base_url}{server.token}/getMe")
    server.start()
    try:
        assert server.url == url
        response = httpx.post(f"{server.api_base_url}{server.token}/getUpdates")
        assert response.json()["result"][0]["message"]["text"] == "до перезапуска"
    finally:
        server.stop()


# --- control API and standalone mode ------------------------------------------------------------------


def test_standalone_server_is_driven_over_http() -> None:
    """``python -m tests.fakes.telegram_server`` serves the Bot API and the /_fake control endpoints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.telegram_server", "--port", "0", "--token", "5:abc"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[0]
        assert httpx.post(f"{url}/bot5:abc/getMe").json()["result"]["id"] == 5
        httpx.post(f"{url}/_fake/user_sends_text", json={"user_id": 3, "text": "hi"}).raise_for_status()
        updates = httpx.post(f"{url}/bot5:abc/getUpdates").json()["result"]
        assert updates[0]["message"]["text"] == "hi"
        httpx.post(f"{url}/bot5:abc/sendMessage", data={"chat_id": "3", "text": "ответ"}).raise_for_status()
        sent = httpx.get(f"{url}/_fake/sent").json()["result"]
        assert [(s["chat_id"], s["text"]) for s in sent] == [(3, "ответ")]
    finally:
        process.terminate()
        process.wait(10)


# --- entity parser -------------------------------------------------------------------------------------


def test_markdown_v2_entities_and_offsets() -> None:
    """Nested entities, links and code come out with UTF-16 offsets like Telegram's."""
    parsed = parse_markdown_v2("🏠 *Жирный _курсив_* [сайт](https://example.org/a\\)b) `a_b*c` ||спойлер||")
    assert parsed.text == "🏠 Жирный курсив сайт a_b*c спойлер"
    kinds = {e["type"]: (e["offset"], e["length"]) for e in parsed.entities}
    assert kinds["bold"] == (3, 13)
    assert kinds["italic"] == (10, 6)
    assert kinds["text_link"] == (17, 4)
    assert kinds["code"] == (22, 5)
    assert kinds["spoiler"] == (28, 7)
    assert next(e for e in parsed.entities if e["type"] == "text_link")["url"] == "https://example.org/a)b"


def test_markdown_v2_pre_blockquote_and_errors() -> None:
    """Pre blocks take a language, '>' at a line start quotes, unclosed entities report their byte offset."""
    parsed = parse_markdown_v2("```python\nprint(1)```\n>цитата\n>ещё\nконец")
    assert parsed.text == "print(1)\nцитата\nещё\nконец"
    assert {e["type"] for e in parsed.entities} == {"pre", "blockquote"}
    with pytest.raises(ValueError, match="Can't find end of Bold entity at byte offset 5"):
        parse_markdown_v2("Мы *жирно")
    with pytest.raises(ValueError, match="Character '>' is reserved"):
        parse_markdown_v2("a > b")


def test_html_and_legacy_markdown_parsers() -> None:
    """HTML tags nest and must match; legacy Markdown needs no escaping of '.' but closes its entities."""
    assert parse_html("<b>a<i>b</i></b>").entities == (
        {"type": "bold", "offset": 0, "length": 2},
        {"type": "italic", "offset": 1, "length": 1},
    )
    with pytest.raises(ValueError, match='Unmatched end tag at byte offset 8, expected "</i>", found "</b>"'):
        parse_html("<b>a<i>b</b></i>")
    with pytest.raises(ValueError, match='Can\'t find end tag corresponding to start tag "b"'):
        parse_html("<b>a")
    assert parse_markdown("Итог 3.5 *жирно* [ссылка](https://example.org)").text == "Итог 3.5 жирно ссылка"


# --- staff chat: membership and replies in groups ---------------------------------------------------------


@pytest.mark.parametrize("status", ["creator", "administrator", "member", "restricted", "left", "kicked"])
async def test_get_chat_member_reports_the_status_set(telegram_server: FakeTelegramServer, status: str) -> None:
    """getChatMember parses in PTB as the ChatMember subclass of the status set; unknown users are `left`."""
    telegram_server.set_chat_member(-100777, 5, status, first_name="Анна")
    async with make_bot(telegram_server) as bot:
        member = await bot.get_chat_member(-100777, 5)
        assert member.status == status and member.user.first_name == "Анна"
        assert (await bot.get_chat_member(-100888, 5)).status == "left"


async def test_a_group_reply_embeds_the_message_it_answers(telegram_server: FakeTelegramServer) -> None:
    """A user's reply in a group carries reply_to_message (the bot's message) as Telegram sends it."""
    telegram_server.set_chat_member(-100777, 5, "member", first_name="Анна")
    got: list[Any] = []

    async def on_reply(update: Any, context: Any) -> None:
        got.append(update.effective_message)

    async with polling(telegram_server, MessageHandler(filters.REPLY, on_reply)):
        posted = await make_app(telegram_server).bot.send_message(-100777, "Уведомление")
        telegram_server.user_sends_group_text(-100777, 5, "Ответ", reply_to_message_id=posted.message_id)
        await telegram_server.wait_for_delivery()
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
    assert got and got[0].text == "Ответ" and got[0].chat.id == -100777
    assert got[0].reply_to_message.message_id == posted.message_id and got[0].reply_to_message.text == "Уведомление"


async def test_a_fault_can_target_one_text(telegram_server: FakeTelegramServer) -> None:
    """fail_next(text_contains=…) fails only the sends whose text contains it."""
    telegram_server.fail_next("sendMessage", n=5, chat_id=7, text_contains="хвост")
    async with make_bot(telegram_server) as bot:
        await bot.send_message(7, "голова")
        with pytest.raises(NetworkError):
            await bot.send_message(7, "хвост")
    assert telegram_server.texts_to(7) == ["голова"]
