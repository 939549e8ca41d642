"""Prometheus metrics for `/metrics`, in a registry of their own (never the process-global default one).

Gateway figures are read at scrape time from the objects passed in, so nothing has to push them;
only the AI latency histogram is observed by the code that calls the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from bot.web.ports import GatewayHealth

BREAKER_STATES = ("closed", "open", "half-open")
# AI calls take from tens of milliseconds (offline) to tens of seconds (a slow model).
AI_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0)


class _GatewayCollector:
    """Turns the gateway's live counters into metric families at each scrape."""

    def __init__(self, gateway: GatewayHealth, queue_lag: Callable[[], float | None]) -> None:
        self._gateway = gateway
        self._queue_lag = queue_lag

    def collect(self) -> Iterable[Metric]:
        """Yield the current values."""
        counters = self._gateway.metrics
        calls = CounterMetricFamily(
            "marketingbot_sheets_api_calls", "Sheets API calls attempted, by kind.", labels=["kind"]
        )
        for kind, count in sorted(counters.calls.items()):
            calls.add_metric([kind], count)
        yield calls
        yield CounterMetricFamily(
            "marketingbot_sheets_quota_errors", "Sheets API answers with HTTP 429.", value=counters.quota_errors
        )
        yield CounterMetricFamily("marketingbot_sheets_retries", "Sheets API calls retried.", value=counters.retries)
        yield CounterMetricFamily(
            "marketingbot_sheets_failures", "Sheets API calls failed for good.", value=counters.failures
        )
        yield CounterMetricFamily(
            "marketingbot_outbox_replayed", "Journaled writes replayed to the sheet.", value=counters.outbox_replayed
        )
        breaker = GaugeMetricFamily(
            "marketingbot_sheets_breaker_state", "1 for the sheet circuit breaker's current state.", labels=["state"]
        )
        current = self._gateway.breaker_state
        for state in BREAKER_STATES:
            breaker.add_metric([state], 1.0 if state == current else 0.0)
        yield breaker
        yield GaugeMetricFamily(
            "marketingbot_outbox_depth", "Writes waiting in the durable outbox.", value=self._gateway.outbox_depth
        )
        lag = self._queue_lag()
        yield GaugeMetricFamily(
            "marketingbot_queue_lag_seconds",
            "Age of the oldest pending analytics request (0 when none).",
            value=0.0 if lag is None else lag,
        )


class MetricsExporter:
    """Owns a CollectorRegistry: gateway counters, breaker, outbox, queue lag and AI latency."""

    def __init__(
        self,
        gateway: GatewayHealth,
        *,
        queue_lag: Callable[[], float | None] = lambda: None,
        ai_latency_buckets: Sequence[float] = AI_LATENCY_BUCKETS,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_GatewayCollector(gateway, queue_lag))
        self._ai_latency = Histogram(
            "marketingbot_ai_latency_seconds",
            "Time to get an answer from the AI provider.",
            labelnames=["provider"],
            buckets=tuple(ai_latency_buckets),
            registry=self.registry,
        )

    def observe_ai_latency(self, provider: str, seconds: float) -> None:
        """Record one AI call's duration."""
        self._ai_latency.labels(provider=provider).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (what `/metrics` returns)."""
        return generate_latest(self.registry)
