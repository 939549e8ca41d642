"""The quota limiter never lets more than `limit` calls into any window."""

import itertools

from gateway.ratelimit import QuotaLimiter


class FakeClock:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_no_window_exceeds_limit() -> None:
    """200 acquisitions at 60/min: every 60-second window holds at most 58 (the limit minus the margin)."""
    clock = FakeClock()
    limiter = QuotaLimiter(60, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(200):
        await limiter.acquire()
        stamps.append(clock.now)
    for i, t in enumerate(stamps):
        in_window = [s for s in stamps[i:] if s < t + 60]
        assert len(in_window) <= 58
    assert stamps[60] >= 60.0


async def test_paces_smoothly_after_a_small_burst() -> None:
    """The first `burst` calls go at once; then calls are evenly spaced, never a minute-long stall."""
    clock = FakeClock()
    limiter = QuotaLimiter(60, clock=clock, sleep=clock.sleep, burst=10, margin=2)
    stamps = []
    for _ in range(100):
        await limiter.acquire()
        stamps.append(clock.now)
    assert stamps[9] == 0.0 and stamps[10] > 0.0
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) <= 60 / 48 + 1e-6


async def test_penalize_blocks_until_retry_after() -> None:
    """After a 429 with Retry-After 10 s, the next call waits about 10 s."""
    clock = FakeClock()
    limiter = QuotaLimiter(60, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    limiter.penalize(10)
    waited = await limiter.acquire()
    assert 9.9 <= waited <= 10.1


async def test_wait_ready_waits_for_a_token_without_taking_it() -> None:
    """wait_ready returns when a token is available and leaves it for the next acquire."""
    clock = FakeClock()
    limiter = QuotaLimiter(60, burst=1, margin=0, clock=clock, sleep=clock.sleep)
    await limiter.acquire()  # the bucket is empty now
    await limiter.wait_ready()
    ready_at = clock.now
    assert ready_at > 0
    assert await limiter.acquire() == 0.0 and clock.now == ready_at
