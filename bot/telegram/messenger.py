"""The Messenger port over python-telegram-bot's Bot: plain text, split at Telegram's limits.

Texts are always sent without a parse mode (explicit `parse_mode=None`, overriding any application
Defaults), so a model's `_`, `*` or `[` can never fail with "can't parse entities". Flood control (429
RetryAfter) is handled by the AIORateLimiter the composition root gives the application; a 429 it passes on
arrives as DeliveryError.retry_after, so a broadcaster can pause every sender.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from datetime import timedelta

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bot.services.message_parts import MAX_CAPTION_LENGTH, split_message
from bot.services.ports import DeliveryError, InlineButton

log = logging.getLogger(__name__)


def _markup(
    buttons: Sequence[str] | Sequence[InlineButton] | None,
) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    if not buttons:
        return None
    if all(isinstance(b, InlineButton) for b in buttons):
        rows = [
            [InlineKeyboardButton(b.text, callback_data=b.callback_data, url=b.url)]
            for b in buttons
            if isinstance(b, InlineButton)
        ]
        return InlineKeyboardMarkup(rows)
    return ReplyKeyboardMarkup([[KeyboardButton(str(b))] for b in buttons], resize_keyboard=True)


def _delivery_error(exc: TelegramError) -> DeliveryError:
    permanent = isinstance(exc, Forbidden | BadRequest | ChatMigrated | InvalidToken)
    retry_after = _retry_seconds(exc) if isinstance(exc, RetryAfter) else None
    return DeliveryError(f"{type(exc).__name__}: {exc.message}", permanent=permanent, retry_after=retry_after)


def _retry_seconds(exc: RetryAfter) -> float:
    # PTB 22 returns an int (with a deprecation warning) or a timedelta, depending on PTB_TIMEDELTA.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramMessenger:
    """Messenger over a PTB Bot."""

    def __init__(self, bot: Bot, staff_chat_id: int | None = None) -> None:
        self._bot = bot
        self._staff_chat_id = staff_chat_id

    async def send_text(
        self, chat_id: int, text: str, *, buttons: Sequence[str] | Sequence[InlineButton] | None = None
    ) -> None:
        """Send `text` as plain text, split if needed; buttons go under the last piece."""
        pieces = split_message(text)
        markup = _markup(buttons)
        for i, piece in enumerate(pieces):
            try:
                await self._bot.send_message(
                    chat_id, piece, parse_mode=None, reply_markup=markup if i == len(pieces) - 1 else None
                )
            except TelegramError as exc:
                raise _delivery_error(exc) from exc

    async def send_document(self, chat_id: int, data: bytes, filename: str, caption: str) -> None:
        """Send a file; a caption longer than Telegram allows follows as a separate message."""
        head = split_message(caption, MAX_CAPTION_LENGTH)
        first = head[0] if head else None
        try:
            await self._bot.send_document(
                chat_id, document=InputFile(data, filename=filename), caption=first, parse_mode=None
            )
        except TelegramError as exc:
            raise _delivery_error(exc) from exc
        rest = caption.strip()[len(first or "") :].strip()
        if rest:
            await self.send_text(chat_id, rest)

    async def send_photo(self, chat_id: int, photo_url: str, caption: str) -> None:
        """Send a picture by URL (Telegram fetches it); a caption longer than Telegram allows follows as text."""
        head = split_message(caption, MAX_CAPTION_LENGTH)
        first = head[0] if head else None
        try:
            await self._bot.send_photo(chat_id, photo=photo_url, caption=first, parse_mode=None)
        except TelegramError as exc:
            raise _delivery_error(exc) from exc
        rest = caption.strip()[len(first or "") :].strip()
        if rest:
            await self.send_text(chat_id, rest)

    async def notify_staff(self, text: str) -> None:
        """Post to STAFF_CHAT_ID; logs instead when none is configured or the post fails."""
        if self._staff_chat_id is None:
            log.info("staff notification (no STAFF_CHAT_ID): %s", text.replace("\n", " | ")[:500])
            return
        try:
            await self.send_text(self._staff_chat_id, text)
        except DeliveryError as exc:
            log.error("staff notification failed (%s): %s", exc, text.replace("\n", " | ")[:500])
