"""The partner's chat: /start, phone authorization, text messages, «Позвать оператора», everything else.

Handlers only translate between Telegram and the services (reached through the BotContext, bot/telegram/context.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from telegram import KeyboardButton, Message, ReplyKeyboardMarkup, ReplyKeyboardRemove, Update
from telegram.constants import ChatAction, ChatType
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from bot.ai.base import DeltaSink
from bot.services.appeals import ChatReply
from bot.services.auth import Partner
from bot.services.message_parts import split_message
from bot.services.partner_limits import rate_limited_text
from bot.services.ports import DeliveryError, InlineButton
from bot.services.turn_context import current_turn
from bot.telegram.context import BotContext, bot_context, install_context, present
from bot.telegram.drafts import DraftStreamer
from bot.telegram.handlers.webapp import offer_webapp
from bot.telegram.texts import TEXT_UNAVAILABLE
from gateway import GatewayError, SheetUnavailable

log = logging.getLogger(__name__)

CALLBACK_HUMAN = "appeal:human"
OPERATOR_BUTTON = InlineButton("Позвать оператора", callback_data=CALLBACK_HUMAN)
TYPING_REFRESH = 4.0  # Telegram shows "typing…" for 5 s per action
AUTH_RETRY_FIRST, AUTH_RETRY_MAX = 1.0, 30.0  # seconds between authorization attempts while Auth is unreadable
AUTH_WAIT_LIMIT = 600.0  # without the durable inbox (which keeps the update for later), wait at most this long

TEXT_GREETING = (
    "Здравствуйте! Это ассистент партнёрской программы агентства недвижимости.\n\n"
    "Чтобы начать, подтвердите ваш номер телефона: нажмите кнопку «Поделиться номером» внизу экрана. "
    "Номер должен совпадать с тем, что есть у агентства в списке партнёров."
)
TEXT_UNAUTHORIZED = (
    "Ассистент доступен только партнёрам агентства. Нажмите «Поделиться номером» внизу экрана, чтобы "
    "подтвердить номер телефона. Если доступа нет, обратитесь к вашему менеджеру в агентстве."
)
TEXT_WELCOME_BACK = (
    "{name}, здравствуйте! Задайте вопрос обычным сообщением. Если нужен сотрудник — напишите «оператор»."
)
TEXT_NON_TEXT = (
    "Пока я понимаю только текстовые сообщения. Напишите вопрос текстом, а если нужно передать файл или фото, "
    "напишите «оператор» — сотрудник подскажет, куда их отправить."
)
TEXT_ERROR = "Не получилось обработать сообщение. Попробуйте ещё раз чуть позже или напишите «оператор»."
CONTACT_BUTTON = "📱 Поделиться номером"


def contact_keyboard() -> ReplyKeyboardMarkup:
    """The reply keyboard with the one button that shares the user's own phone number."""
    return ReplyKeyboardMarkup(
        [[KeyboardButton(CONTACT_BUTTON, request_contact=True)]], resize_keyboard=True, one_time_keyboard=True
    )


def register_chat_handlers(
    application: Application[Any, Any, Any, Any, Any, Any],
    services: BotContext | None = None,
    *,
    group: int = 0,
) -> None:
    """Add the chat handlers (private chats only); `services` becomes the application's context when given.

    The last handler answers every other non-text private message, so register handlers for other kinds of
    messages (documents, web_app_data…) before calling this, or in a lower-numbered group.
    """
    if services is not None:
        install_context(application, services)
    private = filters.ChatType.PRIVATE
    application.add_handler(CommandHandler("start", on_start, filters=private), group)
    application.add_handler(MessageHandler(private & filters.CONTACT, on_contact), group)
    application.add_handler(MessageHandler(private & filters.TEXT & ~filters.COMMAND, on_text), group)
    application.add_handler(CallbackQueryHandler(on_call_operator, pattern=f"^{CALLBACK_HUMAN}$"), group)
    application.add_handler(
        MessageHandler(private & ~filters.TEXT & ~filters.CONTACT & ~filters.StatusUpdate.ALL, on_non_text), group
    )


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start: greet; ask for the phone unless the user is already authorized."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    services = bot_context(context)
    try:
        partner = await services.auth.check(user.id)
    except GatewayError:
        partner = None
    if partner is not None:
        name = partner.name or user.first_name
        await message.reply_text(
            TEXT_WELCOME_BACK.format(name=name), parse_mode=None, reply_markup=ReplyKeyboardRemove()
        )
        return
    await message.reply_text(TEXT_GREETING, parse_mode=None, reply_markup=contact_keyboard())


