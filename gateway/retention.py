"""Bounded growth: moving finished rows to an archive sheet, and pruning the state store.

A move is: one read of the whole source sheet, one append of the chosen rows to the archive sheet, one
deleteDimension batch for them, and one read of the key column to verify. It runs under the writer's
apply lock, so no batch of ours sits between its verify-read and its write while rows shift. Staff may
still sort the sheet between our read and the delete (Sheets has no conditional delete): the verify read
finds any row deleted that was not archived and appends it back from the snapshot, so nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway import a1
from gateway.gateway import AsyncSheetsGateway
from gateway.records import HeaderMap, Record, normalize_key
from gateway.schemas import SheetSchema, normalize_header

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MoveResult:
    """What one move did."""

    moved: int = 0
    restored: int = 0  # rows deleted by mistake (staff sorted meanwhile) and appended back
    skipped: str = ""  # why nothing was done ('' when it ran)


async def move_rows(
    gw: AsyncSheetsGateway,
    source: SheetSchema,
    target: SheetSchema,
    select: Callable[[Record], bool],
    *,
    hold_if: Callable[[Record], bool] = lambda _: False,
) -> MoveResult:
    """Move the data rows of `source` that `select` picks to the end of `target` (created when missing).

    Nothing moves while the outbox holds writes (they address rows by key, but would land in the middle of
    a move) or while any row matches `hold_if` (e.g. a row a worker is processing by its row number).
    """
    if gw.outbox_depth:
        return MoveResult(skipped="outbox not empty")
    key = source.key
    if key is None:
        raise ValueError(f"{source.title} has no key column to verify a move by")
    async with gw.writer.apply_lock:
        (rows,) = await gw.read_ranges([a1.sheet_range(source.title)])
        if not rows:
            return MoveResult(skipped="no header")
        hm = HeaderMap.from_row(source.title, rows[0])
        records = [(i + 2, hm.record(i + 2, cells, source.headers), cells) for i, cells in enumerate(rows[1:])]
        if any(hold_if(rec) for _, rec, _ in records):
            return MoveResult(skipped="a row is being processed")
        chosen = [(n, rec, cells) for n, rec, cells in records if any(cells) and select(rec)]
        if not chosen:
            return MoveResult()
        titles = {normalize_header(t) for t in await gw.backend.sheet_titles()}
        if normalize_header(target.title) not in titles:
            await gw.backend.add_sheet(target.title, list(rows[0]))
        # The archive gets the source's own columns in the source's order, so no cell is dropped.
        await gw.backend.append(target.title, [_trim(list(cells)) for _, _, cells in chosen])
        await gw.backend.delete_rows(source.title, [n for n, _, _ in chosen])
        gw.locator.hints.forget_sheet(source.title)
        moved_keys = {normalize_key(rec[key]) for _, rec, _ in chosen}
        col = hm.col(key)
        (after,) = await gw.read_ranges([a1.column_range(source.title, col)])
        present = {normalize_key(r[0]) for r in after[1:] if r}
        lost = [
            cells
            for _, rec, cells in records
            if any(cells) and normalize_key(rec[key]) not in moved_keys and normalize_key(rec[key]) not in present
        ]
        if lost:
            log.warning("%d rows of %s moved while archiving; appended back", len(lost), source.title)
            await gw.backend.append(source.title, [_trim(list(c)) for c in lost])
        log.info("moved %d rows from %s to %s", len(chosen), source.title, target.title)
        return MoveResult(moved=len(chosen), restored=len(lost))


async def prune_state(gw: AsyncSheetsGateway, *, ledger_days: float, counter_days: int, today: str) -> tuple[int, int]:
    """Forget ledger entries and finished deliveries untouched for `ledger_days`, and per-day counters older
    than `counter_days` days before `today` (ISO date). Returns (ledger + delivery rows, counter rows) deleted."""
    cutoff = time.time() - ledger_days * 86400
    ledgers = await gw.state.ledger_prune(cutoff) + await gw.state.delivery_prune(cutoff)
    counters = await gw.state.counter_prune(_days_before(today, counter_days))
    return ledgers, counters


def _days_before(today: str, days: int) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(today) - timedelta(days=days)).isoformat()


def _trim(cells: list[str]) -> list[str]:
    while cells and cells[-1] == "":
        cells.pop()
    return cells
