"""Live Mini App: what the shared watcher costs, and how fast staff edits reach an open Mini App.

1. Sheet reads per watcher poll with 0, 1, 50 and 500 connected partners (target: 0 with nobody connected,
   1 batched read otherwise, whatever the number), on the local store and on the google backend against
   the fake Sheets v4 server.
2. Against a real `marketingbot local`: the time from an operator reply saved in the staff console to the
   `chat` event on an open /api/events stream (target: under 5 s), and from a status written by another
   process (`marketingbot sheets set`) to the `status` event (the watcher's path).

Run: `.venv/bin/python -m bench.live [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bot.services.live import EventHub, LiveWatcher
from bot.web.initdata import sign_init_data
from gateway import GatewayConfig, build_gateway
from gateway.schemas import APPEALS, QUEUE, AppealCol, QueueCol
from tests.fakes.sheets_server import FakeSheetsServer
from tests.local_stack import running_local_stack, stack_env

ROOT = Path(__file__).resolve().parents[1]
POLLS = 5
DEMO_ID = 100001


async def watcher_reads(backend: str, partners: int, tmp: Path) -> str:
    """Reads per poll of the shared watcher with `partners` connected."""
    server: FakeSheetsServer | None = None
    if backend == "google":
        server = FakeSheetsServer()
        server.__enter__()
        cfg = GatewayConfig(
            backend="google",
            local_db_path=tmp / f"state-{partners}" / "x.db",
            spreadsheet_id=server.spreadsheet_id,
            sheets_api_base_url=server.url,
            reads_per_minute=None,
            writes_per_minute=None,
        )
    else:
        cfg = GatewayConfig(backend="local", local_db_path=tmp / f"sheets-{partners}.db")
    gw = build_gateway(cfg)
    await gw.start()
    try:
        await gw.ensure_sheets([APPEALS, QUEUE])
        appeals, queue = gw.table(APPEALS), gw.table(QUEUE)
        ids = [10_000 + i for i in range(max(partners, 1))]
        await gw.write(
            [appeals.op_upsert(str(i), {AppealCol.STATUS: "Ответ ИИ", AppealCol.UPDATED: "t"}) for i in ids]
            + [
                queue.op_insert({QueueCol.ID: f"j{i}", QueueCol.TELEGRAM_ID: str(i), QueueCol.STATUS: "DONE"})
                for i in ids
            ]
        )
        hub = EventHub(max_total=partners + 1)
        watcher = LiveWatcher(gw, hub)
        for i in ids[:partners]:
            hub.subscribe(i)
            await watcher.take_baseline(i)
        await watcher.poll_once()
        reads: list[int] = []
        took: list[float] = []
        for _ in range(POLLS):
            before = gw.metrics.calls["batch_get"]
            t0 = time.perf_counter()
            await watcher.poll_once()
            took.append(time.perf_counter() - t0)
            reads.append(gw.metrics.calls["batch_get"] - before)
        return (
            f"{backend:<6} connected={partners:<4} reads/poll={max(reads)} (each of {POLLS}: {reads}) "
            f"median time/poll={statistics.median(took) * 1000:.1f} ms"
        )
    finally:
        await gw.close()
        if server is not None:
            server.__exit__(None, None, None)


async def events(client: httpx.AsyncClient, init_data: str) -> AsyncIterator[dict[str, object]]:
    """Events of one /api/events stream as {"event", "data"}."""
    async with client.stream("GET", "/api/events", headers={"Authorization": f"tma {init_data}"}) as response:
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                yield {"event": kind, "data": json.loads(line[6:])}


async def latency(rounds: int) -> list[str]:
    """Staff edit → event on an open stream, against `marketingbot local`."""
    with tempfile.TemporaryDirectory() as tmp, running_local_stack(Path(tmp)) as stack:
        init_data = sign_init_data("000000:local-dev", {"id": DEMO_ID, "first_name": "Bench"}, datetime.now(UTC))
        async with httpx.AsyncClient(base_url=stack.url, timeout=30.0) as client:
            auth = {"Authorization": f"tma {init_data}"}
            await client.post("/api/chat", json={"text": "Здравствуйте"}, headers=auth)
            rows = (await client.get(f"/staff/api/sheets/{APPEALS.title}")).json()["rows"]
            header = rows[0]
            number = next(n for n, r in enumerate(rows[1:], start=2) if str(DEMO_ID) in r)
            reply_a1 = f"{chr(65 + header.index(AppealCol.OPERATOR_REPLY))}{number}"
            status_a1 = f"{chr(65 + header.index(AppealCol.STATUS))}{number}"
            stream = events(client, init_data)
            assert (await anext(stream))["event"] == "ready"
            replies: list[float] = []
            statuses: list[float] = []
            for i in range(rounds):
                text = f"Ответ оператора номер {i}"
                t0 = time.perf_counter()
                await client.post(f"/staff/api/sheets/{APPEALS.title}/cells", json={"a1": reply_a1, "value": text})
                async for event in stream:
                    data = event["data"]
                    if event["event"] == "chat" and isinstance(data, dict) and data.get("text") == text:
                        break
                replies.append(time.perf_counter() - t0)
                wanted = "Решено" if i % 2 == 0 else "В работе"
                setter = await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "bot", "sheets", "set", APPEALS.title, status_a1, wanted),
                    cwd=stack.workdir,
                    env=stack_env(stack.workdir / "data", stack.port),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                assert await setter.wait() == 0
                t0 = time.perf_counter()
                async for event in stream:
                    data = event["data"]
                    if event["event"] == "status" and isinstance(data, dict) and data.get("status") == wanted:
                        break
                statuses.append(time.perf_counter() - t0)
            await stream.aclose()
    return [
        f"operator reply saved in /staff → chat event: median {statistics.median(replies):.2f} s, "
        f"max {max(replies):.2f} s over {rounds} (target < 5 s)",
        f"status set by another process → status event: median {statistics.median(statuses):.2f} s, "
        f"max {max(statuses):.2f} s over {rounds} (watcher every 1 s in local)",
    ]


async def main(args: argparse.Namespace) -> None:
    """Print every figure."""
    print("Shared watcher: sheet reads per poll")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("local", "google"):
            for partners in (0, 1, 50, 500):
                print("  " + await watcher_reads(backend, partners, Path(tmp)))
    print("Staff edit → open Mini App (marketingbot local)")
    for line in await latency(args.rounds):
        print("  " + line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