async def on_contact(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A shared contact: authorize the sender if it is their own and the phone is in Auth."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or message.contact is None:
        return
    services = bot_context(context)
    contact = message.contact
    result = await services.auth.authorize_contact(user.id, contact.user_id, contact.phone_number, user.first_name)
    if result.ok and result.partner is not None:
        await present(services.appeals, "appeals").open(result.partner)
        await message.reply_text(result.message, parse_mode=None, reply_markup=ReplyKeyboardRemove())
        await offer_webapp(context, message.chat_id)  # a separate message: this one removes the reply keyboard
    else:
        await message.reply_text(result.message, parse_mode=None, reply_markup=contact_keyboard())


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A text message: the assistant's answer (or silence while an operator has the conversation)."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or message.text is None:
        return
    services = bot_context(context)
    if await _refused_by_rate(services, user.id, message.chat_id):
        return
    drafts = _draft_streamer(services, context, message)
    try:
        async with _typing(context, message.chat_id):
            # Authorization and the partner's row are read together: one batched sheet call, not two in a row.
            partner, reply = await _handle_when_authorizable(
                services, user.id, message.text, drafts.feed if drafts else None
            )
    except _Postponed:
        log.warning("message of %s left for the next start: Auth still unreadable at shutdown", user.id)
        if drafts is not None:
            drafts.cancel()
        return
    except GatewayError as exc:
        log.warning("authorization check of %s failed: %s", user.id, exc)
        await _finish_drafts(drafts)
        await _send(services, message.chat_id, TEXT_UNAVAILABLE)
        return
    except Exception:  # never leave the partner without an answer
        log.exception("turn of %s failed", user.id)
        await _finish_drafts(drafts)
        await _send(services, message.chat_id, TEXT_ERROR)
        return
    except BaseException:  # cancelled (shutdown): no draft task may outlive the turn
        if drafts is not None:
            drafts.cancel()
        raise
    sent = await _finish_drafts(drafts)
    if partner is None or reply is None:
        await _explain_unauthorized(services, update)
        return
    if reply.text:
        text = _unsent_rest(reply.text, sent)
        await _send(services, message.chat_id, text, with_operator_button=reply.offer_operator)


async def on_call_operator(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The «Позвать оператора» button under an answer."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    with contextlib.suppress(TelegramError):
        await query.answer()
    services = bot_context(context)
    chat_id = query.message.chat.id if query.message is not None else user.id
    if await _refused_by_rate(services, user.id, chat_id):
        return
    partner = await _partner_or_explain(services, update)
    if partner is None:
        return
    reply = await present(services.appeals, "appeals").request_human(partner)
    await _send(services, chat_id, reply.text)


async def on_non_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Photos, voice, stickers…: a polite note that only text is understood."""
    message = update.effective_message
    if message is None:
        return
    await message.reply_text(TEXT_NON_TEXT, parse_mode=None)


# -- helpers ---------------------------------------------------------------------------------------


async def _refused_by_rate(services: BotContext, user_id: int, chat_id: int) -> bool:
    """Apply the per-partner rate limit before anything is read or stored; tell the partner when refused."""
    limiter = services.rate_limiter
    if limiter is None:
        return False
    retry = limiter.acquire(user_id)
    if retry is None:
        return False
    log.info("message of %s refused by the rate limit (retry in %.0f s)", user_id, retry)
    await _send(services, chat_id, rate_limited_text(retry))
    return True


class _Postponed(Exception):
    """The sender's authorization could not be checked before shutdown: the update is left for the next start."""


async def _handle_when_authorizable(
    services: BotContext, telegram_id: int, text: str, on_delta: DeltaSink | None = None
) -> tuple[Partner | None, ChatReply | None]:
    """Answer the message once the sender's authorization can be checked: a message is never dropped because
    Auth is unreadable (a remembered authorization answers at once; otherwise it waits for the sheet)."""
    delay, waited = AUTH_RETRY_FIRST, 0.0
    turn = current_turn()
    while True:
        try:
            return await present(services.appeals, "appeals").handle_message(
                telegram_id, text, services.auth.check, on_delta
            )
        except SheetUnavailable as exc:
            if turn is None and waited >= AUTH_WAIT_LIMIT:
                raise
            log.warning("authorization of %s waits for the sheet (%s); next try in %.0f s", telegram_id, exc, delay)
        if turn is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turn.stopping.wait(), delay)
            if turn.stopping.is_set():
                turn.postponed = True
                raise _Postponed
        else:
            await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, AUTH_RETRY_MAX)


