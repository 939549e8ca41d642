"""Breaker, retries and Retry-After around a backend (a small fake of our own SheetsBackend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from gateway import BadRequest, GatewayMetrics, QuotaExceeded, Rows, TransientBackendError
from gateway.resilience import BreakerOpen, ResilientBackend, RetryPolicy


class ScriptedBackend:
    """Raises the scripted errors in order, then answers."""

    name = "scripted"

    def __init__(self, errors: Sequence[Exception] = ()) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def sheet_titles(self) -> list[str]:
        return ["A"]

    async def add_sheet(self, title: str, headers: Sequence[str]) -> None: ...

    async def batch_get(self, ranges: Sequence[str]) -> list[Rows]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return [[["ok"]] for _ in ranges]

    async def batch_update(self, data: Sequence[tuple[str, Rows]]) -> None: ...

    async def append(self, sheet: str, rows: Rows) -> int:
        return 2

    async def format_sheet(
        self, sheet: str, headers: Sequence[str], dropdowns: Mapping[str, Sequence[str]]
    ) -> None: ...


class Sleeps:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, s: float) -> None:
        self.seconds.append(s)


def _wrap(
    inner: ScriptedBackend,
    sleeps: Sleeps,
    *,
    attempts: int = 4,
    fail_max: int = 5,
    reset_timeout: float = 30.0,
) -> ResilientBackend:
    return ResilientBackend(
        inner,
        metrics=GatewayMetrics(),
        retry=RetryPolicy(max_attempts=attempts, max_delay=1000),
        sleep=sleeps,
        breaker_fail_max=fail_max,
        breaker_reset_timeout=reset_timeout,
    )


async def test_retries_transient_errors_then_succeeds() -> None:
    """Two 503s then success: the caller gets the answer after two backoff sleeps."""
    inner, sleeps = ScriptedBackend([TransientBackendError("503"), TransientBackendError("503")]), Sleeps()
    rb = _wrap(inner, sleeps)
    assert await rb.batch_get(["'A'!1:1"]) == [[["ok"]]]
    assert inner.calls == 3 and len(sleeps.seconds) == 2
    assert rb.metrics.retries == 2


async def test_honours_retry_after_on_429() -> None:
    """A 429 with Retry-After 7 waits exactly 7 s before the retry and does not count as a breaker failure."""
    inner, sleeps = ScriptedBackend([QuotaExceeded("429", retry_after=7.0)]), Sleeps()
    rb = _wrap(inner, sleeps)
    await rb.batch_get(["'A'!1:1"])
    assert sleeps.seconds == [7.0]
    assert rb.metrics.quota_errors == 1 and rb.breaker.fail_counter == 0


async def test_bad_request_is_not_retried() -> None:
    """A malformed request fails at once: retrying cannot help."""
    inner, sleeps = ScriptedBackend([BadRequest("nope")]), Sleeps()
    with pytest.raises(BadRequest):
        await _wrap(inner, sleeps).batch_get(["x"])
    assert inner.calls == 1 and sleeps.seconds == []


async def test_breaker_opens_after_consecutive_failures_and_stops_calls() -> None:
    """Five failing calls open the breaker; the next call is refused without reaching the backend."""
    inner, sleeps = ScriptedBackend([TransientBackendError("503")] * 50), Sleeps()
    rb = _wrap(inner, sleeps, attempts=1, fail_max=5, reset_timeout=60)
    for _ in range(5):
        with pytest.raises(TransientBackendError):
            await rb.batch_get(["x"])
    assert rb.breaker_state == "open"
    calls = inner.calls
    with pytest.raises(BreakerOpen):
        await rb.batch_get(["x"])
    assert inner.calls == calls  # refused locally


async def test_open_breaker_is_never_retried() -> None:
    """When the breaker opens mid-retry, retrying stops immediately instead of hammering it."""
    inner, sleeps = ScriptedBackend([TransientBackendError("503")] * 50), Sleeps()
    rb = _wrap(inner, sleeps, attempts=10, fail_max=3, reset_timeout=60)
    with pytest.raises(BreakerOpen):
        await rb.batch_get(["x"])
    assert inner.calls == 3


async def test_breaker_half_opens_after_timeout_and_closes_on_success() -> None:
    """After the reset timeout one trial call goes through; its success closes the breaker."""
    inner, sleeps = ScriptedBackend([TransientBackendError("503")] * 2), Sleeps()
    rb = _wrap(inner, sleeps, attempts=1, fail_max=2, reset_timeout=0.05)
    for _ in range(2):
        with pytest.raises(TransientBackendError):
            await rb.batch_get(["x"])
    assert rb.breaker_state == "open"
    import asyncio

    await asyncio.sleep(0.06)
    assert await rb.batch_get(["x"]) == [[["ok"]]]
    assert rb.breaker_state == "closed"
