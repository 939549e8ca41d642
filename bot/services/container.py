"""The services the Telegram handlers and jobs reach through `application.bot_data` (no globals)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.ai.prompt import SystemPrompt
from bot.services.admin import AdminService
from bot.services.appeals import AppealsService
from bot.services.auth import AuthService
from bot.services.knowledge import KnowledgeBase
from bot.services.operator_replies import OperatorReplyService
from bot.services.ports import Messenger
from bot.services.promotions import PromotionService
from bot.telegram.drafts import DraftSupport
from gateway import AsyncSheetsGateway

BOT_DATA_KEY = "services"


class ServicesMissing(RuntimeError):
    """A handler ran before the composition root put `Services` into `application.bot_data`."""


@dataclass(frozen=True)
class Services:
    """What the chat handlers and jobs use; built once by the composition root."""

    gateway: AsyncSheetsGateway
    auth: AuthService
    appeals: AppealsService
    operator_replies: OperatorReplyService
    knowledge: KnowledgeBase
    prompt: SystemPrompt
    messenger: Messenger
    promotions: PromotionService | None = None
    admin: AdminService | None = None
    # Where Telegram accepts streamed drafts (refusals remembered for the process); None: never stream.
    drafts: DraftSupport | None = field(default_factory=DraftSupport)


def services_from(bot_data: Mapping[str, Any]) -> Services:
    """The Services stored under BOT_DATA_KEY."""
    services = bot_data.get(BOT_DATA_KEY)
    if not isinstance(services, Services):
        raise ServicesMissing(f"application.bot_data[{BOT_DATA_KEY!r}] must hold a Services instance")
    return services
