"""Fixtures shared by every test folder. Each block is owned by the module it serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import AsyncSheetsGateway
from gateway.factory import GatewayConfig, build_gateway
from gateway.resilience import RetryPolicy

# --- gateway -------------------------------------------------------------------------------------

FAST_RETRY = RetryPolicy(max_attempts=3, max_delay=2.0, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def local_gateway_config(tmp_path: Path) -> GatewayConfig:
    """A gateway config on a fresh local store in tmp_path, with test-speed retries."""
    return GatewayConfig(
        backend="local", local_db_path=tmp_path / "sheets.db", retry=FAST_RETRY, replay_interval=0.05
    )


@pytest.fixture
async def local_gateway(local_gateway_config: GatewayConfig) -> AsyncIterator[AsyncSheetsGateway]:
    """A started gateway on an empty local store with every sheet created."""
    gw = build_gateway(local_gateway_config)
    await gw.start()
    await gw.ensure_sheets()
    try:
        yield gw
    finally:
        await gw.close()


@pytest.fixture(params=["local"])
async def any_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncSheetsGateway]:
    """A started gateway with every sheet created, on each backend in turn."""
    cfg = GatewayConfig(backend="local", local_db_path=tmp_path / "sheets.db", retry=FAST_RETRY, replay_interval=0.05)
    gw = build_gateway(cfg)
    await gw.start()
    await gw.ensure_sheets()
    try:
        yield gw
    finally:
        await gw.close()
