"""The Python worker's AI narrative: real google-genai against the fake Gemini, GEMINI_ANALYSIS_MODEL, and the
every-number-checked rule shared with the Apps Script (a narrative with any other number is dropped)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.ai.narrator import GeminiNarrator
from bot.app import analysis_narrator
from bot.config import Settings
from bot.services.worker import AnalyticsWorker
from gateway import AsyncSheetsGateway
from gateway.schemas import MARKET, QUEUE, QueueCol
from tests.fakes.gemini_server import FakeGeminiServer, last_user_text
from tests.unit.analytics_support import FakeClock, put_objects, put_queue_rows, queue_row, small_market

BASE_URL = "http://127.0.0.1:8080"
WORKER_JS = Path(__file__).resolve().parents[2] / "gas" / "src" / "worker.js"


def settings_for(gemini: FakeGeminiServer, **extra: Any) -> Settings:
    """Settings pointing Gemini at the fake."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        gemini_api_key="test-key",
        gemini_base_url=gemini.url,
        **extra,
    )


@pytest.fixture
async def narrator(gemini_server: FakeGeminiServer) -> AsyncIterator[GeminiNarrator]:
    """The narrator bot/app.py builds from the settings (default GEMINI_ANALYSIS_MODEL)."""
    built = analysis_narrator(settings_for(gemini_server))
    assert built is not None
    yield built
    await built.aclose()


async def run_job(gw: AsyncSheetsGateway, tmp_path: Path, narrator: GeminiNarrator) -> str:
    """One object, a dozen comparables, one queued request processed; the stored summary."""
    await put_objects(gw)
    market = gw.table(MARKET)
    await gw.write([market.op_insert(r) for r in small_market()])
    await put_queue_rows(gw, [queue_row("job-1")])
    worker = AnalyticsWorker(gw, tmp_path / "reports", BASE_URL, settle=0.01, clock=FakeClock(), ai_narrator=narrator)
    await worker.run_once()
    rec = await gw.table(QUEUE).get("job-1")
    assert rec is not None and rec[QueueCol.STATUS] == "DONE"
    return rec[QueueCol.RESULT_TEXT]


def figure(prompt: str, label: str) -> str:
    """A computed figure as the prompt lists it (`- Медиана цены за м²: 250 000 ₽/м²`)."""
    match = re.search(rf"^- {re.escape(label)}: (.+)$", prompt, re.MULTILINE)
    assert match is not None, prompt
    return match.group(1)


async def test_a_narrative_of_computed_figures_is_used_with_the_analysis_model(
    local_gateway: AsyncSheetsGateway, tmp_path: Path, gemini_server: FakeGeminiServer, narrator: GeminiNarrator
) -> None:
    """GEMINI_ANALYSIS_MODEL (default gemini-2.5-flash) writes the paragraph; its numbers are figures: kept."""
    gemini_server.set_responder(
        lambda body: (
            f"Медиана рынка — {figure(last_user_text(body), 'Медиана цены за м²')}, "
            "объект стоит в рыночном диапазоне; цену стоит сохранить."
        )
    )
    text = await run_job(local_gateway, tmp_path, narrator)
    assert "объект стоит в рыночном диапазоне; цену стоит сохранить" in text
    request = gemini_server.last_request
    assert request.model == "gemini-2.5-flash" and narrator.model == "gemini-2.5-flash"
    assert "Используй только числа из списка ниже" in request.contents[-1][1]


async def test_a_narrative_with_an_invented_number_is_dropped(
    local_gateway: AsyncSheetsGateway, tmp_path: Path, gemini_server: FakeGeminiServer, narrator: GeminiNarrator
) -> None:
    """One number that is no computed figure drops the whole paragraph; the template reasoning stays."""
    gemini_server.set_responder(lambda body: "Цена завышена на 47,3% — снизьте её до 8 111 111 ₽.")
    text = await run_job(local_gateway, tmp_path, narrator)
    assert "47,3" not in text and "8 111 111" not in text and "Рекомендация:" in text
    assert gemini_server.request_count == 1


async def test_gemini_down_leaves_the_template(
    local_gateway: AsyncSheetsGateway, tmp_path: Path, gemini_server: FakeGeminiServer, narrator: GeminiNarrator
) -> None:
    """Gemini answering 503 is no failed report: the template reasoning is used."""
    gemini_server.fail_next(n=10, status=503)
    gemini_server.set_responder(lambda body: "Не должно попасть в отчёт.")
    text = await run_job(local_gateway, tmp_path, narrator)
    assert "Не должно попасть" not in text and "Рекомендация:" in text


def test_a_configured_model_is_asked_and_offline_means_none(gemini_server: FakeGeminiServer) -> None:
    """GEMINI_ANALYSIS_MODEL is the model asked; no key or AI_PROVIDER=offline means no narrative."""
    custom = analysis_narrator(settings_for(gemini_server, gemini_analysis_model="gemini-2.5-pro"))
    assert custom is not None and custom.model == "gemini-2.5-pro"
    assert analysis_narrator(settings_for(gemini_server, ai_provider="offline")) is None
    assert analysis_narrator(Settings(_env_file=None)) is None  # type: ignore[call-arg]


def test_both_twins_default_to_the_same_analysis_model() -> None:
    """The Python default of GEMINI_ANALYSIS_MODEL equals the Apps Script's DEFAULT_GEMINI_MODEL."""
    match = re.search(r"DEFAULT_GEMINI_MODEL = '([^']+)'", WORKER_JS.read_text(encoding="utf-8"))
    assert match is not None
    assert Settings(_env_file=None).gemini_analysis_model == match.group(1) == "gemini-2.5-flash"  # type: ignore[call-arg]
