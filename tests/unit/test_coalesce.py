"""Coalescing batches concurrent requests but never serves a request from an earlier call."""

import asyncio

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
