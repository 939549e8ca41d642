"""Streaming an answer into a private chat while the model writes it: Telegram message drafts.

`sendMessageDraft` (Bot API 9.3+, PTB 22.8's `Bot.send_message_draft`) shows a partial message that the
client animates as it grows; it is an ephemeral preview, so the finished answer is still sent with
`sendMessage`. Drafts go out at most every `interval` seconds per chat and only when the text grew. An answer
longer than one message is cut where `split_message` cuts it: each finished part is sent as a message at once
and the next part is drafted under a new draft id.

Where Telegram refuses drafts (a Bot API server without the method → 404 or 400 "method is not available", or
a chat/client that cannot show them → another 400) the refusal is remembered (for the whole bot, or for that
chat), so later turns go straight to the typing indicator and one message instead of failing a draft call
every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from telegram import Bot
from telegram.error import BadRequest, InvalidToken, TelegramError

from bot.services.message_parts import split_message

log = logging.getLogger(__name__)

DRAFT_INTERVAL = 0.5  # seconds between two drafts to one chat: smooth to read, far inside Telegram's limits


class DraftSupport:
    """Where drafts work: remembers refusals for the whole bot (method unknown) or per chat."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._bot_refused = not enabled
        self._refused_chats: set[int] = set()

    def switch_off(self) -> None:
        """No drafts anywhere from now on (answers are sent whole)."""
        self._bot_refused = True

    def allowed(self, chat_id: int) -> bool:
        """Whether a draft may be tried in `chat_id`."""
        return not self._bot_refused and chat_id not in self._refused_chats

    def refused(self, chat_id: int, exc: TelegramError) -> None:
        """Telegram refused a draft: remember it so it is not retried on every turn."""
        # 404, or a 400 about the method itself ("method is not available"): this Bot API server has no
        # drafts at all; any other 400 is about this chat or its client.
        if isinstance(exc, InvalidToken) or "method" in exc.message.lower():
            self._bot_refused = True
            log.warning("Telegram has no sendMessageDraft (%s); answers are sent whole from now on", exc.message)
        else:
            self._refused_chats.add(chat_id)
            log.info("drafts refused in chat %s (%s); answers there are sent whole", chat_id, exc.message)


class DraftStreamer:
    """Shows one answer as drafts in one private chat while it is written; `feed` never blocks the model."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        support: DraftSupport,
        send_part: Callable[[str], Awaitable[None]],
        *,
        interval: float = DRAFT_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._support = support
        self._send_part = send_part
        self._interval = interval
        self._monotonic = monotonic
        self._text = ""
        self._changed = asyncio.Event()
        self._closed = False
        self._off = False  # drafting stopped for this answer (refused, flood control, a failed part)
        self._task: asyncio.Task[None] | None = None
        self._draft_id = _new_draft_id()
        self._drafted = ""  # the text of the last draft shown
        self.parts_sent: list[str] = []  # finished parts already sent as messages
        self.drafts = 0  # drafts shown, for metrics and tests

    def feed(self, delta: str) -> None:
        """The next piece of the answer (a DeltaSink)."""
        if self._closed or self._off:
            return
        self._text += delta
        self._changed.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"drafts:{self._chat_id}")

    async def finish(self) -> list[str]:
        """Stop drafting (waiting for a draft in flight, so none lands after the final message); returns the
        parts already sent as messages."""
        self._closed = True
        self._changed.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        return list(self.parts_sent)

    def cancel(self) -> None:
        """Stop drafting at once, without waiting (the turn itself was cancelled)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        last = -self._interval
        while not self._closed and not self._off:
            await self._changed.wait()
            self._changed.clear()
            if self._closed:
                return
            wait = last + self._interval - self._monotonic()
            if wait > 0:
                # Pace the chat; a finish() during the wait ends the loop at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_closed(), wait)
                if self._closed:
                    return
            await self._show(split_message(self._text))
            last = self._monotonic()

    async def _wait_closed(self) -> None:
        while not self._closed:
            self._changed.clear()
            await self._changed.wait()

    async def _show(self, pieces: list[str]) -> None:
        # Every piece but the last is finished (the text has run past it): it becomes a message now.
        while len(pieces) - 1 > len(self.parts_sent):
            part = pieces[len(self.parts_sent)]
            try:
                await self._send_part(part)
            except Exception as exc:  # the final send will try again with everything not yet sent
                log.warning("part of a streamed answer to %s not sent: %s", self._chat_id, exc)
                self._off = True
                return
            self.parts_sent.append(part)
            self._draft_id = _new_draft_id()
            self._drafted = ""
        current = pieces[-1] if pieces else ""
        if not current or current == self._drafted or self._closed:
            return
        try:
            await self._bot.send_message_draft(self._chat_id, self._draft_id, current, parse_mode=None)
        except (BadRequest, InvalidToken) as exc:
            self._support.refused(self._chat_id, exc)
            self._off = True
            return
        except TelegramError as exc:  # flood control, a network error, a blocked bot: no more drafts this time
            log.info("draft to %s failed (%s); the answer comes whole", self._chat_id, exc)
            self._off = True
            return
        self._drafted = current
        self.drafts += 1


def _new_draft_id() -> int:
    # Non-zero, as the Bot API requires; random so a restarted process never animates an old draft.
    return secrets.randbelow(2**31 - 1) + 1
