"""The AI latency of /metrics is observed where the model is called: FallbackAI (bot/app.py wires the exporter in)."""

from __future__ import annotations

from bot.ai.base import AIUnavailable, Turn
from bot.ai.fallback import FallbackAI


class _Provider:
    """A provider that answers, or fails when told to."""

    name = "stub"

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail

    async def generate(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> str:
        """An answer, or AIUnavailable."""
        if self.fail:
            raise AIUnavailable("down")
        return "Ответ"


async def test_an_answer_from_the_provider_is_observed_and_a_failure_is_not() -> None:
    """Each answer the provider gives is observed under its name; a failed call (offline fallback) is not."""
    seen: list[tuple[str, float]] = []
    ok = FallbackAI(_Provider(), observe_latency=lambda name, seconds: seen.append((name, seconds)))
    await ok.answer("system", [], "Вопрос", [])
    await ok.answer("system", [], "Ещё вопрос", [])
    failing = FallbackAI(_Provider(fail=True), observe_latency=lambda name, seconds: seen.append((name, seconds)))
    answer = await failing.answer("system", [], "Вопрос", [])
    assert answer.failed
    assert [name for name, _ in seen] == ["stub", "stub"] and all(s >= 0 for _, s in seen)
