"""Applying write ops: one verify-read and at most one call per kind for a whole batch of ops.

A batch is applied as: locate every keyed row (one coalesced batchGet, hints verified), apply the
ops in order to in-memory images of those rows, then write only the changed cells (one
values:batchUpdate) and append new rows (one call per sheet; archive rows first, before the cells,
so no text is ever dropped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway import a1
from gateway.backend import SheetsBackend
from gateway.errors import CellTooLarge, GatewayError, RowNotFound, SheetUnavailable, StructureFault
from gateway.locate import Found, RowLocator, Want
from gateway.logentry import entry_stamps, entry_starts
from gateway.ops import OpKind, WriteOp, insert
from gateway.records import HeaderMap, normalize_key
from gateway.resilience import BreakerOpen
from gateway.schemas import ALL_SCHEMAS, Overflow


@dataclass
class _Pending:
    """A row about to be appended."""

    sheet: str
    want: Want | None
    cells: list[str]
    blind: bool = False  # added by a first-try insert, which does not look for an existing row


@dataclass(frozen=True)
class Job:
    """An op and whether it must be applied idempotently (it may already be in the sheet)."""

    op: WriteOp
    idempotent: bool = False


class BatchApplier:
    """Applies a batch of write ops to a backend."""

    def __init__(
        self,
        backend: SheetsBackend,
        locator: RowLocator,
        archive_target: int = a1.MAX_CELL_CHARS // 2,
        overflows: Mapping[str, Overflow] | None = None,
    ) -> None:
        self._backend = backend
        self._locator = locator
        self._archive_target = archive_target
        # sheet → where its log cells overflow to, as its schema names it
        self._overflows = (
            dict(overflows) if overflows is not None else {s.title: s.overflow for s in ALL_SCHEMAS if s.overflow}
        )

    async def apply(self, jobs: Sequence[Job], *, stop_on_fault: bool = False) -> list[GatewayError | None]:
        """Apply jobs in order; returns a per-job error (or None). Backend failures raise for the batch.

        A job refused by the sheet's structure (a missing header) also refuses the later jobs of its
        sheet — of every sheet with `stop_on_fault` (outbox replays) — so nothing overtakes a waiting write.
        """
        try:
            return await self._apply(jobs, stop_on_fault, with_archive=False)
        except _NeedArchive:
            # The overflow sheet is read only when a cell actually overflows: a missing one blocks nothing else.
            return await self._apply(jobs, stop_on_fault, with_archive=True)

    async def _apply(
        self, jobs: Sequence[Job], stop_on_fault: bool, *, with_archive: bool
    ) -> list[GatewayError | None]:
        wants = []
        for job in jobs:
            if job.op.kind is not OpKind.INSERT or job.idempotent:
                wants.append(_want(job.op))
        targets = {
            self._overflows[j.op.sheet].sheet for j in jobs if j.op.archive_overflow and j.op.sheet in self._overflows
        }
        extra = [job.op.sheet for job in jobs] + (sorted(targets) if with_archive else [])
        headers, found = await self._locator.locate(list(dict.fromkeys(wants)), extra_sheets=sorted(set(extra)))
        images: dict[tuple[str, int], list[str]] = {}
        originals: dict[tuple[str, int], list[str]] = {}
        pending: list[_Pending] = []
        archives: list[_Pending] = []  # rows moved out of overflowing cells; appended before anything else
        pending_by_want: dict[Want, _Pending] = {}
        results: list[GatewayError | None] = []
        faults: dict[str, StructureFault] = {}
        for job in jobs:
            op = job.op
            blocked = faults.get(op.sheet) or (next(iter(faults.values())) if stop_on_fault and faults else None)
            if blocked is not None:
                results.append(blocked)
                continue
            hm = headers[op.sheet]
            want = _want(op)
            blind = op.kind is OpKind.INSERT and not job.idempotent
            marks = len(pending), len(archives)
            cells: list[str] | None = None
            before: list[str] | None = None
            try:
                cells = self._target(op, job, want, hm, found, images, originals, pending_by_want)
                if cells is None:
                    new = self._new_row(op, hm)
                    p = _Pending(op.sheet, want if op.key else None, new, blind)
                    pending.append(p)
                    if op.kind is OpKind.APPEND_TEXT:
                        self._set(hm, new, op.text_column or "", "")
                        self._append_text(op, job, hm, new, archives, headers)
                    pending_by_want.setdefault(want, p)
                elif op.kind is not OpKind.INSERT:
                    before = list(cells)
                    for header, value in op.values.items():
                        self._set(hm, cells, header, value)
                    if op.kind is OpKind.APPEND_TEXT:
                        self._append_text(op, job, hm, cells, archives, headers)
                results.append(None)
            except GatewayError as exc:
                # A rejected op leaves no trace: not the cells it set before failing, nor its new or archive rows.
                if cells is not None and before is not None:
                    cells[:] = before
                del pending[marks[0] :], archives[marks[1] :]
                results.append(exc)
                if isinstance(exc, StructureFault):
                    faults[op.sheet] = exc
        try:
            await self._flush(archives, pending, images, originals)
        except BreakerOpen as exc:
            # Refused now, but an earlier call of this flush (or an earlier attempt of this one) may have
            # landed: report it as "maybe applied" so the outbox replays it idempotently.
            raise SheetUnavailable(f"{exc} after the batch had started writing") from exc
        return results

    # -- per-op steps ------------------------------------------------------------------------

    def _target(
        self,
        op: WriteOp,
        job: Job,
        want: Want,
        hm: HeaderMap,
        found: dict[Want, Found | None],
        images: dict[tuple[str, int], list[str]],
        originals: dict[tuple[str, int], list[str]],
        pending_by_want: dict[Want, _Pending],
    ) -> list[str] | None:
        """The row image this op changes, or None when a new row must be created."""
        made = pending_by_want.get(want)
        if made is not None and not made.blind:
            return made.cells
        loc = found.get(want)
        if loc is None:
            if made is not None and not (op.kind is OpKind.INSERT and not job.idempotent):
                return made.cells  # the row a first-try insert of this batch adds
            if op.kind is OpKind.INSERT or op.create:
                return None
            raise RowNotFound(f"{op.sheet}: no row with {'/'.join(op.key_columns)} = {'/'.join(op.key)}")
        slot = (op.sheet, loc.row)
        if slot not in images:
            width = max(hm.width, len(loc.cells))
            images[slot] = list(loc.cells) + [""] * (width - len(loc.cells))
            originals[slot] = list(images[slot])
        return images[slot]

    def _new_row(self, op: WriteOp, hm: HeaderMap) -> list[str]:
        cells = [""] * hm.width
        values = {**op.insert_defaults, **op.values}
        for column, key in zip(op.key_columns, op.key, strict=True):
            values.setdefault(column, key)
        for header, value in values.items():
            self._set(hm, cells, header, value)
        return cells

    @staticmethod
    def _set(hm: HeaderMap, cells: list[str], header: str, value: str) -> None:
        col = hm.col(header)
        if len(value) > a1.MAX_CELL_CHARS:
            raise CellTooLarge(f"{hm.sheet}.{header}: {len(value)} characters, the limit is {a1.MAX_CELL_CHARS}")
        if len(cells) < col:
            cells.extend([""] * (col - len(cells)))
        cells[col - 1] = value

    def _append_text(
        self,
        op: WriteOp,
        job: Job,
        hm: HeaderMap,
        cells: list[str],
        archives: list[_Pending],
        headers: dict[str, HeaderMap],
    ) -> None:
        col = hm.col(op.text_column or "")
        current = cells[col - 1] if col - 1 < len(cells) else ""
        if job.idempotent and op.text and _holds_entry(current, op.text):
            return  # already applied by the attempt whose answer we never saw
        combined = _join(current, op.text)
        if len(combined) > a1.MAX_CELL_CHARS:
            if not op.archive_overflow:
                raise CellTooLarge(f"{hm.sheet}.{op.text_column}: would exceed {a1.MAX_CELL_CHARS} characters")
            overflow = self._overflows.get(op.sheet)
            if overflow is None:
                raise CellTooLarge(f"{hm.sheet}.{op.text_column}: would exceed {a1.MAX_CELL_CHARS} characters")
            if overflow.sheet not in headers:
                raise _NeedArchive
            moved, kept = split_for_archive(current, op.text, self._archive_target)
            archive = insert(
                overflow.sheet,
                (overflow.owner_column, overflow.period_column),
                {
                    overflow.owner_column: op.key[0],
                    overflow.period_column: period_of(moved),
                    overflow.text_column: moved,
                },
            )
            # Archive rows are appended first, so the moved text is saved before the cell is trimmed.
            archives.append(_Pending(overflow.sheet, None, self._new_row(archive, headers[overflow.sheet])))
            combined = _join(kept, op.text)
        self._set(hm, cells, op.text_column or "", combined)

    # -- the calls -----------------------------------------------------------------------------

    async def _flush(
        self,
        archives: list[_Pending],
        pending: list[_Pending],
        images: dict[tuple[str, int], list[str]],
        originals: dict[tuple[str, int], list[str]],
    ) -> None:
        # Order: archive rows (so moved text is saved before its cell is trimmed), then the cells of
        # rows located by the verify-read, then new rows. Writing cells right after the verify-read
        # keeps the window in which staff sorting could move a located row as short as one call.
        await self._append_rows(archives)
        data: list[tuple[str, list[list[str]]]] = []
        for (sheet, row), cells in images.items():
            before = originals[(sheet, row)]
            for i, value in enumerate(cells):
                if i >= len(before) or before[i] != value:
                    data.append((a1.cell_range(sheet, row, i + 1), [[value]]))
        if data:
            await self._backend.batch_update(data)
        await self._append_rows(pending)

    async def _append_rows(self, pending: list[_Pending]) -> None:
        by_sheet: dict[str, list[_Pending]] = {}
        for p in pending:
            by_sheet.setdefault(p.sheet, []).append(p)
        for sheet, rows in by_sheet.items():
            first = await self._backend.append(sheet, [_trim(p.cells) for p in rows])
            for i, p in enumerate(rows):
                if p.want is not None:
                    self._locator.hints.set(sheet, p.want.columns, p.want.key, first + i)


class _NeedArchive(Exception):
    """A cell overflows and its overflow sheet was not read with this batch: apply again, reading it."""


def _want(op: WriteOp) -> Want:
    return Want(op.sheet, op.key_columns, tuple(normalize_key(k) for k in op.key))


def _join(current: str, text: str) -> str:
    if not current:
        return text
    if not text:
        return current
    return current + ("" if current.endswith("\n") else "\n") + text


def _holds_entry(log: str, text: str) -> bool:
    """Whether `text` is in `log` the way `_join` puts it there: from a line start to a line end (or the end)."""
    start = log.find(text)
    while start != -1:
        end = start + len(text)
        if (start == 0 or log[start - 1] == "\n") and (end == len(log) or log[end] == "\n" or text.endswith("\n")):
            return True
        start = log.find(text, start + 1)
    return False


def _trim(cells: list[str]) -> list[str]:
    out = list(cells)
    while out and out[-1] == "":
        out.pop()
    return out


def split_for_archive(current: str, incoming: str, target: int) -> tuple[str, str]:
    """Split a log into (oldest part to archive, newest part to keep) at entry boundaries.

    Keeps the newest entries while kept + incoming stays within `target` characters.
    """
    starts = entry_starts(current)
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    budget = max(0, target - len(incoming) - 1)
    cut = len(current)
    for s in reversed(starts):
        if len(current) - s > budget:
            break
        cut = s
    if cut == 0:  # everything fits: still archive the oldest entry so the cell shrinks
        cut = starts[1] if len(starts) > 1 else len(current)
    if cut == len(current) and len(current) > budget:
        cut = len(current) - budget if budget else len(current)  # one huge entry: cut by characters
    return current[:cut].rstrip("\n"), current[cut:]


def period_of(text: str) -> str:
    """'first — last' timestamps of the entries in an archived part (or '' when none)."""
    stamps = entry_stamps(text)
    if not stamps:
        return ""
    return stamps[0] if len(stamps) == 1 else f"{stamps[0]} — {stamps[-1]}"
