"""The quota limiter never lets more than `limit` calls into any window."""

from gateway.ratelimit import SlidingWindowLimiter


class FakeClock:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_no_window_exceeds_limit() -> None:
    """200 acquisitions at 60/min: every 60-second window holds at most 60 of them."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(200):
        await limiter.acquire()
        stamps.append(clock.now)
    for i, t in enumerate(stamps):
        in_window = [s for s in stamps[i:] if s < t + 60]
        assert len(in_window) <= 60
    assert stamps[60] >= 60.0  # the 61st call had to wait a full window


async def test_penalize_blocks_until_retry_after() -> None:
    """After a 429 with Retry-After 10 s, the next call waits about 10 s."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    limiter.penalize(10)
    waited = await limiter.acquire()
    assert 9.9 <= waited <= 10.1
