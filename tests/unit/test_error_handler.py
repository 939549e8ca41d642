"""An exception no handler caught reaches the partner as a polite message, never as silence."""

from __future__ import annotations

import pytest
from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes

from bot.telegram.handlers.errors import TEXT_SOMETHING_WENT_WRONG, on_error
from tests.fakes.telegram_server import FakeTelegramServer
from tests.telegram_support import long_polling


async def _boom(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    raise RuntimeError("unexpected")


async def test_unhandled_error_is_answered_politely(
    telegram_server: FakeTelegramServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises: the error is logged and the user gets the polite message."""
    app = Application.builder().token(telegram_server.token).base_url(telegram_server.api_base_url).build()
    app.add_handler(CommandHandler("boom", _boom))
    app.add_error_handler(on_error)
    async with long_polling(app):
        telegram_server.user_sends_command(555, "/boom")
        sent = await telegram_server.wait_for_sent(chat_id=555, timeout=10)
    assert sent.text == TEXT_SOMETHING_WENT_WRONG and sent.parse_mode is None
    assert "unhandled error for chat 555" in caplog.text
