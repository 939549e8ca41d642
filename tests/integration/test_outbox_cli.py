"""`marketingbot outbox list|retry ID|drop ID`, run as a real subprocess against the state file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from gateway.ops import append_text, upsert
from gateway.state import OutboxEntry, StateStore

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "GEMINI_", "SHEETS_", "GOOGLE_"))}
    env.update(LOCAL_DB_PATH=str(tmp / "data" / "sheets.db"), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "bot", "outbox", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=60
    )


async def _journal(path: Path) -> tuple[int, int]:
    """One waiting turn and one dead letter; returns their ids."""
    state = StateStore(path)
    await state.open()
    try:
        turn = append_text(
            "Обращения", "Telegram ID", "100001", "текст_обращений", "[2026-11-23 14:05] Пользователь: привет"
        )
        gone = upsert("Акции", "id", "p-gone", {"Статус": "SENT"}, create=False)
        await state.outbox_put([turn, gone], maybe_applied=False)
        pending, dead = await state.outbox_peek(10)
        await state.outbox_note_error(pending.seq, "SheetMissing: the spreadsheet has no sheet 'Обращения'")
        await state.outbox_kill(OutboxEntry(dead.seq, dead.op, False), "RowNotFound: Акции: no row with id = p-gone")
        return pending.seq, dead.seq
    finally:
        await state.close()


async def _ids(path: Path) -> list[tuple[int, bool]]:
    state = StateStore(path)
    await state.open()
    try:
        return [(w.seq, w.dead) for w in await state.outbox_list()]
    finally:
        await state.close()


def test_list_retry_and_drop(tmp_path: Path) -> None:
    """list shows each entry's id, state, age, sheet, op and last error; retry puts a dead letter back in the
    outbox; drop deletes one; an unknown id exits 1."""
    state = tmp_path / "data" / "chat_memory.db"
    pending, dead = asyncio.run(_journal(state))
    listed = _run(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split("\t") == ["id", "state", "age", "sheet", "op", "last error"]
    first, second = (line.split("\t") for line in lines[1:3])
    assert first[:2] == [str(pending), "pending"] and first[3] == "Обращения" and "привет" in first[4]
    assert first[5].startswith("SheetMissing")
    assert second[:2] == [str(dead), "dead"] and second[3] == "Акции" and second[5].startswith("RowNotFound")
    retried = _run(tmp_path, "retry", str(dead))
    assert retried.returncode == 0, retried.stderr
    ids = asyncio.run(_ids(state))
    assert [d for _, d in ids] == [False, False] and ids[0][0] == pending  # back at the end of the outbox
    assert _run(tmp_path, "retry", str(pending)).returncode == 1  # not a dead letter
    assert _run(tmp_path, "drop", str(pending)).returncode == 0
    assert [s for s, _ in asyncio.run(_ids(state))] == [ids[1][0]]
    missing = _run(tmp_path, "drop", "999")
    assert missing.returncode == 1 and "999" in missing.stderr


def test_an_empty_outbox_says_so(tmp_path: Path) -> None:
    """list on a fresh state file says there is nothing waiting and no dead letter."""
    res = _run(tmp_path, "list")
    assert res.returncode == 0 and "outbox empty" in res.stdout


async def test_dead_letters_of_an_older_version_are_adopted(tmp_path: Path) -> None:
    """Dead letters an earlier version kept as 'outbox-dead' ledger rows show up as dead letters with ids after
    every outbox id, and the next journaled write gets a fresh id."""
    path = tmp_path / "chat_memory.db"
    state = StateStore(path)
    await state.open()
    await state.outbox_put([upsert("Auth", "Код партнера", "P-1", {"ФИО": "x"})], maybe_applied=False)
    old = upsert("Акции", "id", "p-9", {"Статус": "SENT"}, create=False)
    await state.ledger_set("outbox-dead", old.op_id, "RowNotFound", old.to_json())
    await state.close()
    state = StateStore(path)
    await state.open()
    try:
        listed = await state.outbox_list()
        assert [(w.seq, w.dead, w.op.key) for w in listed] == [(1, False, ("P-1",)), (2, True, ("p-9",))]
        assert listed[1].error == "RowNotFound"
        assert await state.ledger_list("outbox-dead") == []
        await state.outbox_put([upsert("Auth", "Код партнера", "P-2", {})], maybe_applied=False)
        assert [e.seq for e in await state.outbox_peek(10)] == [1, 3]
    finally:
        await state.close()
