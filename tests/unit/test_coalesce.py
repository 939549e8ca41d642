"""Coalescing batches concurrent requests but never serves a request from an earlier call."""

import asyncio
import contextvars

from gateway.coalesce import Batcher


async def test_concurrent_items_share_one_flush() -> None:
    """Fifty concurrent submits are flushed together, each getting its own result."""
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | BaseException]:
        calls.append(items)
        return [i * 10 for i in items]

    b: Batcher[int, int] = Batcher(flush, window=0.01)
    results = await asyncio.gather(*(b.submit(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]
    assert len(calls) == 1


async def test_item_arriving_during_flight_waits_for_next_call() -> None:
    """A request made while a call is in flight is answered by a later call, not the stale one."""
    version = 0
    started = asyncio.Event()
    release = asyncio.Event()

    async def flush(items: list[str]) -> list[int | BaseException]:
        nonlocal version
        version += 1
        seen = version
        started.set()
        await release.wait()
        return [seen for _ in items]

    b: Batcher[str, int] = Batcher(flush, window=0)
    first = asyncio.create_task(b.submit("a"))
    await started.wait()
    second = asyncio.create_task(b.submit("b"))
    await asyncio.sleep(0.01)
    release.set()
    assert await first == 1
    assert await second == 2


async def test_per_item_errors_and_batch_errors_reach_callers() -> None:
    """A per-item error reaches only its caller; a failed call reaches every caller of the batch."""

    async def flush(items: list[int]) -> list[int | BaseException]:
        if 99 in items:
            raise RuntimeError("backend down")
        return [ValueError("odd") if i % 2 else i for i in items]

    b: Batcher[int, int] = Batcher(flush, window=0.01)
    res = await asyncio.gather(b.submit(2), b.submit(3), return_exceptions=True)
    assert res[0] == 2 and isinstance(res[1], ValueError)
    res = await asyncio.gather(b.submit(4), b.submit(99), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in res)


async def test_items_arriving_while_the_gate_is_closed_join_the_same_flush() -> None:
    """While the gate (the quota) holds a batch back, later items ride in that batch instead of the next one."""
    calls: list[list[int]] = []
    gate_open = asyncio.Event()

    async def flush(items: list[int]) -> list[int | BaseException]:
        calls.append(items)
        return items

    b: Batcher[int, int] = Batcher(flush, window=0, gate=gate_open.wait)
    first = asyncio.create_task(b.submit(1))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(b.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0.01)
    gate_open.set()
    assert await asyncio.gather(first, *later) == [1, 2, 3]
    assert calls == [[1, 2, 3]]


async def test_a_patient_item_rides_along_with_the_next_urgent_one() -> None:
    """A background item waits (up to its patience) for an urgent one and goes out in the same call."""
    flushes: list[list[str]] = []

    async def flush(items: list[str]) -> list[str]:
        flushes.append(items)
        return [i.upper() for i in items]

    b: Batcher[str, str] = Batcher(flush, window=0.001)
    poll = asyncio.create_task(b.submit("poll", patience=5.0))
    await asyncio.sleep(0.05)
    assert flushes == [] and not poll.done()  # no call of its own yet
    assert await b.submit("turn") == "TURN"
    assert await poll == "POLL"
    assert flushes == [["poll", "turn"]]


async def test_a_patient_item_alone_goes_out_once_its_patience_runs_out() -> None:
    """With no urgent item coming, a background item is still served, after its patience."""
    flushes: list[list[str]] = []

    async def flush(items: list[str]) -> list[str]:
        flushes.append(items)
        return items

    b: Batcher[str, str] = Batcher(flush, window=0.001)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await b.submit("poll", patience=0.1) == "poll"
    assert loop.time() - started >= 0.1 and flushes == [["poll"]]


async def test_the_runner_does_not_inherit_the_first_callers_context() -> None:
    """The flush runs in a context of its own: a variable set by the caller that started it is not seen there
    (so one background caller cannot make every later call look like background work)."""
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    seen: list[str] = []

    async def flush(items: list[str]) -> list[str]:
        seen.append(marker.get())
        return items

    b: Batcher[str, str] = Batcher(flush, window=0.001)
    marker.set("background")
    await b.submit("x")
    assert seen == ["unset"]
