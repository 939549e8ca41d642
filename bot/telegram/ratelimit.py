"""PTB's AIORateLimiter, except that chat actions ("typing…") and message drafts skip its queue.

Chat actions are not messages and are not what Telegram's 30 messages/s limit is about; pacing them made
every reply wait behind the typing indicators of the next wave of turns (bench/chat.py measured ~700 ms
per turn at 50 partners). A chat action Telegram refuses is simply not shown: the handler ignores errors.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram._utils.types import JSONDict
from telegram.ext import AIORateLimiter

# Drafts too: a draft queued behind replies would show stale text late; they are paced per chat by
# bot/telegram/drafts.py instead (one every DRAFT_INTERVAL at most).
UNPACED_ENDPOINTS = frozenset({"sendChatAction", "sendMessageDraft"})


class RepliesFirstRateLimiter(AIORateLimiter):
    """Paces every Bot API call under Telegram's limits, except chat actions and drafts."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | JSONDict | list[JSONDict]:
        """Send chat actions and drafts at once; everything else through the rate limiter."""
        if endpoint in UNPACED_ENDPOINTS:
            return await callback(*args, **kwargs)
        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
