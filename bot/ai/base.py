"""The AI provider interface every backend implements (Gemini, OpenAI-compatible, offline), and its errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Role = Literal["user", "model"]

CONTEXT_HEADER = "Справочные материалы из базы знаний агентства (используй их, если они относятся к вопросу):"


@dataclass(frozen=True)
class Turn:
    """One turn of the conversation as the model sees it: the partner ('user') or the assistant ('model')."""

    role: Role
    text: str


class AIError(Exception):
    """Base class of every error an AI provider raises; the caller falls back to the offline answer."""


class AIUnavailable(AIError):
    """The provider could not answer now (timeout, connection error, 5xx) after our retries."""


class AIRateLimited(AIUnavailable):
    """The provider answered 429; `retry_after` is its hint in seconds, when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AIBreakerOpen(AIUnavailable):
    """The provider's circuit breaker is open after repeated failures; calls are refused until it half-opens."""


class AIStreamBroken(AIUnavailable):
    """The provider's stream broke (connection lost, error chunk, no finish) after `received` had arrived."""

    def __init__(self, message: str, received: str) -> None:
        super().__init__(message)
        self.received = received


class AIRejected(AIError):
    """The provider refused the request for good (bad key, bad request, unknown model); retrying will not help."""


class AIEmptyAnswer(AIError):
    """The provider answered without text (safety block, empty candidate)."""


class AIProvider(Protocol):
    """Generates the assistant's next message."""

    name: str

    async def generate(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> str:
        """The reply to `user_text`, given the system instruction, earlier turns and knowledge-base facts."""
        ...


#: Receives each piece of an answer as the model writes it; must not block (it runs inside the model's stream).
DeltaSink = Callable[[str], None]


@runtime_checkable
class StreamingAIProvider(AIProvider, Protocol):
    """A provider that can also hand out its answer piece by piece as the model writes it."""

    def stream(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> AsyncIterator[str]:
        """Text deltas of the reply, in order; raises an AIError subclass (AIStreamBroken once text has flowed)."""
        ...


def compose_system(system: str, context: list[str]) -> str:
    """The system instruction with the retrieved knowledge-base facts appended (numbered)."""
    if not context:
        return system
    facts = "\n\n".join(f"[{i}] {fact}" for i, fact in enumerate(context, 1))
    return f"{system.rstrip()}\n\n{CONTEXT_HEADER}\n\n{facts}"


def render_fact(question: str, answer: str) -> str:
    """How one knowledge-base entry is given to a model (and read back by the offline responder)."""
    return f"Вопрос: {question.strip()}\nОтвет: {answer.strip()}"


def split_fact(fact: str) -> tuple[str, str]:
    """Inverse of render_fact: (question, answer); a free-form fact is all answer."""
    if fact.startswith("Вопрос:") and "\nОтвет:" in fact:
        question, answer = fact.split("\nОтвет:", 1)
        return question.removeprefix("Вопрос:").strip(), answer.strip()
    return "", fact.strip()


def merge_turns(history: list[Turn]) -> list[Turn]:
    """Adjacent turns of the same role joined, empty ones dropped (models expect alternating roles)."""
    out: list[Turn] = []
    for turn in history:
        text = turn.text.strip()
        if not text:
            continue
        if out and out[-1].role == turn.role:
            out[-1] = Turn(turn.role, f"{out[-1].text}\n\n{text}")
        else:
            out.append(Turn(turn.role, text))
    return out
