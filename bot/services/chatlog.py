"""The conversation log in Обращения.текст_обращений: parse it (tolerantly) and format new entries.

One entry per block, the first line carrying the time and the author:

    [2026-11-23 14:05] Пользователь: сколько я получу за сделку?
    [2026-11-23 14:05] ИИ: Партнёр получает 50% от комиссии агентства…
    вторая строка того же ответа
    [2026-11-23 15:10] Оператор: Добрый день! …

Staff edit this cell by hand, so the parser accepts what people type: seconds or none, `23.11.2026 14:05`,
author synonyms (Менеджер, Бот, Партнёр…), any case, a missing time for the three canonical authors, text
before the first entry. Lines of a message that would look like an entry header are written with one
leading space, so nobody (a partner pasting a log, a model echoing one) can forge an entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum

from bot.ai.base import Turn
from gateway import STAMPED_HEADER, UNSTAMPED_HEADER, is_entry_start


class Author(StrEnum):
    """The canonical authors written by the bot."""

    USER = "Пользователь"
    AI = "ИИ"
    OPERATOR = "Оператор"


_SYNONYMS = {
    "пользователь": Author.USER,
    "партнёр": Author.USER,
    "партнер": Author.USER,
    "клиент": Author.USER,
    "user": Author.USER,
    "ии": Author.AI,
    "ai": Author.AI,
    "бот": Author.AI,
    "ассистент": Author.AI,
    "assistant": Author.AI,
    "bot": Author.AI,
    "оператор": Author.OPERATOR,
    "менеджер": Author.OPERATOR,
    "сотрудник": Author.OPERATOR,
    "operator": Author.OPERATOR,
}

_AUTHOR = re.compile(r"^(?P<author>[^:\n\[\]]{1,40}?)\s*:\s?(?P<text>.*)$", re.DOTALL)
_NAMED = re.compile(r"\s*\([^()]*\)$")
STAMP_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True)
class ChatEntry:
    """One entry of the log. `author` is canonical for known authors, else as typed ('' for untagged text)."""

    at: datetime | None
    author: str
    text: str

    @property
    def known_author(self) -> Author | None:
        """The canonical author, when the entry has one."""
        try:
            return Author(self.author)
        except ValueError:
            return None


def _is_header(line: str) -> bool:
    return is_entry_start(line)


def format_entry(at: datetime, author: Author | str, text: str, *, name: str | None = None) -> str:
    """One entry block: `[YYYY-MM-DD HH:MM] Author: text`, or `Author (name): text` when the person is named
    (an operator answering from Telegram); header-like continuation lines escaped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    escaped = [lines[0]] + [f" {line}" if _is_header(line) or _is_escaped(line) else line for line in lines[1:]]
    label = f"{author} ({safe_name(name)})" if name and safe_name(name) else str(author)
    return f"[{at.strftime(STAMP_FORMAT)}] {label}: " + "\n".join(escaped)


def safe_name(name: str) -> str:
    """A person's name fit for an entry header: no characters that end a header, at most 24 characters."""
    cleaned = " ".join("".join(" " if ch in ":[]()\n\r" else ch for ch in name).split())
    return cleaned[:24].strip()


def _is_escaped(line: str) -> bool:
    # One or more spaces before a header: escaping adds one space, parsing removes one, so any line round-trips.
    stripped = line.lstrip(" ")
    return stripped != line and _is_header(stripped)


def parse(log: str, tz: tzinfo | None = None) -> list[ChatEntry]:
    """The entries of a log, oldest first; continuation lines belong to the entry above them."""
    entries: list[tuple[datetime | None, str, list[str]]] = []
    for raw in log.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        header = _parse_header(line, tz)
        if header is not None:
            entries.append((header[0], header[1], [header[2]]))
            continue
        if _is_escaped(line):
            line = line[1:]
        if not entries:
            if not line.strip():
                continue
            entries.append((None, "", []))
        entries[-1][2].append(line)
    out = []
    for at, author, lines in entries:
        text = "\n".join(lines).strip()
        if text or author:
            out.append(ChatEntry(at, author, text))
    return out


def _parse_header(line: str, tz: tzinfo | None) -> tuple[datetime | None, str, str] | None:
    m = STAMPED_HEADER.match(line)
    if m:
        at = parse_stamp(m.group("stamp"), tz)
        rest = m.group("rest")
        a = _AUTHOR.match(rest)
        if a is None:
            return at, "", rest.strip()
        label = a.group("author").strip()
        # `Оператор (Анна)`: the named person is one of the canonical authors.
        author = _SYNONYMS.get(label.casefold()) or _SYNONYMS.get(_NAMED.sub("", label).casefold())
        return at, str(author) if author else label, a.group("text").strip()
    u = UNSTAMPED_HEADER.match(line)
    if u:
        return None, str(_SYNONYMS[u.group("author").casefold()]), u.group("text").strip()
    return None


def parse_stamp(text: str, tz: tzinfo | None = None) -> datetime | None:
    """A log time (`2026-11-23 14:05[:ss]` or `23.11.2026 14:05`) in `tz`, or None when malformed."""
    text = " ".join(text.replace("T", " ").replace(",", " ").split())
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S"):
        try:
            at = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return at.replace(tzinfo=tz) if tz is not None else at
    return None


def to_turns(entries: list[ChatEntry], max_turns: int = 20, max_chars: int = 12_000) -> list[Turn]:
    """The newest entries as model turns (`as_turns`), at most `max_turns` entries and `max_chars` characters,
    dropping the oldest first."""
    return trim_turns(as_turns(entries), max_turns, max_chars)


def as_turns(entries: list[ChatEntry]) -> list[Turn]:
    """Entries as model turns: partner → user, assistant → model, operator → model (labelled). Entries by
    unknown authors (staff notes) are left out."""
    turns: list[Turn] = []
    for entry in entries:
        author = entry.known_author
        if author is None or not entry.text:
            continue
        if author is Author.USER:
            turns.append(Turn("user", entry.text))
        elif author is Author.AI:
            turns.append(Turn("model", entry.text))
        else:
            turns.append(Turn("model", f"Оператор: {entry.text}"))
    return turns


def trim_turns(turns: list[Turn], max_turns: int = 20, max_chars: int = 12_000) -> list[Turn]:
    """The newest `max_turns` turns holding at most `max_chars` characters, dropping the oldest first.
    Trimming is stable under appending: trim(trim(a) + b) == trim(a + b)."""
    turns = turns[-max_turns:] if max_turns > 0 else []
    total = 0
    for i in range(len(turns) - 1, -1, -1):
        total += len(turns[i].text)
        if total > max_chars:
            return turns[i + 1 :]
    return turns


def render(entries: list[ChatEntry]) -> str:
    """Entries as a readable block (staff notifications): `[time] Author: text`."""
    lines = []
    for e in entries:
        stamp = f"[{e.at.strftime(STAMP_FORMAT)}] " if e.at else ""
        who = f"{e.author}: " if e.author else ""
        lines.append(f"{stamp}{who}{e.text}")
    return "\n".join(lines)
