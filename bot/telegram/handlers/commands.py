"""The bot's command menu (setMyCommands) and /help.

Partners see their commands in the default scope; each admin additionally sees the admin commands, set for
their private chat only (BotCommandScopeChat), so the menu reveals them to nobody else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from telegram import Bot, BotCommand, BotCommandScopeChat, BotCommandScopeDefault, Update
from telegram.error import TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes, filters

from bot.services.admin import ADMIN_COMMANDS

log = logging.getLogger(__name__)

Commands = Sequence[tuple[str, str]]

#: What partners can do; each has a handler: /start (chat), /app (Mini App), /analytics, /promo and
#: /stop_promo (promotions), /help (here).
PARTNER_COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "Начать и подтвердить номер телефона"),
    ("app", "Открыть приложение"),
    ("analytics", "Аналитика 360 по коду объекта"),
    ("promo", "Получать акции агентства"),
    ("stop_promo", "Не получать акции"),
    ("help", "Что умеет бот"),
)
HELP_HEADER = "Что умеет бот:"
HELP_FOOTER = "Вопрос можно задать обычным сообщением. Если нужен сотрудник агентства — напишите «оператор»."


async def publish_commands(
    bot: Bot, admin_ids: Iterable[int], *, partner_commands: Commands = PARTNER_COMMANDS
) -> None:
    """setMyCommands: partner commands for everyone, partner + admin commands in each admin's chat."""
    partner = [BotCommand(name, description) for name, description in partner_commands]
    await bot.set_my_commands(partner, scope=BotCommandScopeDefault())
    admin = partner + [BotCommand(name, description) for name, description in ADMIN_COMMANDS]
    for admin_id in admin_ids:
        try:
            await bot.set_my_commands(admin, scope=BotCommandScopeChat(admin_id))
        except TelegramError as exc:  # e.g. the admin never opened the bot: the partner menu still works
            log.warning("admin commands not set for %s: %s", admin_id, exc)


def help_text(commands: Commands = PARTNER_COMMANDS, admin_commands: Commands = ()) -> str:
    """The /help message."""
    lines = [HELP_HEADER, *(f"/{name} — {description}" for name, description in commands)]
    if admin_commands:
        lines += ["", "Для администратора:", *(f"/{name} — {description}" for name, description in admin_commands)]
    return "\n".join([*lines, "", HELP_FOOTER])


def register_help_handler(
    application: Application[Any, Any, Any, Any, Any, Any],
    admin_ids: Iterable[int] = (),
    *,
    partner_commands: Commands = PARTNER_COMMANDS,
) -> None:
    """Add /help (private chats); admins also see the admin commands in it."""
    admins = frozenset(int(i) for i in admin_ids)

    async def on_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/help: the commands this user can use."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        extra = ADMIN_COMMANDS if user.id in admins else ()
        await message.reply_text(help_text(partner_commands, extra), parse_mode=None)

    application.add_handler(CommandHandler("help", on_help, filters=filters.ChatType.PRIVATE))
