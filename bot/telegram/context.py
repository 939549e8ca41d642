"""The one typed context of the Telegram handlers: what they and their jobs reach, set once by bot/app.py.

PTB's model is one `bot_data` per application; ours holds exactly one entry, a `BotContext`, under
CONTEXT_KEY (no globals, no string-keyed service bags). A service is None when its feature is off (no
Telegram admin console without a bot token, no staff desk without STAFF_CHAT_ID); a handler registered for
it asks through `present`, so a wiring mistake fails loudly rather than answering wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from telegram.ext import Application, CallbackContext

from bot.services.admin import AdminService
from bot.services.analytics import AnalyticsService
from bot.services.appeals import AppealsService
from bot.services.auth import AuthService
from bot.services.partner_limits import PartnerRateLimiter
from bot.services.ports import Messenger
from bot.services.promotions import PromotionService
from bot.services.staff_replies import StaffDesk
from bot.telegram.drafts import DraftSupport

CONTEXT_KEY = "context"
T = TypeVar("T")


class ContextMissing(RuntimeError):
    """A handler ran before the composition root put what it needs into `application.bot_data`."""


@dataclass
class BotContext:
    """What the handlers use; built once by the composition root (tests may swap the rate limiter)."""

    auth: AuthService
    appeals: AppealsService | None = None  # the chat assistant
    messenger: Messenger | None = None
    analytics: AnalyticsService | None = None
    promotions: PromotionService | None = None
    admin: AdminService | None = None
    staff_desk: StaffDesk | None = None  # staff answer from the staff chat (STAFF_CHAT_ID set)
    rate_limiter: PartnerRateLimiter | None = None  # one budget per partner, shared with the web API
    webapp_url: str | None = None  # a WEBAPP_URL Telegram can open (https), else None: no Mini App buttons
    staff_chat_id: int | None = None  # the staff chat whose buttons and replies the staff handlers take
    # Where Telegram accepts streamed drafts (refusals remembered for the process); None: never stream.
    drafts: DraftSupport | None = field(default_factory=DraftSupport)


def install_context(application: Application[Any, Any, Any, Any, Any, Any], context: BotContext) -> None:
    """Put `context` into the application's bot_data (the composition root, or a test's own application)."""
    application.bot_data[CONTEXT_KEY] = context


def bot_context(source: CallbackContext[Any, Any, Any, Any] | Application[Any, Any, Any, Any, Any, Any]) -> BotContext:
    """The BotContext of a handler's CallbackContext or of an application."""
    data: Mapping[str, Any] = source.bot_data
    found = data.get(CONTEXT_KEY)
    if not isinstance(found, BotContext):
        raise ContextMissing(f"application.bot_data[{CONTEXT_KEY!r}] must hold a BotContext")
    return found


def present(value: T | None, what: str) -> T:
    """`value`, or ContextMissing naming `what` when the composition root did not set it."""
    if value is None:
        raise ContextMissing(f"BotContext.{what} is not set, but a handler that needs it is registered")
    return value
