"""The ways into the Mini App from Telegram: /app, the button after authorization, and the menu button.

Only inline `web_app` buttons and the menu button are used: Telegram sends no initData to a Mini App opened
from a reply-keyboard button, so the API could not tell who the user is. Telegram opens only https URLs.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, MenuButtonWebApp, Update, WebAppInfo
from telegram.error import TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes, filters

from bot.telegram.context import bot_context
from bot.telegram.texts import TEXT_AUTHORIZE_FIRST
from gateway import GatewayError

log = logging.getLogger(__name__)

BUTTON_TEXT = "Открыть приложение"
MENU_BUTTON_TEXT = "Приложение"

TEXT_OPEN = "Чат с ассистентом и «Аналитика 360» с PDF-отчётами — в приложении. Откройте его кнопкой ниже."
TEXT_AFTER_AUTH = (
    "Всё то же самое есть в приложении: чат с ассистентом и «Аналитика 360» с PDF-отчётами. "
    "Оно открывается кнопкой ниже или кнопкой меню рядом с полем ввода."
)
TEXT_NOT_CONFIGURED = (
    "Приложение пока не подключено. Задавайте вопросы прямо здесь, в чате, а аналитику по объекту "
    "можно заказать командой /analytics."
)
TEXT_NOT_AUTHORIZED = f"Приложение доступно партнёрам агентства. {TEXT_AUTHORIZE_FIRST}"


def usable_webapp_url(url: str | None) -> str | None:
    """The URL if Telegram can open it as a Mini App (an absolute https URL), else None."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        return None
    return url.strip()


def webapp_keyboard(webapp_url: str) -> InlineKeyboardMarkup:
    """One inline button that opens the Mini App (initData included, unlike a reply-keyboard button)."""
    return InlineKeyboardMarkup([[InlineKeyboardButton(BUTTON_TEXT, web_app=WebAppInfo(url=webapp_url))]])


def register_webapp_handlers(application: Application[Any, Any, Any, Any, Any, Any], webapp_url: str | None) -> None:
    """Add /app (private chats). The button's URL is BotContext.webapp_url (`usable_webapp_url` of WEBAPP_URL).

    A WEBAPP_URL that is not https is logged and treated as not configured (Telegram would reject it).
    """
    usable = usable_webapp_url(webapp_url)
    if webapp_url and usable is None:
        log.warning("WEBAPP_URL must be an https URL for Telegram; the Mini App buttons are off")
    application.add_handler(CommandHandler("app", on_app, filters=filters.ChatType.PRIVATE))


async def on_app(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/app: the button that opens the Mini App (or why there is none)."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    url = bot_context(context).webapp_url
    if not url:
        await message.reply_text(TEXT_NOT_CONFIGURED, parse_mode=None)
        return
    try:
        allowed = await bot_context(context).auth.check(user.id) is not None
    except GatewayError as exc:  # the Mini App checks access itself; do not block the way in
        log.warning("authorization check of %s for /app failed: %s", user.id, exc)
        allowed = True
    if not allowed:
        await message.reply_text(TEXT_NOT_AUTHORIZED, parse_mode=None)
        return
    await message.reply_text(TEXT_OPEN, parse_mode=None, reply_markup=webapp_keyboard(url))


async def offer_webapp(context: ContextTypes.DEFAULT_TYPE, chat_id: int) -> None:
    """After a successful authorization: a message with the Mini App button (nothing when not configured)."""
    url = bot_context(context).webapp_url
    if not url:
        return
    try:
        await context.bot.send_message(chat_id, TEXT_AFTER_AUTH, parse_mode=None, reply_markup=webapp_keyboard(url))
    except TelegramError as exc:  # the authorization itself succeeded; /app still works
        log.warning("Mini App button not sent to %s: %s", chat_id, exc)


async def set_menu_button(bot: Bot, webapp_url: str | None) -> bool:
    """setChatMenuButton (every chat): open the Mini App. Returns whether it was set.

    Without a usable WEBAPP_URL the menu button is left as it is (it may have been set up in @BotFather).
    """
    url = usable_webapp_url(webapp_url)
    if url is None:
        return False
    try:
        await bot.set_chat_menu_button(menu_button=MenuButtonWebApp(MENU_BUTTON_TEXT, WebAppInfo(url=url)))
    except TelegramError as exc:  # the bot works without it; /app still offers the button
        log.warning("menu button not set: %s", exc)
        return False
    return True
