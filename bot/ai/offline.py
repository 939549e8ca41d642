"""The offline responder: answers from the knowledge-base facts and the prompt's scripts, no model involved.

Used when AI_PROVIDER=offline (no key needed) and as the fallback when the configured provider fails.
It always says plainly that it is in offline mode, so nobody mistakes a canned answer for the assistant.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from bot.ai.base import Turn, split_fact
from bot.ai.prompt import Script, parse_scripts
from bot.ai.search import BM25Index, Tokenizer

OFFLINE_INTRO = "Сейчас я работаю в офлайн-режиме (без ИИ) и отвечаю по базе знаний агентства."
NO_ANSWER = (
    "Готового ответа на этот вопрос в базе знаний нет. Напишите «оператор» — сотрудник ответит здесь, в этом чате."
)
# A script must match at least this well to be used (BM25 score); weaker matches are noise.
MIN_SCRIPT_SCORE = 0.5


class OfflineResponder:
    """AIProvider that never calls a model: the best knowledge-base fact, else the best-matching script."""

    name = "offline"

    def __init__(self, *, max_related: int = 2) -> None:
        self._tokenize = Tokenizer()
        self._max_related = max_related
        self._scripts_key = ""
        self._scripts: list[Script] = []
        self._index = BM25Index([])

    async def generate(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> str:
        """An offline answer to `user_text` from `context` (already ranked, best first) and the scripts."""
        return f"{OFFLINE_INTRO}\n\n{self.answer_body(system, user_text, context)}"

    async def stream(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> AsyncIterator[str]:
        """No model writes anything here: the whole answer comes as one piece."""
        yield await self.generate(system, history, user_text, context)

    def answer_body(self, system: str, user_text: str, context: list[str]) -> str:
        """The answer without the offline-mode notice."""
        facts = [split_fact(c) for c in context if c.strip()]
        if facts:
            _, answer = facts[0]
            related = [q for q, _ in facts[1 : 1 + self._max_related] if q]
            if related:
                answer += "\n\nЕщё по теме можно спросить: " + "; ".join(f"«{q}»" for q in related) + "."
            return answer
        script = self._best_script(system, user_text)
        return script.template if script else NO_ANSWER

    def _best_script(self, system: str, user_text: str) -> Script | None:
        key = hashlib.sha256(system.encode()).hexdigest()
        if key != self._scripts_key:
            self._scripts = [s for s in parse_scripts(system) if s.template]
            self._index = BM25Index(
                [self._tokenize(f"{s.title} {s.title} {s.template} {s.body}") for s in self._scripts]
            )
            self._scripts_key = key
        query = self._tokenize(user_text)
        if not query:
            return None
        best = self._index.top(query, 1, MIN_SCRIPT_SCORE)
        return self._scripts[best[0][0]] if best else None
