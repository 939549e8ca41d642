"""RepliesFirstRateLimiter: chat actions and message drafts never wait behind paced replies."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.telegram.ratelimit import RepliesFirstRateLimiter


async def test_drafts_and_chat_actions_skip_the_queue_of_replies() -> None:
    """With the limiter saturated by replies, a draft and a typing action go out at once; a reply waits."""
    limiter = RepliesFirstRateLimiter(overall_max_rate=1, overall_time_period=5, max_retries=0)
    await limiter.initialize()
    sent: list[tuple[str, float]] = []
    started = time.monotonic()

    async def call(endpoint: str) -> bool:
        async def callback(*args: Any, **kwargs: Any) -> bool:
            sent.append((endpoint, time.monotonic() - started))
            return True

        return bool(await limiter.process_request(callback, (), {}, endpoint, {"chat_id": 7}, None))

    await call("sendMessage")  # takes the only slot of the period
    waiting = asyncio.create_task(call("sendMessage"))
    await asyncio.sleep(0.05)
    await call("sendMessageDraft")
    await call("sendChatAction")
    assert [e for e, _ in sent] == ["sendMessage", "sendMessageDraft", "sendChatAction"]
    assert all(at < 0.5 for _, at in sent)
    assert not waiting.done()  # the second reply is still paced
    waiting.cancel()
    await limiter.shutdown()
