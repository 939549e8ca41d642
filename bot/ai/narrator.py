"""The analytics narrative: one paragraph from Gemini's GEMINI_ANALYSIS_MODEL, as the Apps Script asks for it.

The worker (bot/services/worker.py) gives it the prompt listing the computed figures and keeps the answer only
when every number in it is one of those figures (bot/analytics/analysis.py `usable_narrative`, the twin of
gas/src/analysis.js); otherwise the report uses its template reasoning.
"""

from __future__ import annotations

from bot.ai.gemini import GeminiProvider

NARRATIVE_SYSTEM = "Ты аналитик агентства недвижимости. Отвечай одним абзацем простого текста, без разметки."


class GeminiNarrator:
    """An `AiNarrator` (prompt → paragraph) over the Gemini API."""

    def __init__(self, *, api_key: str, model: str, base_url: str | None = None, timeout: float = 30.0) -> None:
        # The Apps Script's generation settings: a low temperature, room for a paragraph.
        self._provider = GeminiProvider(
            api_key=api_key, model=model, base_url=base_url, timeout=timeout, temperature=0.2, max_output_tokens=800
        )

    @property
    def model(self) -> str:
        """The model asked."""
        return self._provider.model

    async def __call__(self, prompt: str) -> str:
        """The model's paragraph for the figures in `prompt`; raises an AIError when it cannot be had."""
        return await self._provider.generate(NARRATIVE_SYSTEM, [], prompt, [])

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._provider.aclose()
