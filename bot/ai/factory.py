"""Builds the configured AI provider (wrapped in the offline fallback) from plain parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bot.ai.base import AIProvider
from bot.ai.fallback import FallbackAI
from bot.ai.offline import OfflineResponder
from bot.ai.resilience import AIRetryPolicy

# google-genai and openai are imported only when chosen: together they cost ~0.9 s of start-up and ~36 MB
# of memory, which the offline default (and `marketingbot local`) should not pay.


class UnknownProvider(ValueError):
    """AI_PROVIDER names no known provider, or the provider lacks what it needs (key, URL)."""


@dataclass(frozen=True)
class AIConfig:
    """What the composition root passes in (from Settings)."""

    provider: str  # "gemini" | "openai" | "offline"
    gemini_api_key: str | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str = "gpt-4o-mini"
    timeout: float = 30.0
    retry: AIRetryPolicy = field(default_factory=AIRetryPolicy)


def build_provider(cfg: AIConfig) -> AIProvider:
    """The bare provider named by `cfg.provider`."""
    if cfg.provider == "gemini":
        from bot.ai.gemini import GeminiProvider

        if not cfg.gemini_api_key:
            raise UnknownProvider("GEMINI_API_KEY is required when AI_PROVIDER=gemini")
        return GeminiProvider(
            api_key=cfg.gemini_api_key,
            model=cfg.gemini_model,
            base_url=cfg.gemini_base_url,
            timeout=cfg.timeout,
            retry=cfg.retry,
        )
    if cfg.provider == "openai":
        from bot.ai.openai_compat import OpenAICompatProvider

        if not cfg.openai_base_url:
            raise UnknownProvider("OPENAI_BASE_URL is required when AI_PROVIDER=openai")
        return OpenAICompatProvider(
            base_url=cfg.openai_base_url,
            model=cfg.openai_model,
            api_key=cfg.openai_api_key,
            timeout=cfg.timeout,
            retry=cfg.retry,
        )
    if cfg.provider == "offline":
        return OfflineResponder()
    raise UnknownProvider(f"unknown AI provider {cfg.provider!r} (expected gemini, openai or offline)")


def build_ai(cfg: AIConfig, *, observe_latency: Callable[[str, float], None] | None = None) -> FallbackAI:
    """The provider wrapped so that any failure becomes the offline answer (what AppealsService takes)."""
    return FallbackAI(build_provider(cfg), observe_latency=observe_latency)


async def close_ai(ai: FallbackAI) -> None:
    """Close the provider's HTTP client, if it has one."""
    aclose = getattr(ai.primary, "aclose", None)
    if aclose is not None:
        await aclose()
