"""The StaffChat port over python-telegram-bot's Bot: notices with inline buttons in STAFF_CHAT_ID, membership."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import Bot, ChatMember, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters
from telegram.error import TelegramError

from bot.services.message_parts import MAX_MESSAGE_LENGTH, split_message
from bot.services.ports import InlineButton

log = logging.getLogger(__name__)

#: Who counts as staff: the chat's creator, its administrators and its members (not left, kicked, restricted).
STAFF_STATUSES = frozenset({ChatMember.OWNER, ChatMember.ADMINISTRATOR, ChatMember.MEMBER})


def _keyboard(buttons: Sequence[InlineButton]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.text, callback_data=b.callback_data) for b in buttons]])


class TelegramStaffChat:
    """StaffChat over a PTB Bot and one chat id (plain text, never a parse mode)."""

    def __init__(self, bot: Bot, chat_id: int) -> None:
        self._bot = bot
        self.chat_id = chat_id

    async def post(self, text: str, buttons: Sequence[InlineButton], *, reply_to: int | None = None) -> list[int]:
        """Post `text` (split if long; buttons under the last piece); the ids of the messages posted."""
        pieces = split_message(text)
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            try:
                message = await self._bot.send_message(
                    self.chat_id,
                    piece,
                    parse_mode=None,
                    reply_markup=_keyboard(buttons) if last else None,
                    reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True)
                    if reply_to is not None and i == 0
                    else None,
                )
            except TelegramError as exc:
                log.error("staff chat post failed (%s): %s", exc, piece.replace("\n", " | ")[:300])
                break
            ids.append(message.message_id)
        return ids

    async def edit(self, message_id: int, text: str, buttons: Sequence[InlineButton]) -> None:
        """Replace a notice's text and buttons; a failure (e.g. the notice was deleted) is only logged."""
        pieces = split_message(text, MAX_MESSAGE_LENGTH)
        try:
            await self._bot.edit_message_text(
                pieces[-1] if len(pieces) > 1 else text,
                chat_id=self.chat_id,
                message_id=message_id,
                parse_mode=None,
                reply_markup=_keyboard(buttons),
            )
        except TelegramError as exc:
            log.warning("staff notice %s not edited: %s", message_id, exc)

    async def is_member(self, user_id: int) -> bool:
        """getChatMember: creator, administrator or member."""
        member = await self._bot.get_chat_member(self.chat_id, user_id)
        return member.status in STAFF_STATUSES
