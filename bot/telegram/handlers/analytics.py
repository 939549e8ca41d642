"""Аналитика 360 in the chat: `/analytics CODE` and the «Аналитика 360» button (the queue poll is a job of bot/app.py).

Handlers are thin: they find the partner, call AnalyticsService and answer. They sit in a handler group
before the chat assistant's and stop further processing once they answered, so the assistant never
answers a code the partner typed for the analytics.

The code prompt uses ForceReply: the partner's answer is a reply to the prompt, recognised by the
prompt's text, so no conversation state is kept in memory and a restart loses nothing.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from telegram import ForceReply, Message, Update
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.services.analytics import AnalyticsRequestError, Job
from bot.services.partner_limits import rate_limited_text
from bot.telegram.context import bot_context, present
from bot.telegram.texts import TEXT_UNAVAILABLE
from gateway import GatewayError

log = logging.getLogger(__name__)

HANDLER_GROUP = -10  # before the chat assistant's handlers (group 0)
BUTTON_LABEL = "Аналитика 360"
PROMPT = "Аналитика 360: отправьте в ответ на это сообщение код объекта, например DEMO-0001."
TEXT_NOT_AUTHORIZED = (
    "Аналитика 360 доступна партнёрам агентства. Сначала авторизуйтесь: нажмите «Поделиться номером» "
    "или отправьте /start."
)
STATUS_LABELS = {"NEW": "в очереди", "PROCESSING": "готовится"}


class _ReplyToPrompt(filters.MessageFilter):
    """A text message answering our code prompt."""

    def filter(self, message: Message) -> bool:
        replied = message.reply_to_message
        return bool(
            message.text
            and replied is not None
            and replied.from_user is not None
            and replied.from_user.is_bot
            and (replied.text or "").startswith(PROMPT[:40])
        )


_BUTTON = re.compile(rf"^\W*{re.escape(BUTTON_LABEL)}\W*$", re.IGNORECASE)


async def analytics_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """`/analytics CODE` queues a request; `/analytics` alone asks for the code."""
    code = " ".join(context.args or []).strip()
    if code:
        await _request(update, context, code)
    else:
        await _ask_for_code(update, context)
    raise ApplicationHandlerStop


async def analytics_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The «Аналитика 360» button asks for the code."""
    await _ask_for_code(update, context)
    raise ApplicationHandlerStop


async def analytics_code_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A reply to the code prompt queues a request for that code."""
    message = update.effective_message
    if message is not None and message.text:
        await _request(update, context, message.text)
    raise ApplicationHandlerStop


def register_analytics_handlers(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Add the analytics handlers (before the chat's). The queue poll is a job of the composition root."""
    application.add_handler(CommandHandler("analytics", analytics_command), group=HANDLER_GROUP)
    application.add_handler(
        MessageHandler(filters.TEXT & filters.Regex(_BUTTON) & ~filters.COMMAND, analytics_button), group=HANDLER_GROUP
    )
    application.add_handler(
        MessageHandler(filters.TEXT & ~filters.COMMAND & _ReplyToPrompt(), analytics_code_reply), group=HANDLER_GROUP
    )


# -- helpers -----------------------------------------------------------------------------------


async def _ask_for_code(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    ctx = bot_context(context)
    try:
        if await ctx.auth.check(user.id) is None:
            await message.reply_text(TEXT_NOT_AUTHORIZED, parse_mode=None)
            return
        pending = [j for j in await present(ctx.analytics, "analytics").list_for(user.id) if j.pending]
    except GatewayError as exc:
        log.warning("analytics prompt for %s failed: %s", user.id, exc)
        await message.reply_text(TEXT_UNAVAILABLE, parse_mode=None)
        return
    text = PROMPT
    if pending:
        lines = [f"• {j.object_code} — {STATUS_LABELS.get(j.status, j.status.lower())}" for j in pending]
        text += "\n\nУже в работе:\n" + "\n".join(lines)
    await message.reply_text(
        text, parse_mode=None, reply_markup=ForceReply(selective=True, input_field_placeholder="DEMO-0001")
    )


async def _request(update: Update, context: ContextTypes.DEFAULT_TYPE, code: str) -> None:
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None:
        return
    ctx = bot_context(context)
    limiter = ctx.rate_limiter
    if limiter is not None and (retry := limiter.acquire(user.id)) is not None:
        await message.reply_text(rate_limited_text(retry), parse_mode=None)  # nothing queued
        return
    try:
        partner = await ctx.auth.check(user.id)
        if partner is None:
            await message.reply_text(TEXT_NOT_AUTHORIZED, parse_mode=None)
            return
        requested_by = partner.code or partner.display_name
        job = await present(ctx.analytics, "analytics").request(user.id, requested_by, code)
    except AnalyticsRequestError as exc:
        await message.reply_text(exc.message, parse_mode=None)
        return
    except GatewayError as exc:
        log.warning("analytics request of %s failed: %s", user.id, exc)
        await message.reply_text(TEXT_UNAVAILABLE, parse_mode=None)
        return
    await message.reply_text(accepted_text(job), parse_mode=None)


def accepted_text(job: Job) -> str:
    """What the partner reads once a request is queued (or found already queued)."""
    if job.existing:
        state = STATUS_LABELS.get(job.status, job.status.lower())
        return (
            f"Запрос по объекту {job.object_code} уже в работе ({state}). "
            "Отчёт придёт в этот чат, как только будет готов."
        )
    return (
        f"Запрос принят: Аналитика 360 по объекту {job.object_code}.\n"
        "Отчёт (текст и PDF) придёт в этот чат, обычно через 1–2 минуты.\n"
        f"Номер запроса: {job.id[:8]}"
    )
