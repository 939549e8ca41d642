"""The write path: coalesced batches, and the durable outbox for writes the sheet cannot take now.

A write is acknowledged only once it is in the sheet or journaled in the outbox. While anything is
journaled, new writes queue behind it so the sheet sees writes in the order they were made.
Replays run idempotently, so a write whose answer was lost is never applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence

from gateway.batch import BatchApplier, Job
from gateway.coalesce import Batcher
from gateway.errors import GatewayError, SheetUnavailable, StructureFault
from gateway.metrics import GatewayMetrics
from gateway.ops import WriteOp
from gateway.resilience import BreakerOpen
from gateway.state import StateStore

log = logging.getLogger(__name__)


class Writer:
    """Coalesces writes into batches and falls back to the outbox when the sheet is unavailable."""

    def __init__(
        self,
        applier: BatchApplier,
        state: StateStore,
        metrics: GatewayMetrics,
        *,
        window: float = 0.005,
        replay_interval: float = 5.0,
        replay_batch: int = 100,
    ) -> None:
        self._applier = applier
        self._state = state
        self._metrics = metrics
        self._batcher: Batcher[list[WriteOp], None] = Batcher(self._flush, window=window)
        self._replay_interval = replay_interval
        self._replay_batch = replay_batch
        self._depth = 0
        self._kick = asyncio.Event()
        self._replayer: asyncio.Task[None] | None = None
        self._journal_lock = asyncio.Lock()
        # One apply at a time (batches and replays): two would read-modify-write the same cells.
        self._apply_lock = asyncio.Lock()
        self._deliveries: set[asyncio.Task[None]] = set()
        # Several processes may share one state file (a blue-green hand-over): only the leader replays, or
        # two would replay the same entries. A paused writer still journals; it never replays.
        self._replay_enabled = True
        # The structural fault the outbox is waiting on (a missing sheet, a protected range), for health.
        self.fault: StructureFault | None = None

    async def start(self) -> None:
        """Load the outbox depth and start the replayer (journaled writes from a previous run go first)."""
        self._depth = await self._state.outbox_depth()
        self._replayer = asyncio.create_task(self._replay_loop(), name="outbox-replayer")
        if self._depth and self._replay_enabled:
            log.warning("outbox holds %d writes from a previous run; replaying", self._depth)
            self._kick.set()

    def pause_replay(self) -> None:
        """Stop replaying (a standby sharing the state file with the leader); writes are still journaled."""
        self._replay_enabled = False

    async def resume_replay(self) -> None:
        """Replay again, starting with whatever the state file holds now (also another process's entries)."""
        self._replay_enabled = True
        async with self._journal_lock:
            self._depth = await self._state.outbox_depth()
        if self._depth:
            log.warning("outbox holds %d writes (some from another process); replaying", self._depth)
            self._kick.set()

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Finish in-flight writes (into the sheet or the outbox), try once more to empty the outbox, stop replaying."""
        while self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        await self._batcher.drain()
        if self._depth and self._replay_enabled:
            with contextlib.suppress(TimeoutError, GatewayError):
                await asyncio.wait_for(self._replay_once(), flush_timeout)
        if self._replayer is not None:
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replayer

    @property
    def apply_lock(self) -> asyncio.Lock:
        """Held while a batch or a replay is applied: whatever moves rows (archiving) takes it too."""
        return self._apply_lock

    @property
    def depth(self) -> int:
        """Writes waiting in the outbox."""
        return self._depth

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ops (in order); returns once they are in the sheet or durably in the outbox."""
        batch = list(ops)
        if not batch:
            return
        # Once asked for, a write ends in the sheet or the outbox even if its caller is cancelled meanwhile.
        task = asyncio.create_task(self._deliver(batch))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
        await asyncio.shield(task)

    async def _deliver(self, batch: list[WriteOp]) -> None:
        if self._depth:
            await self._journal(batch, maybe_applied=False)
            return
        try:
            await self._batcher.submit(batch)
        except BreakerOpen:
            await self._journal(batch, maybe_applied=False)
        except StructureFault as exc:
            # Staff can fix it (return the sheet, unprotect the range): the write waits, never dropped.
            self.fault = exc
            log.warning("write waits in the outbox: %s (fix: %s)", exc, exc.fix)
            await self._journal(batch, maybe_applied=True)
        except SheetUnavailable:
            # A timeout or 5xx may hide a write that did land: replay it idempotently.
            await self._journal(batch, maybe_applied=True)

    async def wait_empty(self, within: float) -> bool:
        """Wait until the outbox is empty (tests and shutdown); True when it is."""

        async def _poll() -> None:
            while self._depth:
                self._kick.set()
                await asyncio.sleep(0.02)

        try:
            await asyncio.wait_for(_poll(), within)
        except TimeoutError:
            return False
        return True

    # -- internals -----------------------------------------------------------------------------

    async def _flush(self, groups: list[list[WriteOp]]) -> list[BaseException | None]:
        async with self._apply_lock:
            results = await self._apply([[Job(op) for op in group] for group in groups])
        out: list[BaseException | None] = []
        for errs in results:
            first = [e for e in errs if e is not None]
            out.append(first[0] if first else None)
        return out

    async def _apply(self, groups: list[list[Job]], *, stop_on_fault: bool = False) -> list[list[GatewayError | None]]:
        """Per-job errors of each group, applied as one batch (the caller holds the apply lock).

        When the sheet rejects the batch as a whole (a sheet without its key column, a deleted sheet),
        each group is applied alone, so the rejection reaches only the groups that cause it. If every
        group is rejected alone too (revoked access, a missing spreadsheet), the batch error is raised.
        With `stop_on_fault` (replays), the groups after one refused by the sheet's structure are not
        tried: they keep their place behind it.
        """
        try:
            results = await self._applier.apply([job for group in groups for job in group], stop_on_fault=stop_on_fault)
        except StructureFault:
            if len(groups) == 1:
                raise
            return await self._apply_alone(groups, stop_on_fault)
        except SheetUnavailable:
            raise
        except GatewayError as exc:
            if len(groups) == 1:
                raise
            return await self._apply_alone(groups, stop_on_fault, exc)
        out, pos = [], 0
        for group in groups:
            out.append(results[pos : pos + len(group)])
            pos += len(group)
        return out

    async def _apply_alone(
        self, groups: list[list[Job]], stop_on_fault: bool, batch_error: GatewayError | None = None
    ) -> list[list[GatewayError | None]]:
        log.warning("batch of %d writes rejected (%s); applying them one by one", len(groups), batch_error)
        out: list[list[GatewayError | None]] = []
        rejected = 0
        fault: StructureFault | None = None
        try:
            for group in groups:
                if fault is not None and stop_on_fault:
                    out.append([fault] * len(group))
                    continue
                # Part of the batch may have landed before the rejection: redo each group idempotently.
                try:
                    out += await self._apply([[dataclasses.replace(job, idempotent=True) for job in group]])
                except StructureFault as alone:
                    rejected += 1
                    fault = fault or alone
                    out.append([alone] * len(group))
                except SheetUnavailable:
                    raise
                except GatewayError as alone:
                    rejected += 1
                    out.append([alone] * len(group))
        except BreakerOpen as unavailable:
            raise SheetUnavailable(str(unavailable)) from unavailable  # earlier groups did land
        if rejected == len(groups) and batch_error is not None:
            raise batch_error
        if rejected == len(groups) and fault is not None:
            raise fault
        return out

    async def _journal(self, ops: list[WriteOp], *, maybe_applied: bool) -> None:
        async with self._journal_lock:
            await self._state.outbox_put(ops, maybe_applied=maybe_applied)
            self._depth += len(ops)
        self._kick.set()

    async def _replay_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._replay_interval)
            self._kick.clear()
            if not self._depth:
                # `marketingbot outbox retry` may have put an entry back from another process, or a standby
                # journaled into the shared file (it never replays them itself).
                async with self._journal_lock:
                    self._depth = await self._state.outbox_depth()
                if not self._depth:
                    continue
            if not self._replay_enabled:
                continue
            try:
                await self._replay_once()
            except StructureFault as exc:
                self.fault = exc
                log.warning("outbox waits for staff: %s (fix: %s; %d waiting)", exc, exc.fix, self._depth)
                # Staff fix things in minutes, not seconds: probe less often, to spare the read quota.
                await asyncio.sleep(self._replay_interval * 3)
            except SheetUnavailable as exc:
                log.info("outbox replay deferred: %s (%d waiting)", exc, self._depth)
                await asyncio.sleep(self._replay_interval)
            except Exception:
                log.exception("outbox replay failed")
                await asyncio.sleep(self._replay_interval)

    async def _replay_once(self) -> None:
        async with self._apply_lock:  # also keeps stop() and the replayer from replaying the same entries
            await self._replay_locked()

    async def _replay_locked(self) -> None:
        while True:
            entries = await self._state.outbox_peek(self._replay_batch)
            if not entries:
                async with self._journal_lock:  # a write may have been journaled since the peek
                    self._depth = await self._state.outbox_depth()
                if not self._depth:
                    self.fault = None
                    return
                continue
            seqs = [e.seq for e in entries]
            await self._state.outbox_mark_attempted(seqs)
            groups = [[Job(e.op, idempotent=e.maybe_applied)] for e in entries]
            try:
                results = [errs[0] for errs in await self._apply(groups, stop_on_fault=True)]
            except StructureFault as exc:
                await self._state.outbox_note_error(entries[0].seq, f"{type(exc).__name__}: {exc}")
                raise
            done: list[int] = []
            for entry, err in zip(entries, results, strict=True):
                if isinstance(err, StructureFault):
                    # It and everything behind it wait (in order) until staff fix the sheet.
                    await self._state.outbox_note_error(entry.seq, f"{type(err).__name__}: {err}")
                    async with self._journal_lock:
                        await self._state.outbox_delete(done)
                        self._depth = await self._state.outbox_depth()
                    self._metrics.outbox_replayed += len(done)
                    raise err
                if err is not None:
                    # Can never apply (a row that no longer exists, a text over the cell limit): keep it
                    # for the admin (`marketingbot outbox list|retry|drop`, /stats) instead of blocking the queue.
                    log.error("outbox write %s moved to dead letters: %s", entry.op.op_id, err)
                    await self._state.outbox_kill(entry, f"{type(err).__name__}: {err}")
                    continue
                done.append(entry.seq)
            async with self._journal_lock:
                await self._state.outbox_delete(done)
                self._depth = await self._state.outbox_depth()
            self._metrics.outbox_replayed += len(entries)
