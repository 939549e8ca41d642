"""`marketingbot outbox list|retry ID|drop ID`: the admin's view of writes waiting for the sheet, and dead letters.

It opens only the state store (never a second gateway: its replayer would race the running bot's), so it
works while the bot runs; the bot's replayer notices a retried entry within its replay interval.
"""

from __future__ import annotations

import time

from gateway import OpKind, QueuedWrite, StateStore, WriteOp


async def list_entries(state_path: str) -> list[QueuedWrite]:
    """Waiting entries (oldest first), then dead letters."""
    state = StateStore(state_path)
    await state.open()
    try:
        return await state.outbox_list()
    finally:
        await state.close()


async def retry(state_path: str, entry_id: int) -> bool:
    """Move a dead letter back to the end of the outbox; False when there is none with that id."""
    state = StateStore(state_path)
    await state.open()
    try:
        return await state.dead_retry(entry_id)
    finally:
        await state.close()


async def drop(state_path: str, entry_id: int) -> bool:
    """Delete a waiting entry or a dead letter for good; False when there is none with that id."""
    state = StateStore(state_path)
    await state.open()
    try:
        return await state.outbox_drop(entry_id)
    finally:
        await state.close()


def render(entries: list[QueuedWrite], now: float | None = None) -> list[str]:
    """One line per entry: id, state, age, sheet, what the op does, the last error."""
    now = time.time() if now is None else now
    if not entries:
        return ["outbox empty: no writes waiting, no dead letters"]
    lines = ["id\tstate\tage\tsheet\top\tlast error"]
    for e in entries:
        state = "dead" if e.dead else "pending"
        lines.append(f"{e.seq}\t{state}\t{age(now - e.created)}\t{e.op.sheet}\t{summary(e.op)}\t{e.error or '-'}")
    return lines


def age(seconds: float) -> str:
    """A short age: 45s, 12m05s, 3h07m, 2d04h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def summary(op: WriteOp) -> str:
    """What an op changes, in one line: kind, key, columns set and a preview of appended text."""
    key = ", ".join(f"{c}={k}" for c, k in zip(op.key_columns, op.key, strict=False))
    parts = [f"{op.kind.value} [{key}]"]
    if op.values:
        parts.append("set " + ", ".join(op.values))
    if op.kind is OpKind.APPEND_TEXT and op.text:
        preview = op.text.replace("\n", " ")
        parts.append(f"+{op.text_column}: «{preview[:40]}{'…' if len(preview) > 40 else ''}»")
    return "; ".join(parts)
