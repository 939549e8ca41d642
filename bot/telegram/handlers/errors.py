"""The last line of defence: an exception no handler caught is logged, and the partner gets a polite
message instead of silence (never a stack trace)."""

from __future__ import annotations

import contextlib
import logging

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

log = logging.getLogger(__name__)

TEXT_SOMETHING_WENT_WRONG = "Что-то пошло не так. Попробуйте ещё раз чуть позже или напишите «оператор»."


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """PTB error handler: log with the update's chat, answer the chat once if there is one."""
    chat = update.effective_chat if isinstance(update, Update) else None
    log.error("unhandled error for chat %s", chat.id if chat else "-", exc_info=context.error)
    if chat is not None:
        with contextlib.suppress(TelegramError):
            await context.bot.send_message(chat.id, TEXT_SOMETHING_WENT_WRONG, parse_mode=None)
