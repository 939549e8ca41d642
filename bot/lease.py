"""The leader lease: one process at a time takes Telegram updates and runs the periodic jobs.

During a blue-green hand-over two releases run side by side on one socket. Both serve HTTP; only the holder
of an exclusive `flock` on LEADER_LOCK_FILE polls Telegram (two pollers get 409), accepts webhook updates
and runs the pollers (a promotion sent by both would reach partners twice). The kernel releases the lock
when the holder exits or crashes, so a SIGKILLed leader never leaves a stale lease behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 0.1


class LeaderLease:
    """An exclusive lock on one file, held for as long as this process leads."""

    def __init__(self, path: Path, *, holder: dict[str, Any] | None = None) -> None:
        self.path = path
        self.holder = holder or {}
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this process holds the lease."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Takes the lease if nobody holds it; never blocks."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC (Python's default): a child process must never inherit, and so keep, the lease.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._write_holder(fd)
        return True

    async def acquire(self, stop: asyncio.Event, interval: float = DEFAULT_RETRY_SECONDS) -> bool:
        """Retries every `interval` seconds until the lease is ours (True) or `stop` is set (False)."""
        while not stop.is_set():
            if self.try_acquire():
                return True
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                continue
        return False

    def release(self) -> None:
        """Gives the lease up; a waiting standby takes it on its next try."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # only the holder record: the unlock below is what matters
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def read_holder(self) -> dict[str, Any]:
        """Who holds the lease, as its holder wrote it ({} when nobody has written one)."""
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_holder(self, fd: int) -> None:
        # Informational (pid, slot, socket): the lock, not this text, decides who leads.
        record = json.dumps({"pid": os.getpid(), **self.holder}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
