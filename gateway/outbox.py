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

from gateway.coalesce import Batcher
from gateway.errors import GatewayError, SheetUnavailable
from gateway.metrics import GatewayMetrics
from gateway.ops import WriteOp
from gateway.resilience import BreakerOpen
from gateway.state import StateStore
from gateway.writer import BatchApplier, Job

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
        self._shared = False  # set by pause_replay: other processes may journal into the same file

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
        self._shared = True

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

    async def _apply(self, groups: list[list[Job]]) -> list[list[GatewayError | None]]:
        """Per-job errors of each group, applied as one batch (the caller holds the apply lock).

        When the sheet rejects the batch as a whole (a sheet without its key column, a deleted sheet),
        each group is applied alone, so the rejection reaches only the groups that cause it. If every
        group is rejected alone too (revoked access, a missing spreadsheet), the batch error is raised.
        """
        try:
            results = await self._applier.apply([job for group in groups for job in group])
        except SheetUnavailable:
            raise
        except GatewayError as exc:
            if len(groups) == 1:
                raise
            log.warning("batch of %d writes rejected (%s); applying them one by one", len(groups), exc)
            out: list[list[GatewayError | None]] = []
            rejected = 0
            try:
                for group in groups:
                    # Part of the batch may have landed before the rejection: redo each group idempotently.
                    try:
                        out += await self._apply([[dataclasses.replace(job, idempotent=True) for job in group]])
                    except SheetUnavailable:
                        raise
                    except GatewayError as alone:
                        rejected += 1
                        out.append([alone] * len(group))
            except BreakerOpen as unavailable:
                raise SheetUnavailable(str(unavailable)) from unavailable  # earlier groups did land
            if rejected == len(groups):
                raise
            return out
        out, pos = [], 0
        for group in groups:
            out.append(results[pos : pos + len(group)])
            pos += len(group)
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
            if self._shared and self._replay_enabled and not self._depth:
                # Entries a standby journaled into the shared file (it never replays them itself).
                self._depth = await self._state.outbox_depth()
            if not self._depth or not self._replay_enabled:
                continue
            try:
                await self._replay_once()
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
                    return
                continue
            seqs = [e.seq for e in entries]
            await self._state.outbox_mark_attempted(seqs)
            groups = [[Job(e.op, idempotent=e.maybe_applied)] for e in entries]
            results = [errs[0] for errs in await self._apply(groups)]
            for entry, err in zip(entries, results, strict=True):
                if err is not None:
                    # Rejected for good (bad data): keep it visible to the admin instead of blocking the queue.
                    log.error("outbox write %s dropped to dead letters: %s", entry.op.op_id, err)
                    await self._state.ledger_set("outbox-dead", entry.op.op_id, type(err).__name__, entry.op.to_json())
            async with self._journal_lock:
                await self._state.outbox_delete(seqs)
                self._depth = await self._state.outbox_depth()
            self._metrics.outbox_replayed += len(entries)
