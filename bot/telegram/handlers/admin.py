"""The admin's commands (/list, /view, /export, /export_all, /stats, /reload, /broadcast_test).

Registered only for ADMIN_TELEGRAM_IDS in private chats: for anyone else the command matches no handler here,
so it gets exactly what any unknown command gets, and nothing reveals that admin commands exist. The logic is
in AdminService; these handlers only pass the command on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from telegram import Update
from telegram.ext import Application, ApplicationHandlerStop, CommandHandler, ContextTypes, filters

from bot.services.admin import ADMIN_COMMANDS, AdminService
from bot.telegram.context import bot_context, present

HANDLER_GROUP = -20  # before every other group, so nothing else also answers an admin's command


def register_admin_handlers(application: Application[Any, Any, Any, Any, Any, Any], admin_ids: Iterable[int]) -> None:
    """Add the admin commands for these Telegram IDs only (none when the list is empty)."""
    ids = {int(i) for i in admin_ids}
    if not ids:
        return
    admins = filters.User(user_id=ids) & filters.ChatType.PRIVATE
    for command, _ in ADMIN_COMMANDS:
        application.add_handler(CommandHandler(command, on_admin_command, filters=admins), group=HANDLER_GROUP)


def admin_service(context: ContextTypes.DEFAULT_TYPE) -> AdminService:
    """The AdminService of the BotContext."""
    return present(bot_context(context).admin, "admin")


async def on_admin_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Any admin command: run it and answer in the same chat."""
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None or not message.text:
        return
    command = message.text.split()[0].lstrip("/").split("@")[0].lower()
    await admin_service(context).handle(chat.id, command, context.args or [])
    raise ApplicationHandlerStop
