"""Builds a ready AsyncSheetsGateway from plain parameters (the composition root passes settings in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.backend import SheetsBackend
from gateway.gateway import AsyncSheetsGateway
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import QuotaLimiter
from gateway.resilience import ResilientBackend, RetryPolicy
from gateway.state import StateStore

STATE_FILE_NAME = "chat_memory.db"


@dataclass(frozen=True)
class GatewayConfig:
    """Everything needed to build the gateway; defaults suit production."""

    backend: str = "local"  # "local" | "google"
    local_db_path: Path = Path("data/marketingbot.db")
    spreadsheet_id: str = ""
    credentials_file: str | None = None
    sheets_api_base_url: str | None = None
    request_timeout: float = 10.0
    reads_per_minute: int | None = 60
    writes_per_minute: int | None = 60
    breaker_fail_max: int = 5
    breaker_reset_timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    read_window: float = 0.005
    write_window: float = 0.005
    replay_interval: float = 5.0
    turn_write_interval: float = 0.0  # journaled chat turns go to the sheet at most this often (0: at once)

    @property
    def state_path(self) -> Path:
        """The durable local state (outbox, ledgers, counters) lives next to LOCAL_DB_PATH."""
        return self.local_db_path.parent / STATE_FILE_NAME


def make_backend(cfg: GatewayConfig) -> SheetsBackend:
    """The raw backend named by the config."""
    if cfg.backend == "google":
        from gateway.backends.google import GoogleSheetsBackend

        google: SheetsBackend = GoogleSheetsBackend(
            cfg.spreadsheet_id, cfg.credentials_file, base_url=cfg.sheets_api_base_url, timeout=cfg.request_timeout
        )
        return google
    if cfg.backend == "local":
        from gateway.backends.local import LocalSheetsBackend

        return LocalSheetsBackend(cfg.local_db_path)
    raise ValueError(f"unknown sheets backend {cfg.backend!r}")


def build_gateway(cfg: GatewayConfig, metrics: GatewayMetrics | None = None) -> AsyncSheetsGateway:
    """An unstarted gateway: call `await gateway.start()` before use and `close()` after."""
    metrics = metrics or GatewayMetrics()
    limits = cfg.backend == "google"  # the quota is Google's; the local store has none
    backend = ResilientBackend(
        make_backend(cfg),
        metrics=metrics,
        breaker_fail_max=cfg.breaker_fail_max,
        breaker_reset_timeout=cfg.breaker_reset_timeout,
        retry=cfg.retry,
        read_limiter=QuotaLimiter(cfg.reads_per_minute) if limits and cfg.reads_per_minute else None,
        write_limiter=QuotaLimiter(cfg.writes_per_minute) if limits and cfg.writes_per_minute else None,
    )
    return AsyncSheetsGateway(
        backend,
        StateStore(cfg.state_path),
        metrics,
        read_window=cfg.read_window,
        write_window=cfg.write_window,
        replay_interval=cfg.replay_interval,
        turn_write_interval=cfg.turn_write_interval,
    )
