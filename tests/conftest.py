"""Fixtures shared by every test folder. Each block is owned by the module it serves."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway import AsyncSheetsGateway, GatewayConfig, RetryPolicy, build_gateway
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.sheets_server import FakeSheetsServer
from tests.fakes.telegram_server import FakeTelegramServer

# --- gateway -------------------------------------------------------------------------------------

FAST_RETRY = RetryPolicy(max_attempts=3, max_delay=2.0, initial_backoff=0.01, max_backoff=0.05)


def local_config(tmp_path: Path) -> GatewayConfig:
    """A gateway config on a fresh local store in tmp_path, with test-speed retries and replays."""
    return GatewayConfig(backend="local", local_db_path=tmp_path / "sheets.db", retry=FAST_RETRY, replay_interval=0.05)


def google_config(tmp_path: Path, server: FakeSheetsServer) -> GatewayConfig:
    """The same, on the google backend (real gspread) against a fake Sheets server."""
    return GatewayConfig(
        backend="google",
        spreadsheet_id=server.spreadsheet_id,
        sheets_api_base_url=server.url,
        local_db_path=tmp_path / "state" / "unused.db",
        retry=FAST_RETRY,
        replay_interval=0.05,
        reads_per_minute=None,  # the contract is not about pacing; the limiter has its own tests
        writes_per_minute=None,
    )


@contextlib.asynccontextmanager
async def started_gateway(cfg: GatewayConfig) -> AsyncIterator[AsyncSheetsGateway]:
    """A started gateway with every sheet created, closed on exit."""
    gw = build_gateway(cfg)
    await gw.start()
    await gw.ensure_sheets()
    try:
        yield gw
    finally:
        await gw.close()


@pytest.fixture
def local_gateway_config(tmp_path: Path) -> GatewayConfig:
    """A gateway config on a fresh local store in tmp_path, with test-speed retries."""
    return local_config(tmp_path)


@pytest.fixture
async def local_gateway(local_gateway_config: GatewayConfig) -> AsyncIterator[AsyncSheetsGateway]:
    """A started gateway on an empty local store with every sheet created."""
    async with started_gateway(local_gateway_config) as gw:
        yield gw


@pytest.fixture(params=["local", "google"])
async def any_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncSheetsGateway]:
    """A started gateway with every sheet created: on the local store, then on Google (real gspread + fake server)."""
    if request.param == "local":
        async with started_gateway(local_config(tmp_path)) as gw:
            yield gw
        return
    with FakeSheetsServer(sheets=()) as server:
        async with started_gateway(google_config(tmp_path, server)) as gw:
            yield gw


# --- fakes: Telegram Bot API, Gemini, OpenAI-compatible (owner: tests/fakes/{telegram,gemini,openai}_server.py)


@pytest.fixture
def telegram_server() -> Iterator[FakeTelegramServer]:
    """A running fake Bot API; point PTB at ``.api_base_url`` / ``.file_base_url`` with ``.token``."""
    with FakeTelegramServer() as server:
        yield server


@pytest.fixture
def gemini_server() -> Iterator[FakeGeminiServer]:
    """A running fake Gemini API answering at ``.url`` (google-genai ``api_version="v1"``)."""
    with FakeGeminiServer() as server:
        yield server


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A running fake OpenAI-compatible API; the client's base_url is ``.url + "/v1"``."""
    with FakeOpenAIServer() as server:
        yield server


# --- end of fakes block


# --- fake Google Sheets API (owner: tests/fakes/sheets_server.py) ---------------------------------


@pytest.fixture
def sheets_server() -> Iterator[FakeSheetsServer]:
    """A running fake Sheets v4 API on 127.0.0.1; point the google backend's base_url at ``.url``."""
    with FakeSheetsServer() as server:
        yield server


# --- end of fake Sheets block
