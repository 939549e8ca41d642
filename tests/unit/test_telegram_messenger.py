"""Splitting long texts for Telegram (limits counted in UTF-16 units, as Telegram counts them)."""

from __future__ import annotations

from bot.services.message_parts import MAX_MESSAGE_LENGTH, split_message, utf16_len


def test_short_text_is_one_piece() -> None:
    """A text within the limit is sent as is (trimmed); an empty one is not sent at all."""
    assert split_message("  привет  ") == ["привет"]
    assert split_message("   ") == []


def test_long_text_splits_at_paragraphs_and_loses_nothing() -> None:
    """A 3-paragraph text over the limit splits at paragraph breaks, every piece within the limit."""
    paragraphs = ["а" * 3000, "б" * 3000, "в" * 3000]
    pieces = split_message("\n\n".join(paragraphs))
    assert pieces == paragraphs
    assert all(utf16_len(p) <= MAX_MESSAGE_LENGTH for p in pieces)


def test_emoji_count_twice() -> None:
    """Characters outside the BMP count as two units, so 3000 emoji need two messages."""
    text = "🏠" * 3000
    pieces = split_message(text)
    assert len(pieces) == 2 and "".join(pieces) == text
    assert all(utf16_len(p) <= MAX_MESSAGE_LENGTH for p in pieces)


def test_text_without_spaces_is_cut_hard() -> None:
    """One endless word is cut at the limit rather than sent over it."""
    pieces = split_message("x" * 10_000)
    assert [len(p) for p in pieces] == [4096, 4096, 1808]


def test_words_are_not_broken_when_spaces_exist() -> None:
    """With spaces available, pieces end at a word boundary."""
    text = " ".join(["слово"] * 2000)
    pieces = split_message(text)
    assert all(p.endswith("слово") for p in pieces)
    assert " ".join(pieces).split() == text.split()
