"""Staff chat handlers: «Взять»/«Решено» under a notice, and a Telegram reply to a notice (→ the partner)."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Message, Update, User
from telegram.ext import Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from bot.services.staff_replies import CALLBACK_PREFIX, SOLVE, TAKE, StaffDesk, StaffMember
from bot.telegram.context import bot_context, present

log = logging.getLogger(__name__)

HANDLER_GROUP = -15  # before the chat handlers; they only take private chats anyway
_PATTERN = rf"^{CALLBACK_PREFIX}:({TAKE}|{SOLVE}):-?\d+$"


def register_staff_handlers(application: Application[Any, Any, Any, Any, Any, Any], staff_chat_id: int) -> None:
    """Buttons under notices, and text replies in the staff chat (and nowhere else)."""
    application.add_handler(CallbackQueryHandler(on_staff_button, pattern=_PATTERN), group=HANDLER_GROUP)
    replies = filters.Chat(chat_id=staff_chat_id) & filters.REPLY & filters.TEXT & ~filters.COMMAND
    application.add_handler(MessageHandler(replies, on_staff_reply), group=HANDLER_GROUP)


def _desk(context: ContextTypes.DEFAULT_TYPE) -> StaffDesk:
    return present(bot_context(context).staff_desk, "staff_desk")


def _member(user: User) -> StaffMember:
    return StaffMember(user.id, user.full_name or user.username or str(user.id))


async def on_staff_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """«Взять» / «Решено»: pressed in the staff chat by a member; answered with a short note."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    message = query.message
    staff_chat = bot_context(context).staff_chat_id
    if not isinstance(message, Message) or message.chat.id != staff_chat:
        await query.answer("Эта кнопка работает только в чате поддержки.")
        return
    _, action, raw_id = query.data.split(":")
    answer = await _desk(context).press(
        action, int(raw_id), _member(query.from_user), message.message_id, message.text or ""
    )
    await query.answer(answer[:200])


async def on_staff_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A Telegram reply in the staff chat: if it answers a notice about a partner, it goes to that partner."""
    message = update.effective_message
    if message is None or message.from_user is None or message.reply_to_message is None or not message.text:
        return
    if message.from_user.is_bot:
        return
    outcome = await _desk(context).reply(
        message.message_id, message.reply_to_message.message_id, _member(message.from_user), message.text
    )
    log.info("staff reply %s in the staff chat: %s", message.message_id, outcome)
