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

import logging
from collections.abc import Sequence

from gateway import a1
from gateway.backend import Rows
from gateway.coalesce import Batcher
from gateway.errors import BadRequest, SchemaError
from gateway.locate import RowLocator
from gateway.metrics import GatewayMetrics
from gateway.ops import WriteOp
from gateway.outbox import Writer
from gateway.resilience import ResilientBackend
from gateway.schemas import ALL_SCHEMAS, SheetSchema, normalize_header
from gateway.state import StateStore
from gateway.tables import Table
from gateway.writer import BatchApplier

log = logging.getLogger(__name__)
MAX_RANGES_PER_CALL = 100


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
    ) -> None:
        self.backend = backend
        self.state = state
        self.metrics = metrics
        self._reads: Batcher[tuple[str, ...], list[Rows]] = Batcher(self._flush_reads, window=read_window)
        self.locator = RowLocator(self.read_ranges)
        self.writer = Writer(
            BatchApplier(backend, self.locator), state, metrics, window=write_window, replay_interval=replay_interval
        )
        self._tables: dict[str, Table] = {}

    async def start(self) -> None:
        """Open the backend and the state file, and start replaying any journaled writes."""
        await self.backend.open()
        await self.state.open()
        await self.writer.start()

    async def close(self) -> None:
        """Flush in-flight writes (to the sheet or the outbox) and close everything."""
        try:
            await self.writer.stop()
        finally:
            await self.state.close()
            await self.backend.close()

    # -- access --------------------------------------------------------------------------------

    def table(self, schema: SheetSchema) -> Table:
        """The Table for one schema."""
        if schema.title not in self._tables:
            self._tables[schema.title] = Table(schema, self.read_ranges, self.write, self.locator)
        return self._tables[schema.title]

    async def read_ranges(self, ranges: Sequence[str]) -> list[Rows]:
        """Values of A1 ranges, coalesced with concurrent readers into one call."""
        return await self._reads.submit(tuple(ranges))

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ops in order; returns once they are in the sheet or durably in the outbox."""
        await self.writer.write(ops)

    async def write_range(self, rng: str, rows: Rows) -> None:
        """Raw write of a range (the CLI's `sheets set`); bypasses keys, so not for services."""
        await self.backend.batch_update([(rng, rows)])

    # -- health --------------------------------------------------------------------------------

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

    # -- setup ---------------------------------------------------------------------------------

    async def ensure_sheets(self, schemas: Sequence[SheetSchema] = ALL_SCHEMAS, *, fmt: bool = True) -> list[str]:
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
                    raise SchemaError(f"sheet {schema.title!r} lacks its key column {schema.key!r}")
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
        except BadRequest:
            if len(items) == 1:
                raise
        # One caller's range was refused (e.g. a stale row hint past the grid): ask again per caller,
        # so the refusal reaches only the caller whose range it was.
        out: list[list[Rows] | BaseException] = []
        for item in items:
            try:
                out += await self._batch_get([item])
            except BadRequest as exc:
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
