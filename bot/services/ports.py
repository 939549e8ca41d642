"""Ports: the outside world as the services see it. Adapters (PTB, test fakes) implement these; LiveSink, what
services tell the Mini App's live events after they write, is implemented by bot/services/live.py's EventHub."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.services.chatlog import ChatEntry

#: Now, timezone-aware. Services take one so tests can move time.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class InlineButton:
    """A button under a message; pressing it sends `callback_data` back to the bot (or opens `url`)."""

    text: str
    callback_data: str | None = None
    url: str | None = None


class DeliveryError(Exception):
    """A message could not be delivered. `permanent`: retrying will not help (the user blocked the bot…);
    `retry_after`: Telegram's flood control asked to wait this many seconds before trying again."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Messenger(Protocol):
    """Sends messages to partners and to the staff chat (Telegram in production, a recorder in tests).

    Texts are sent as plain text (never parsed as Markdown/HTML) and split when longer than Telegram allows.
    Failures raise DeliveryError.
    """

    async def send_text(
        self, chat_id: int, text: str, *, buttons: Sequence[str] | Sequence[InlineButton] | None = None
    ) -> None:
        """Send a text message. `buttons`: InlineButtons shown under it, or plain strings as reply-keyboard labels."""
        ...

    async def send_document(self, chat_id: int, data: bytes, filename: str, caption: str) -> None:
        """Send a file as a document with a caption."""
        ...

    async def send_photo(self, chat_id: int, photo_url: str, caption: str) -> None:
        """Send a picture Telegram downloads from `photo_url`, with a caption (an over-long tail follows as text)."""
        ...

    async def notify_staff(self, text: str) -> None:
        """Post a note to the staff chat (a no-op when none is configured); never raises."""
        ...


class StaffChat(Protocol):
    """The staff chat (STAFF_CHAT_ID) as a place staff act in: notices with buttons, membership."""

    async def post(self, text: str, buttons: Sequence[InlineButton], *, reply_to: int | None = None) -> list[int]:
        """Post a message (split if long; buttons under the last piece), optionally as a reply to `reply_to`;
        the ids of the messages posted (empty when it could not be posted). Never raises."""
        ...

    async def edit(self, message_id: int, text: str, buttons: Sequence[InlineButton]) -> None:
        """Replace a notice's text and buttons (no buttons removes them); never raises."""
        ...

    async def is_member(self, user_id: int) -> bool:
        """Whether the user is in the staff chat now (creator, administrator or member)."""
        ...


class StaffNotices(Protocol):
    """Posts a staff notice about one partner so staff can act on it (take, solve, reply)."""

    async def post_notice(self, telegram_id: int, text: str, *, actions: bool) -> None:
        """Post `text` about partner `telegram_id`; `actions`: with «Взять»/«Решено» buttons. Never raises."""
        ...


class PdfDownloader(Protocol):
    """Downloads a private Drive file as the bot's service account (gateway.backends.drive.DriveFiles)."""

    async def download(self, file_id: str) -> bytes:
        """The file's content; raises GatewayError."""
        ...


class LiveSink(Protocol):
    """What services call after they write (the hub implements it; None where nobody listens)."""

    def entries_added(self, telegram_id: int, entries: Sequence[ChatEntry]) -> None:
        """New entries were appended to the partner's log."""
        ...

    def status_changed(self, telegram_id: int, status: str) -> None:
        """The partner's appeal has this status now."""
        ...

    def job_changed(self, telegram_id: int, job_id: str, status: str, object_code: str) -> None:
        """One of the partner's analytics requests has this status now."""
        ...