async def _partner_or_explain(services: BotContext, update: Update) -> Partner | None:
    """The authorized partner behind the update, or None after telling the user why not."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return None
    try:
        partner = await services.auth.check(user.id)
    except GatewayError as exc:
        log.warning("authorization check of %s failed: %s", user.id, exc)
        await _send(services, chat.id, TEXT_UNAVAILABLE)
        return None
    if partner is None:
        await _explain_unauthorized(services, update)
    return partner


async def _explain_unauthorized(services: BotContext, update: Update) -> None:
    """Tell a user without access how to get it (with the share-phone button where a keyboard fits)."""
    message, chat = update.effective_message, update.effective_chat
    if message is not None and update.callback_query is None:
        await message.reply_text(TEXT_UNAUTHORIZED, parse_mode=None, reply_markup=contact_keyboard())
    elif chat is not None:
        await _send(services, chat.id, TEXT_UNAUTHORIZED)


async def _send(services: BotContext, chat_id: int, text: str, *, with_operator_button: bool = False) -> None:
    try:
        await present(services.messenger, "messenger").send_text(
            chat_id, text, buttons=[OPERATOR_BUTTON] if with_operator_button else None
        )
    except DeliveryError as exc:
        log.warning("reply to %s not delivered: %s", chat_id, exc)


def _draft_streamer(services: BotContext, context: ContextTypes.DEFAULT_TYPE, message: Message) -> DraftStreamer | None:
    """A draft streamer for this answer, when it is worth one: a private chat where Telegram has not refused
    drafts, and a provider that writes piece by piece (an offline answer comes whole: it is just sent)."""
    if message.chat.type != ChatType.PRIVATE or not present(services.appeals, "appeals").streams:
        return None
    if services.drafts is None or not services.drafts.allowed(message.chat_id):
        return None

    async def send_part(part: str) -> None:
        await present(services.messenger, "messenger").send_text(message.chat_id, part)

    return DraftStreamer(context.bot, message.chat_id, services.drafts, send_part)


async def _finish_drafts(drafts: DraftStreamer | None) -> list[str]:
    """Stop drafting before the final message goes out; the parts of a long answer already sent."""
    return await drafts.finish() if drafts is not None else []


def _unsent_rest(text: str, sent: list[str]) -> str:
    """What is left of `text` after the parts a long streamed answer already sent (all of it if they differ)."""
    if not sent:
        return text
    pieces = split_message(text)
    if pieces[: len(sent)] != sent:
        return text  # the final text does not continue what was streamed: better twice than missing
    return "\n\n".join(pieces[len(sent) :])


@contextlib.asynccontextmanager
async def _typing(context: ContextTypes.DEFAULT_TYPE, chat_id: int) -> AsyncIterator[None]:
    """Show "typing…" until the block ends (refreshed, since one action lasts only 5 s)."""

    async def keep_typing() -> None:
        while True:
            with contextlib.suppress(TelegramError):
                await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
            await asyncio.sleep(TYPING_REFRESH)

    task = asyncio.create_task(keep_typing())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
