"""Per-partner request rate limit and batched staff notices: one partner cannot spend the shared Sheets write
quota (or flood the staff chat) for everybody.

`PartnerRateLimiter` is a token bucket per Telegram ID, shared by the Telegram chat and the Mini App's API: a
partner may send `burst` requests at once and `per_minute` on average. A refused request is not processed at all
(nothing is read or written), and the partner is told to send it again after `retry_after` seconds.

`StaffNoticeBatcher` posts at most one notice per partner per `interval` seconds; what arrives in between is
gathered and posted together when the interval is over (and on shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DEFAULT_PER_MINUTE = 20
DEFAULT_BURST = 5
DEFAULT_NOTICE_INTERVAL = 60.0
MAX_NOTICE_CHARS = 3500  # under Telegram's 4,096 with room for the header
MAX_ITEM_CHARS = 800
_PRUNE_AT = 10_000


def rate_limited_text(retry_after: float) -> str:
    """What a partner reads when a request is refused by the rate limit."""
    seconds = max(1, math.ceil(retry_after))
    return (
        "Вы отправляете сообщения слишком часто. Это сообщение не сохранено и не передано ассистенту — "
        f"пожалуйста, отправьте его ещё раз через {seconds} с."
    )


@dataclass
class _Bucket:
    tokens: float
    updated: float


class PartnerRateLimiter:
    """A token bucket per partner; `per_minute` 0 switches the limit off. The clock is injectable for tests."""

    def __init__(
        self,
        per_minute: int = DEFAULT_PER_MINUTE,
        burst: int = DEFAULT_BURST,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute < 0 or burst < 1:
            raise ValueError("per_minute must be >= 0 and burst >= 1")
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._monotonic = monotonic
        self._buckets: dict[int, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        """Whether any request can be refused."""
        return self._rate > 0

    def acquire(self, telegram_id: int) -> float | None:
        """Take one request from the partner's budget: None when allowed, else seconds until one is available."""
        if not self.enabled:
            return None
        now = self._monotonic()
        bucket = self._buckets.get(telegram_id)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            bucket = self._buckets[telegram_id] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate

    def _prune(self, now: float) -> None:
        # Partners whose bucket has refilled completely are indistinguishable from new ones: forget them.
        full_after = self._burst / self._rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]


@dataclass
class _Pending:
    header: str
    texts: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class StaffNoticeBatcher:
    """At most one staff notice per key per `interval` seconds; messages in between are posted together.

    `interval` 0 posts every message at once. `send(key, text)` must not raise (AppealsService passes its own notifier,
    which logs delivery failures)."""

    def __init__(
        self,
        send: Callable[[int, str], Awaitable[None]],
        interval: float = DEFAULT_NOTICE_INTERVAL,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._interval = interval
        self._monotonic = monotonic
        self._last_sent: dict[int, float] = {}
        self._pending: dict[int, _Pending] = {}
        self._closed = False

    async def add(self, key: int, header: str, text: str) -> None:
        """Post `header` + `text` now if this key had no notice within the interval, else gather it."""
        now = self._monotonic()
        last = self._last_sent.get(key)
        pending = self._pending.get(key)
        # After close (shutdown) nothing is gathered: a late message is posted at once rather than lost.
        if self._closed or (pending is None and (last is None or now - last >= self._interval)):
            self._last_sent[key] = now
            await self._send(key, render_notice(header, [text]))
            return
        if pending is None:
            pending = self._pending[key] = _Pending(header)
        pending.header = header
        pending.texts.append(text)
        if pending.task is None:
            delay = max(0.0, (last or now) + self._interval - now)
            pending.task = asyncio.create_task(self._flush_later(key, delay), name=f"staff-notice-{key}")

    async def _flush_later(self, key: int, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._flush(key)

    async def _flush(self, key: int) -> None:
        pending = self._pending.pop(key, None)
        if pending is None or not pending.texts:
            return
        self._last_sent[key] = self._monotonic()
        await self._send(key, render_notice(pending.header, pending.texts))

    async def aclose(self) -> None:
        """Post everything still gathered (on shutdown), without waiting for the intervals."""
        self._closed = True
        for key, pending in list(self._pending.items()):
            if pending.task is not None and pending.task is not asyncio.current_task():
                pending.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending.task
            await self._flush(key)


def render_notice(header: str, texts: list[str]) -> str:
    """One staff-chat message: the header, then the messages (numbered when several), cut to fit Telegram."""
    if len(texts) == 1:
        body = _cut(texts[0], MAX_NOTICE_CHARS)
        return f"{header}\n\n{body}"
    lines: list[str] = []
    used = 0
    for i, text in enumerate(texts, 1):
        item = f"{i}) {_cut(text, MAX_ITEM_CHARS)}"
        if used + len(item) > MAX_NOTICE_CHARS:
            lines.append(f"…и ещё {len(texts) - i + 1} — полностью в листе «Обращения».")
            break
        lines.append(item)
        used += len(item) + 1
    return f"{header} (сообщений: {len(texts)})\n\n" + "\n".join(lines)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
