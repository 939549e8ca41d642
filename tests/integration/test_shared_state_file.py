"""Two processes on one state file, as the old and the new slot are during a deploy (and the CLI beside the bot).

Each StateStore below has its own SQLite connection, exactly as each process does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.backends.local import LocalSheetsBackend
from gateway.state import StateStore


async def test_one_slots_writes_never_fail_while_its_reads_run_and_the_other_slot_writes(tmp_path: Path) -> None:
    """A write this process runs while one of its own reads is in flight used to fail at once with 'database is
    locked' whenever the other process had written since the read began (no busy wait applies to that case):
    a partner's turn failed mid-deploy. Every write now lands, in order, with no error."""
    path = tmp_path / "chat_memory.db"
    leaving, arriving = StateStore(path), StateStore(path)
    await leaving.open()
    await arriving.open()
    try:
        for i in range(300):
            await leaving.ledger_set("reply", str(i), "sent", "x" * 200)
        stop = asyncio.Event()

        async def arriving_slot() -> int:
            beats = 0
            while not stop.is_set():
                await arriving.meta_set("heartbeat", str(beats))
                beats += 1
                await asyncio.sleep(0)
            return beats

        other = asyncio.create_task(arriving_slot())
        try:
            for turn in range(150):
                # Reads of many rows on either side of a write, all on this process's one connection.
                await asyncio.gather(
                    leaving.ledger_list("reply"), leaving.meta_set(f"turn:{turn:03}", "done"), leaving.outbox_list()
                )
        finally:
            stop.set()
            beats = await other
        assert beats > 0
        assert sorted(await leaving.meta_keys("turn:")) == [f"turn:{t:03}" for t in range(150)]
        assert await arriving.meta_get("heartbeat") == str(beats - 1)
    finally:
        await leaving.close()
        await arriving.close()


async def test_the_embedded_sheets_file_serves_reads_and_appends_from_two_processes(tmp_path: Path) -> None:
    """The bot and the CLI both write the embedded sheets file: appends from each, with reads in flight, all land
    on distinct rows."""
    path = tmp_path / "marketingbot.db"
    bot, cli = LocalSheetsBackend(path), LocalSheetsBackend(path)
    await bot.open()
    await cli.open()
    try:
        await bot.add_sheet("Обращения", ["Код партнера", "Текст"])
        for i in range(200):
            await bot.append("Обращения", [[f"P-{i}", "x" * 200]])

        async def appends(backend: LocalSheetsBackend, who: str) -> None:
            for i in range(60):
                await asyncio.gather(
                    backend.batch_get(["Обращения!A:B"]),
                    backend.append("Обращения", [[f"{who}-{i}", "текст"]]),
                    backend.batch_get(["'Обращения'!A1:B500"]),
                )

        await asyncio.gather(appends(bot, "bot"), appends(cli, "cli"))
        (rows,) = await bot.batch_get(["Обращения!A:A"])
        codes = [r[0] for r in rows[1:]]
        assert len(codes) == len(set(codes)) == 200 + 120
        assert [c for c in codes if c.startswith("bot-")] == [f"bot-{i}" for i in range(60)]
    finally:
        await bot.close()
        await cli.close()
