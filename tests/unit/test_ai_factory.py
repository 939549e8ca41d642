"""The AI factory builds the configured provider behind the offline fallback, and closes its client."""

from __future__ import annotations

import pytest

from bot.ai.factory import AIConfig, UnknownProvider, build_ai, close_ai


def test_offline_default_needs_nothing() -> None:
    """AI_PROVIDER=offline gives the offline responder itself."""
    ai = build_ai(AIConfig(provider="offline"))
    assert ai.is_offline and ai.primary.name == "offline"


@pytest.mark.parametrize(
    ("cfg", "needed"), [(AIConfig("gemini"), "GEMINI_API_KEY"), (AIConfig("openai"), "OPENAI_BASE_URL")]
)
def test_provider_without_its_setting_is_refused(cfg: AIConfig, needed: str) -> None:
    """A provider missing its key or URL is refused with the variable's name."""
    with pytest.raises(UnknownProvider, match=needed):
        build_ai(cfg)


async def test_gemini_is_built_and_closed(gemini_server: object) -> None:
    """With a key Gemini is the primary provider, and close_ai releases its HTTP client."""
    url = gemini_server.url  # type: ignore[attr-defined]
    ai = build_ai(AIConfig("gemini", gemini_api_key="k", gemini_base_url=url))
    assert not ai.is_offline and ai.primary.name == "gemini"
    await close_ai(ai)
    await close_ai(build_ai(AIConfig("offline")))  # nothing to close: no error
