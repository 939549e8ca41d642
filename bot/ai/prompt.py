"""The system prompt file, reloaded when it changes so an edit is used on the next message without a restart.

The file may hold placeholders `{{NAME}}` for facts that are settings, not prose (`{{WORKING_HOURS}}`: the
operators' hours from WORKING_HOURS); they are filled every time the file is (re)loaded, so the prompt never
contradicts the configuration.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SECTION = re.compile(r"^§\s*(\d+)\.?\s*(.*)$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Z_]+)\s*\}\}")
#: What the placeholders say when the composition root gives nothing else (the settings' defaults).
DEFAULT_VALUES: Mapping[str, str] = {"WORKING_HOURS": "с 09:00 до 20:00 по московскому времени"}
_TEMPLATE = re.compile(r"^\s*Шаблон(?: ответа)?:\s*(.+?)\s*$", re.MULTILINE)


class PromptError(Exception):
    """The prompt file cannot be read (and no earlier version was loaded)."""


@dataclass(frozen=True)
class Script:
    """One numbered script (§N) of the prompt: its title, body and the canned reply it offers, if any."""

    number: int
    title: str
    body: str
    template: str


class SystemPrompt:
    """A prompt file checked for changes (mtime and size) on every access, re-read when it changed."""

    def __init__(self, path: str | Path, values: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self._values = {**DEFAULT_VALUES, **(values or {})}
        self._signature: tuple[int, int] | None = None
        self._text = ""
        self._load()
        if not self._text:
            raise PromptError(f"the system prompt {self.path} is empty")

    @property
    def text(self) -> str:
        """The current prompt (the last good version if the file became unreadable)."""
        self._load()
        return self._text

    @property
    def version(self) -> str:
        """A short hash of the current text, for logs and /stats."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:8]

    def scripts(self) -> list[Script]:
        """The numbered scripts of the current prompt."""
        return parse_scripts(self.text)

    def _load(self) -> None:
        try:
            st = self.path.stat()
            signature = (st.st_mtime_ns, st.st_size)
            if signature == self._signature:
                return
            text = self._fill(self.path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            if self._signature is None:
                raise PromptError(f"cannot read the system prompt {self.path}: {exc}") from exc
            log.error("cannot re-read the system prompt %s (%s); keeping version %s", self.path, exc, self._hash())
            return
        if not text and self._text:
            log.error("the system prompt %s is now empty; keeping version %s", self.path, self._hash())
            self._signature = signature
            return
        changed = self._signature is not None
        self._text, self._signature = text, signature
        if changed:
            log.info("system prompt reloaded, version %s", self._hash())

    def _fill(self, text: str) -> str:
        def value(m: re.Match[str]) -> str:
            if m.group(1) not in self._values:
                log.error("the system prompt names an unknown placeholder %s; left as it is", m.group(0))
                return m.group(0)
            return self._values[m.group(1)]

        return _PLACEHOLDER.sub(value, text)

    def _hash(self) -> str:
        return hashlib.sha256(self._text.encode()).hexdigest()[:8]


def parse_scripts(text: str) -> list[Script]:
    """Split a prompt into its §N sections; each keeps its `Шаблон:` line as the canned reply."""
    marks = list(_SECTION.finditer(text))
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[m.end() : end].strip()
        t = _TEMPLATE.search(body)
        template = t.group(1).strip().strip('«»"') if t else ""
        out.append(Script(int(m.group(1)), m.group(2).strip(), body, template))
    return out
