"""How a long text is cut into messages: Telegram's limits, counted in UTF-16 units as Telegram counts.

A rule the services apply before they hand parts to a Messenger (promotions, replies, staff replies), so it
lives here and not in the Telegram adapter: services never import an adapter.
"""

from __future__ import annotations

MAX_MESSAGE_LENGTH = 4096  # UTF-16 code units, as Telegram counts
MAX_CAPTION_LENGTH = 1024


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (characters outside the BMP, e.g. emoji, count twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Pieces of at most `limit` UTF-16 units, cut at a paragraph, line, sentence or word boundary if possible."""
    text = text.strip()
    if not text:
        return []
    pieces: list[str] = []
    while utf16_len(text) > limit:
        head = _fit(text, limit)
        cut = _boundary(head)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def _fit(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-16 units."""
    lo, hi = 0, min(len(text), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if utf16_len(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def _boundary(head: str) -> int:
    # Prefer the last paragraph break, then line break, sentence end, space — in the second half of the piece.
    floor = len(head) // 2
    for sep in ("\n\n", "\n", ". ", " "):
        i = head.rfind(sep)
        if i >= floor:
            return i + len(sep)
    return len(head)
