"""Connections to Telegram and to the model stay open across a burst of partners and a pause of a few seconds
(bot/warm_pools.py): the next answers do not pay new TCP/TLS handshakes against the real APIs."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from telegram.error import NetworkError

from bot.ai.gemini import GeminiProvider
from bot.app import build_runtime
from bot.config import Settings
from bot.lifecycle import close_runtime
from bot.telegram.aiohttp_request import AiohttpRequest
from bot.warm_pools import env_proxy
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


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting what is handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.submitted += 1
        return super().submit(*args, **kwargs)


async def test_answers_and_bot_api_calls_take_no_thread_hop() -> None:
    """aiohttp's trust_env would look up the proxy and ~/.netrc in the default executor on every request (two hops
    each, queued behind one another in a burst); the sessions decide the proxy once instead."""
    executor = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    with FakeTelegramServer() as tg, FakeGeminiServer() as gemini:
        provider = GeminiProvider(api_key="test-key", model="gemini-test", base_url=gemini.url)
        request = AiohttpRequest(api_url=tg.api_base_url)
        await request.initialize()
        try:
            answers = await asyncio.gather(
                *(provider.generate("Ты ассистент.", [], f"Вопрос {i}", []) for i in range(5))
            )
            streamed = "".join([piece async for piece in provider.stream("Ты ассистент.", [], "Вопрос 5", [])])
            me = await request.post(f"{tg.api_base_url}{tg.token}/getMe")
        finally:
            await request.shutdown()
            await provider.aclose()
    assert answers == [f"Эхо: Вопрос {i}" for i in range(5)]
    assert streamed == "Эхо: Вопрос 5"
    assert isinstance(me, dict) and me["is_bot"] is True
    assert executor.submitted == 0


async def test_the_environments_proxy_carries_the_calls_and_no_proxy_is_respected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP(S)_PROXY still works without trust_env: hosts that exist only for the proxy (`.invalid` never
    resolves) are reached through it, and a host in NO_PROXY is connected to directly."""
    with FakeTelegramServer() as tg, FakeGeminiServer() as gemini:
        monkeypatch.setenv("HTTP_PROXY", gemini.url)
        monkeypatch.setenv("NO_PROXY", "direct.invalid")
        provider = GeminiProvider(api_key="test-key", model="gemini-test", base_url="http://gemini.invalid")
        through = AiohttpRequest(api_url="http://telegram.invalid/bot")
        await through.initialize()
        try:
            answer = await provider.generate("Ты ассистент.", [], "Вопрос через прокси", [])
            monkeypatch.setenv("HTTP_PROXY", tg.url)
            await through.shutdown()
            await through.initialize()  # a new session decides again
            me = await through.post(f"http://telegram.invalid/bot{tg.token}/getMe")
        finally:
            await through.shutdown()
            await provider.aclose()
        assert answer == "Эхо: Вопрос через прокси"
        assert isinstance(me, dict) and me["is_bot"] is True
        assert env_proxy("http://direct.invalid/bot") is None
        direct = AiohttpRequest(api_url="http://direct.invalid/bot")
        await direct.initialize()
        try:
            with pytest.raises(NetworkError):  # not through the proxy: the name does not resolve
                await direct.post(f"http://direct.invalid/bot{tg.token}/getMe")
        finally:
            await direct.shutdown()
