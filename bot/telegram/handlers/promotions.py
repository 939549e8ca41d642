"""Promotions in the chat: /stop_promo and /promo (the partner's choice, kept in Auth «Рассылка») and the job
that polls Акции. The broadcast itself is PromotionService's.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import Application, ApplicationHandlerStop, CommandHandler, ContextTypes, filters

from bot.services.promotions import PromotionService
from bot.telegram.context import bot_context, present
from bot.telegram.texts import TEXT_AUTHORIZE_FIRST, TEXT_UNAVAILABLE
from gateway import GatewayError

log = logging.getLogger(__name__)

HANDLER_GROUP = -5  # before the chat assistant's group 0
TEXT_STOPPED = "Готово: вы отписались от рассылки акций агентства. Чтобы снова получать акции, отправьте /promo."
TEXT_ALREADY_STOPPED = "Вы уже отписаны от рассылки акций. Чтобы снова получать акции, отправьте /promo."
TEXT_RESUMED = "Готово: вы снова будете получать акции агентства. Отписаться можно командой /stop_promo."
TEXT_ALREADY_ON = "Вы уже получаете акции агентства. Отписаться можно командой /stop_promo."
TEXT_NOT_PARTNER = f"Акции агентства приходят партнёрам. {TEXT_AUTHORIZE_FIRST}"


def register_promotion_handlers(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Add /stop_promo and /promo. Polling Акции is a job of the composition root."""
    private = filters.ChatType.PRIVATE
    application.add_handler(CommandHandler("stop_promo", on_stop_promo, filters=private), group=HANDLER_GROUP)
    application.add_handler(CommandHandler("promo", on_promo, filters=private), group=HANDLER_GROUP)


def promotion_service(context: ContextTypes.DEFAULT_TYPE) -> PromotionService:
    """The PromotionService of the BotContext."""
    return present(bot_context(context).promotions, "promotions")


async def on_stop_promo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stop_promo: no more promotions for this partner."""
    await _choose(update, context, enabled=False)


async def on_promo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/promo: promotions again."""
    await _choose(update, context, enabled=True)


async def _choose(update: Update, context: ContextTypes.DEFAULT_TYPE, *, enabled: bool) -> None:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    services = bot_context(context)
    promotions = promotion_service(context)
    try:
        partner = await services.auth.check(user.id)
        if partner is None:
            text = TEXT_NOT_PARTNER
        elif partner.promotions == enabled:
            text = TEXT_ALREADY_ON if enabled else TEXT_ALREADY_STOPPED
        else:
            await promotions.set_opt_in(partner, enabled)
            text = TEXT_RESUMED if enabled else TEXT_STOPPED
            log.info("partner %s %s promotions", user.id, "resumed" if enabled else "stopped")
    except GatewayError as exc:
        log.warning("promotions choice of %s not saved: %s", user.id, exc)
        text = TEXT_UNAVAILABLE
    await message.reply_text(text, parse_mode=None)
    raise ApplicationHandlerStop
