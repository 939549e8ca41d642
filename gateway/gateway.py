"""AsyncSheetsGateway: the only data layer. Services never see gspread or SQLite.

    gateway = AsyncSheetsGateway(backend, StateStore(path), GatewayMetrics())
    await gateway.start()
    rec = await gateway.table(APPEALS).get("100001")          # fresh row by key
    await gateway.write([gateway.table(APPEALS).op_append_text(...), ...])  # acked: sheet or outbox
    await gateway.close()

Reads from concurrent callers are coalesced into one values:batchGet; writes into one verify-read
and one values:batchUpdate (plus one append per sheet for new rows). Nothing is cached between
requests except row-number and header hints, which are verified on every read.

A write, once submitted, is delivered even if its caller is cancelled: it lands in the sheet or in the
outbox, and `close()` waits for it. Ops of one write are all-or-nothing per op: a rejected op changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import TypeVar

from gateway import a1
from gateway.backend import Rows, SheetsBackend
from gateway.batch import BatchApplier
from gateway.coalesce import Batcher
from gateway.errors import BadRequest, SchemaError, SheetMissing, StructureFault
from gateway.journal import JournalFile, TurnJournal, UpdateInbox
from gateway.ledgers import Ledgers
from gateway.locate import RowLocator
from gateway.metrics import GatewayMetrics
from gateway.ops import WriteOp
from gateway.outbox import Writer
from gateway.records import HeaderMap
from gateway.resilience import ResilientBackend
from gateway.schemas import ALL_SCHEMAS, AUXILIARY_SCHEMAS, SheetSchema, normalize_header
from gateway.state import StateStore
from gateway.table import Table

log = logging.getLogger(__name__)
MAX_RANGES_PER_CALL = 100
QUOTA_WINDOW = 60.0  # Google counts calls per minute
LAST_CALL_KEY = "sheets-last-call"
B = TypeVar("B", bound=SheetsBackend)
# How long a background read (a poll) waits for a partner's read to share a call with: about one call's spacing
# under the quota limiter's sustained pace, so under load polls ride along and at rest they are barely delayed.
BACKGROUND_READ_PATIENCE = 1.5
_read_patience: ContextVar[float] = ContextVar("sheet_read_patience", default=0.0)


class AsyncSheetsGateway:
    """Fresh, coalesced, resilient access to the spreadsheet, with a durable outbox for writes."""

    def __init__(
        self,
        backend: ResilientBackend,
        state: StateStore,
        metrics: GatewayMetrics,
        *,
        read_window: float = 0.005,
        write_window: float = 0.005,
        replay_interval: float = 5.0,
        heartbeat: float = 5.0,
        turn_write_interval: float = 0.0,
    ) -> None:
        self.backend = backend
        self.state = state
        self.ledgers = Ledgers(state)  # the typed stores services keep their records in
        self.metrics = metrics
        self._reads: Batcher[tuple[str, ...], list[Rows]] = Batcher(
            self._flush_reads, window=read_window, gate=backend.read_ready
        )
        self.locator = RowLocator(self.read_ranges)
        self.writer = Writer(
            BatchApplier(backend, self.locator), state, metrics, window=write_window, replay_interval=replay_interval
        )
        self._tables: dict[str, Table] = {}
        self._heartbeat = heartbeat
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._saved_call_at: float | None = None
        self._journal_file = JournalFile(state)
        self.turns = TurnJournal(
            self._journal_file, self.write, write_interval=turn_write_interval, outbox_depth=lambda: self.writer.depth
        )
        self.inbox = UpdateInbox(self._journal_file)

    async def start(self, *, recover_turns: bool = False) -> None:
        """Open the backend and the state file, and start replaying any journaled writes.

        `recover_turns` (the bot process only, never a CLI command running beside it): chat turns journaled
        before a crash and not confirmed written go to the outbox first, to be replayed once.
        """
        await self.backend.open()
        await self.state.open()
        await self._restore_quota()
        await self._journal_file.open()
        if recover_turns:
            await self.turns.recover()
        await self.writer.start()
        self._heartbeat_task = asyncio.create_task(self._save_quota_loop(), name="quota-heartbeat")

    async def close(self) -> None:
        """Flush in-flight writes (to the sheet or the outbox) and close everything."""
        try:
            await self.turns.drain()
            await self.writer.stop()
        finally:
            if self._heartbeat_task is not None:
                self._heartbeat_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._heartbeat_task
            with contextlib.suppress(Exception):
                await self._save_quota()
            await self._journal_file.close()
            await self.state.close()
            await self.backend.close()

    # -- the quota across restarts ---------------------------------------------------------------

    async def _restore_quota(self) -> None:
        """Google still counts a dead process's calls of the last minute: if any may fall in this window, the
        limiters start empty instead of with a full burst (which met 429s right after a restart)."""
        saved = await self.state.meta_get(LAST_CALL_KEY)
        try:
            last = float(saved) if saved else None
        except ValueError:
            last = None
        if last is not None and time.time() - last < QUOTA_WINDOW + self._heartbeat:
            log.info("sheet calls %.0f s before this start: the quota limiter starts empty", time.time() - last)
            self.backend.drain_limiters()

    async def _save_quota(self) -> None:
        last = self.backend.last_call_at
        if last is not None and last != self._saved_call_at:
            await self.state.meta_set(LAST_CALL_KEY, repr(last))
            self._saved_call_at = last

    async def _save_quota_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await self._save_quota()
            except Exception:  # a busy state file must not stop the heartbeat
                log.exception("could not record the last sheet call")

    # -- access --------------------------------------------------------------------------------

    def table(self, schema: SheetSchema) -> Table:
        """The Table for one schema."""
        if schema.title not in self._tables:
            self._tables[schema.title] = Table(schema, self.read_ranges, self.write, self.locator)
        return self._tables[schema.title]

    async def read_ranges(self, ranges: Sequence[str]) -> list[Rows]:
        """Values of A1 ranges, coalesced with concurrent readers into one call (inside `background_reads`,
        only after waiting a little for a partner's read to share it)."""
        return await self._reads.submit(tuple(ranges), patience=_read_patience.get())

    @staticmethod
    @contextlib.contextmanager
    def background_reads(patience: float = BACKGROUND_READ_PATIENCE) -> Iterator[None]:
        """Reads made inside (by this task and the tasks it starts) yield to partners' turns: each waits up to
        `patience` seconds for a turn's read to ride along with, so polls do not spend the quota turns need."""
        token = _read_patience.set(patience)
        try:
            yield
        finally:
            _read_patience.reset(token)

    async def sheet_titles(self) -> list[str]:
        """The titles of the spreadsheet's sheets, in order (one call)."""
        return await self.backend.sheet_titles()

    async def read_sheet(self, title: str) -> Rows:
        """Every row of one sheet, header first (the staff console's dump; services read through `table`)."""
        (rows,) = await self.read_ranges([a1.sheet_range(title)])
        return rows

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ops in order; returns once they are in the sheet or durably in the outbox."""
        await self.writer.write(ops)

    def wrap_raw_backend(self, wrap: Callable[[SheetsBackend], B]) -> B:
        """Put `wrap(raw backend)` in the raw backend's place, below batching, the limiter and retries (a
        benchmark's call tracer); returns the wrapper."""
        wrapper = wrap(self.backend.inner)
        self.backend.inner = wrapper
        return wrapper

    async def write_range(self, rng: str, rows: Rows) -> None:
        """Raw write of a range (the CLI's `sheets set`); bypasses keys, so not for services."""
        await self.backend.batch_update([(rng, rows)])

    async def prune_journals(self) -> None:
        """Forget finished turns and updates past their use (the journals stay bounded)."""
        await self.turns.prune()
        await self.inbox.prune()

    # -- health --------------------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        """Which store serves the sheets: 'google' or 'local'."""
        return self.backend.name

    @property
    def backend_unreachable(self) -> str | None:
        """Why the sheet could not be reached at all on the last call (network, DNS); None once it answers."""
        return self.backend.unreachable

    @property
    def breaker_state(self) -> str:
        """The sheet breaker: 'closed', 'open' or 'half-open'."""
        return self.backend.breaker_state

    @property
    def outbox_depth(self) -> int:
        """Writes waiting for the sheet."""
        return self.writer.depth

    def pause_outbox_replay(self) -> None:
        """Journal but never replay: for a standby process sharing the state file with the leader.

        Call before `start()` so that not even the entries found at start are replayed.
        """
        self.writer.pause_replay()

    async def resume_outbox_replay(self) -> None:
        """Replay again (the process became the leader), including entries other processes journaled."""
        await self.writer.resume_replay()

    @property
    def structure_fault(self) -> StructureFault | None:
        """What the outbox waits on when the spreadsheet's structure refuses writes (None: nothing)."""
        return self.writer.fault

    async def outbox_oldest_age(self) -> float | None:
        """Seconds the oldest waiting write has waited (None when the outbox is empty)."""
        created = await self.state.outbox_oldest()
        return None if created is None else max(0.0, time.time() - created)

    async def dead_letters(self) -> int:
        """Writes that can never apply, kept for the admin (`marketingbot outbox list`)."""
        return await self.state.dead_count()

    async def structure_problems(self, schemas: Sequence[SheetSchema] = ALL_SCHEMAS) -> list[StructureFault]:
        """Missing sheets and headers (two reads: the sheet titles, then every header row in one call)."""
        titles = {normalize_header(t): t for t in await self.backend.sheet_titles()}
        problems: list[StructureFault] = []
        present = []
        for schema in schemas:
            title = titles.get(normalize_header(schema.title))
            if title is None:
                problems.append(SheetMissing(f"the spreadsheet has no sheet {schema.title!r}", sheet=schema.title))
            else:
                present.append((schema, title))
        rows = await self.read_ranges([a1.row_range(title, 1) for _, title in present]) if present else []
        for (schema, _), row in zip(present, rows, strict=True):
            hm = HeaderMap.from_row(schema.title, row[0] if row else [])
            lacking = [h for h in schema.headers if not hm.has(h)]
            if lacking:
                names = ", ".join(f"«{h}»" for h in lacking)
                problems.append(
                    SchemaError(f"sheet {schema.title!r} lacks columns {names}", sheet=schema.title, columns=lacking)
                )
        return problems

    # -- setup ---------------------------------------------------------------------------------

    async def ensure_sheets(
        self, schemas: Sequence[SheetSchema] = ALL_SCHEMAS + AUXILIARY_SCHEMAS, *, fmt: bool = True
    ) -> list[str]:
        """Create missing sheets with their headers (and dropdowns + frozen header on Google); returns created."""
        existing = {normalize_header(t) for t in await self.backend.sheet_titles()}
        created = []
        for schema in schemas:
            if normalize_header(schema.title) not in existing:
                await self.backend.add_sheet(schema.title, schema.headers)
                created.append(schema.title)
            else:
                hm = await self.locator.header(schema.title)
                missing = [h for h in schema.headers if not hm.has(h)]
                if missing and schema.key is not None and not hm.has(schema.key):
                    raise SchemaError(f"sheet {schema.title!r} lacks its key column {schema.key!r}", sheet=schema.title)
                if missing:
                    # Staff-made sheets may lack optional columns: add them at the right end.
                    start = hm.width + 1
                    await self.backend.batch_update(
                        [(str(a1.A1Range(schema.title, 1, start, 1, start + len(missing) - 1)), [missing])]
                    )
                    log.info("added columns %s to %s", missing, schema.title)
            if fmt:
                await self.backend.format_sheet(schema.title, schema.headers, schema.dropdowns)
        return created

    # -- internals -----------------------------------------------------------------------------

    async def _flush_reads(self, items: list[tuple[str, ...]]) -> list[list[Rows] | BaseException]:
        try:
            return list(await self._batch_get(items))
        except (BadRequest, StructureFault):
            if len(items) == 1:
                raise
        # One caller's range was refused (a stale row hint past the grid, a sheet staff deleted): ask
        # again per caller, so the refusal reaches only the caller whose range it was.
        out: list[list[Rows] | BaseException] = []
        for item in items:
            try:
                out += await self._batch_get([item])
            except (BadRequest, StructureFault) as exc:
                out.append(exc)
        return out

    async def _batch_get(self, items: list[tuple[str, ...]]) -> list[list[Rows]]:
        unique = list(dict.fromkeys(r for item in items for r in item))
        values: dict[str, Rows] = {}
        for i in range(0, len(unique), MAX_RANGES_PER_CALL):
            chunk = unique[i : i + MAX_RANGES_PER_CALL]
            for rng, rows in zip(chunk, await self.backend.batch_get(chunk), strict=True):
                values[rng] = rows
        return [[values[r] for r in item] for item in items]
