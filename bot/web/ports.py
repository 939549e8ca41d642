"""What the web layer needs from the services, as Protocols (the services satisfy them structurally).

AppealsService → ChatPort, AnalyticsService → AnalyticsPort, AuthService → AuthPort; the staff console
goes through StaffPort, which the composition root implements over the gateway (local mode only). Below them,
the ports of the live and catalogue routes, of /metrics (the gateway's figures) and of the webhook route.
Read-only properties let frozen dataclasses match.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.leadership import Leadership
    from bot.services.catalogue import CataloguePage, CatalogueQuery
    from bot.web.initdata import WebAppUser


class PartnerView(Protocol):
    """An authorized partner (a row of Auth)."""

    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def telegram_id(self) -> int: ...


class ChatReplyView(Protocol):
    """The answer to one chat message: `text` ('' = nothing to show), the appeal's status, and its kind
    (`answer`, `fallback`, `escalated`, `silent` or `limit` — the daily AI limit is reached)."""

    @property
    def text(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def escalated(self) -> bool: ...
    @property
    def kind(self) -> str: ...


class ChatEntryView(Protocol):
    """One entry of the user's conversation log."""

    @property
    def at(self) -> datetime | None: ...
    @property
    def author(self) -> str: ...
    @property
    def text(self) -> str: ...


class JobView(Protocol):
    """One analytics request (a row of Очередь)."""

    @property
    def id(self) -> str: ...
    @property
    def object_code(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> str: ...
    @property
    def finished_at(self) -> str: ...
    @property
    def result_text(self) -> str: ...
    @property
    def pdf_url(self) -> str: ...
    @property
    def error(self) -> str: ...


class ChatPort(Protocol):
    """The partner's conversation with the assistant."""

    # `Any` partner: the service takes and returns its own Partner type, which is what AuthPort.check returns.
    async def handle_message(
        self,
        telegram_id: int,
        text: str,
        authorize: Callable[[int], Awaitable[Any]],
        on_delta: Callable[[str], None] | None = None,
    ) -> tuple[Any, ChatReplyView | None]:
        """Authorize the sender and answer one message (the authorization and the conversation's row are read
        together); `(None, None)` when not authorized. `on_delta` gets the AI's answer as it is written."""
        ...

    async def history(self, telegram_id: int) -> Sequence[ChatEntryView]:
        """The entries of the partner's log, oldest first."""
        ...


class AnalyticsPort(Protocol):
    """Analytics 360 requests."""

    async def request(self, telegram_id: int, requested_by: str, object_code: str) -> JobView:
        """Queue a request; raises the service's named errors for a bad/unknown code or too many pending."""
        ...

    async def list_for(self, telegram_id: int) -> Sequence[JobView]:
        """The user's requests."""
        ...

    async def get(self, telegram_id: int, job_id: str) -> JobView | None:
        """One of the user's requests, or None when it is not theirs or does not exist."""
        ...


class AuthPort(Protocol):
    """Who may use the Mini App."""

    async def check(self, telegram_id: int) -> PartnerView | None:
        """The authorized partner with this Telegram ID, or None."""
        ...


class StaffPort(Protocol):
    """The local staff console's window into the sheets (through the gateway)."""

    async def sheets(self) -> list[str]:
        """Sheet titles."""
        ...

    async def dump(self, sheet: str) -> list[list[str]]:
        """Every row of a sheet, header first."""
        ...

    async def set_cell(self, sheet: str, a1: str, value: str) -> None:
        """Write one cell verbatim."""
        ...


# -- the live and catalogue routes (bot/web/live.py) ------------------------------------------


class CallerView(Protocol):
    """The authenticated caller (bot.web.app.Caller)."""

    @property
    def user(self) -> WebAppUser: ...
    @property
    def partner(self) -> Any: ...


class CataloguePort(Protocol):
    """The agency's objects."""

    async def search(self, query: CatalogueQuery) -> CataloguePage:
        """Objects matching the query."""
        ...


class SentPromotionView(Protocol):
    """A promotion the partner received."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def picture(self) -> str: ...
    @property
    def sent_at(self) -> datetime: ...


class EscalationReplyView(Protocol):
    """What the «Позвать оператора» button answers."""

    @property
    def text(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def escalated(self) -> bool: ...


EscalateFn = Callable[[Any], Awaitable[EscalationReplyView]]
PromotionsFn = Callable[[int], Awaitable[Sequence[SentPromotionView]]]


# -- /metrics (bot/web/metrics.py) and the webhook route (bot/web/webhook.py) -------------------


class GatewayCounters(Protocol):
    """The counters the gateway keeps (gateway.metrics.GatewayMetrics)."""

    @property
    def calls(self) -> Mapping[str, int]: ...
    @property
    def quota_errors(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def outbox_replayed(self) -> int: ...


class GatewayHealth(Protocol):
    """What the exporter reads from the gateway (AsyncSheetsGateway satisfies it)."""

    @property
    def metrics(self) -> GatewayCounters: ...
    @property
    def breaker_state(self) -> str: ...
    @property
    def outbox_depth(self) -> int: ...


class HandOffGate(Protocol):
    """What the route asks the running process (bot.app.Runtime): may it take an update now."""

    @property
    def leadership(self) -> Leadership | None: ...

    @property
    def updates_open(self) -> bool: ...

    @property
    def phase(self) -> str: ...
