"""Counters the rest of the app reads (Prometheus exporter, /stats, /healthz)."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

_HOUR = 3600.0


@dataclass
class GatewayMetrics:
    """API calls by kind, 429s, retries and failures; the last hour is kept for rates."""

    clock: Callable[[], float] = time.monotonic
    calls: Counter[str] = field(default_factory=Counter)
    quota_errors: int = 0
    retries: int = 0
    failures: int = 0
    outbox_replayed: int = 0
    _recent: deque[tuple[float, str]] = field(default_factory=deque)

    def record_call(self, kind: str) -> None:
        """One backend call was attempted."""
        self.calls[kind] += 1
        self._remember(kind)

    def record_quota_error(self) -> None:
        """The backend answered 429."""
        self.quota_errors += 1
        self._remember("429")

    def record_retry(self) -> None:
        """A call is being retried."""
        self.retries += 1

    def record_failure(self) -> None:
        """A call failed for good (after retries, or the breaker was open)."""
        self.failures += 1

    def last_hour(self) -> Counter[str]:
        """Calls by kind (and '429') in the last hour."""
        self._expire()
        return Counter(kind for _, kind in self._recent)

    @property
    def total_calls(self) -> int:
        """Backend calls of every kind since start."""
        return sum(self.calls.values())

    def _remember(self, kind: str) -> None:
        self._recent.append((self.clock(), kind))
        self._expire()

    def _expire(self) -> None:
        horizon = self.clock() - _HOUR
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
