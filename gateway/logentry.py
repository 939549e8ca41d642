"""Where an entry of a conversation log starts: one rule for the bot (which parses and writes the log in
Обращения.текст_обращений) and the gateway (which trims an overflowing log into «Архив» at entry boundaries).

An entry starts on a line that opens with a time in brackets — `[2026-11-23 14:05]`, with or without
seconds, or `[23.11.2026 14:05]` as staff type it — or, without a time, with one of the three canonical
authors (`Пользователь:`, `ИИ:`, `Оператор:`). A line with a leading space never starts an entry (that
is how a message's own header-like lines are escaped).
"""

from __future__ import annotations

import re

STAMP = r"\d{4}-\d{1,2}-\d{1,2}[ T]\d{1,2}:\d{2}(?::\d{2})?|\d{1,2}\.\d{1,2}\.\d{4},?\s+\d{1,2}:\d{2}(?::\d{2})?"
STAMPED_HEADER = re.compile(rf"^\[\s*(?P<stamp>{STAMP})\s*\]\s*(?P<rest>.*)$")
UNSTAMPED_HEADER = re.compile(r"^(?P<author>Пользователь|ИИ|Оператор)\s*:\s?(?P<text>.*)$", re.IGNORECASE)


def is_entry_start(line: str) -> bool:
    """Whether this line (without its line break) starts a new entry."""
    line = line.rstrip()
    return bool(STAMPED_HEADER.match(line) or UNSTAMPED_HEADER.match(line))


def entry_starts(log: str) -> list[int]:
    """Offsets in `log` of the lines that start an entry, in order."""
    starts = []
    offset = 0
    for line in log.split("\n"):
        if is_entry_start(line.rstrip("\r")):
            starts.append(offset)
        offset += len(line) + 1
    return starts


def entry_stamps(log: str) -> list[str]:
    """The times of the timestamped entries in `log`, as written, in order."""
    stamps = []
    for line in log.split("\n"):
        m = STAMPED_HEADER.match(line.rstrip())
        if m:
            stamps.append(m.group("stamp").strip())
    return stamps
