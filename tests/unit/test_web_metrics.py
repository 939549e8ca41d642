"""The Prometheus exporter: live gateway figures, queue lag and AI latency, in its own registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bot.web.metrics import MetricsExporter
from gateway import GatewayMetrics


@dataclass
class StubGateway:
    """The three things the exporter reads from AsyncSheetsGateway."""

    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    breaker_state: str = "closed"
    outbox_depth: int = 0


def samples(exporter: MetricsExporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the exposition text back into {(name, labels): value}."""
    out = {}
    for family in text_string_to_metric_families(exporter.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_exports_gateway_counters_by_kind() -> None:
    """API calls by kind, 429s, retries, failures and replays are read from the gateway at scrape time."""
    gw = StubGateway()
    exporter = MetricsExporter(gw)
    gw.metrics.record_call("batch_get")
    gw.metrics.record_call("batch_get")
    gw.metrics.record_call("batch_update")
    gw.metrics.record_quota_error()
    gw.metrics.record_retry()
    gw.metrics.record_failure()
    got = samples(exporter)
    assert got[("marketingbot_sheets_api_calls_total", (("kind", "batch_get"),))] == 2
    assert got[("marketingbot_sheets_api_calls_total", (("kind", "batch_update"),))] == 1
    assert got[("marketingbot_sheets_quota_errors_total", ())] == 1
    assert got[("marketingbot_sheets_retries_total", ())] == 1
    assert got[("marketingbot_sheets_failures_total", ())] == 1
    gw.metrics.record_quota_error()
    assert samples(exporter)[("marketingbot_sheets_quota_errors_total", ())] == 2


def test_exports_breaker_outbox_and_queue_lag() -> None:
    """The breaker is a one-hot gauge per state; outbox depth and queue lag follow their sources."""
    gw = StubGateway(breaker_state="open", outbox_depth=7)
    lag: list[float | None] = [42.5]
    exporter = MetricsExporter(gw, queue_lag=lambda: lag[0])
    got = samples(exporter)
    assert got[("marketingbot_sheets_breaker_state", (("state", "open"),))] == 1
    assert got[("marketingbot_sheets_breaker_state", (("state", "closed"),))] == 0
    assert got[("marketingbot_sheets_breaker_state", (("state", "half-open"),))] == 0
    assert got[("marketingbot_outbox_depth", ())] == 7
    assert got[("marketingbot_queue_lag_seconds", ())] == 42.5
    lag[0] = None
    gw.breaker_state = "half-open"
    got = samples(exporter)
    assert got[("marketingbot_queue_lag_seconds", ())] == 0
    assert got[("marketingbot_sheets_breaker_state", (("state", "half-open"),))] == 1


def test_ai_latency_histogram() -> None:
    """AI call durations land in a histogram labelled by provider."""
    exporter = MetricsExporter(StubGateway(), ai_latency_buckets=(0.1, 1.0))
    exporter.observe_ai_latency("offline", 0.05)
    exporter.observe_ai_latency("offline", 0.5)
    exporter.observe_ai_latency("gemini", 3.0)
    got = samples(exporter)
    assert got[("marketingbot_ai_latency_seconds_bucket", (("le", "0.1"), ("provider", "offline")))] == 1
    assert got[("marketingbot_ai_latency_seconds_bucket", (("le", "1.0"), ("provider", "offline")))] == 2
    assert got[("marketingbot_ai_latency_seconds_count", (("provider", "gemini"),))] == 1
    assert got[("marketingbot_ai_latency_seconds_sum", (("provider", "offline"),))] == 0.55


def test_two_exporters_are_independent_and_leave_the_global_registry_alone() -> None:
    """Each exporter has its own registry, so two apps in one process (tests) never collide."""
    a, b = MetricsExporter(StubGateway()), MetricsExporter(StubGateway())
    a.observe_ai_latency("offline", 1.0)
    assert ("marketingbot_ai_latency_seconds_count", (("provider", "offline"),)) not in samples(b)
    assert REGISTRY.get_sample_value("marketingbot_ai_latency_seconds_count", {"provider": "offline"}) is None
    assert "marketingbot_outbox_depth" not in {m.name for m in REGISTRY.collect()}
