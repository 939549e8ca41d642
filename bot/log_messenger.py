"""A Messenger for running without Telegram (`marketingbot local` with no bot token).

Partners then use the Mini App, whose history shows operator replies from the sheet; what would have
gone to Telegram is logged instead, so nothing fails and nothing is silently dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.services.ports import InlineButton

log = logging.getLogger("marketingbot.no-telegram")


class LogMessenger:
    """Logs every message instead of sending it."""

    async def send_text(
        self, chat_id: int, text: str, *, buttons: Sequence[str] | Sequence[InlineButton] | None = None
    ) -> None:
        """Log a message to a partner."""
        log.info("(no Telegram bot) to %s: %s", chat_id, text[:500])

    async def send_document(self, chat_id: int, data: bytes, filename: str, caption: str) -> None:
        """Log a document to a partner."""
        log.info("(no Telegram bot) document %s (%d bytes) to %s", filename, len(data), chat_id)

    async def notify_staff(self, text: str) -> None:
        """Log a staff notification."""
        log.warning("(no Telegram bot) staff notice: %s", text[:500])

    async def send_photo(self, chat_id: int, photo_url: str, caption: str) -> None:
        """Log a picture message to a partner."""
        log.info("(no Telegram bot) photo %s to %s: %s", photo_url, chat_id, caption[:500])
