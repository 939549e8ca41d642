"""Connections to Telegram and to the model stay open across a burst of partners and a pause of a few seconds
(bot/warm_pools.py): the next answers do not pay new TCP/TLS handshakes against the real APIs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import SecretStr

from bot.app import build_runtime
from bot.config import Settings
from bot.lifecycle import close_runtime
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.telegram_server import FakeTelegramServer

BURST = 40  # more answers at once than httpx keeps idle by default (20)


async def test_a_burst_after_a_pause_reuses_the_connections_of_the_last_one(tmp_path: Path) -> None:
    """40 answers at once, then (past httpx's default 5 s keep-alive) 40 more and a Telegram call: neither fake
    accepts a single new connection the second time."""
    with FakeTelegramServer() as tg, FakeGeminiServer(latency=0.3) as gemini:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            telegram_bot_token=SecretStr(tg.token),
            telegram_api_base_url=tg.api_base_url,
            local_db_path=tmp_path / "local.db",
            ai_provider="gemini",
            gemini_api_key=SecretStr("test-key"),
            gemini_model="gemini-test",
            gemini_base_url=gemini.url,
        )
        runtime = await build_runtime(settings, local=True)
        assert runtime.telegram is not None
        try:
            await runtime.telegram.initialize()

            async def burst() -> None:
                answers = await asyncio.gather(
                    *(runtime.ai.answer("Ты ассистент.", [], f"Вопрос {i}", []) for i in range(BURST))
                )
                assert all(a.from_model for a in answers)
                await runtime.telegram.bot.get_me()

            await burst()
            opened = (tg.connections_opened, gemini.connections_opened)
            assert opened[1] >= BURST // 2  # the burst really ran side by side
            await asyncio.sleep(6)  # a partner's pause, past httpx's default keep-alive
            await burst()
            assert (tg.connections_opened, gemini.connections_opened) == opened
        finally:
            await close_runtime(runtime)
