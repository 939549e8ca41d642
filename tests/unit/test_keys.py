"""Key normalization: what staff type or Google formats as a number still matches its key."""

from __future__ import annotations

import pytest

from gateway import normalize_key


@pytest.mark.parametrize(
    "typed",
    [
        "100001",
        " 100001 ",
        "100 001",
        "100\u00a0001",
        "100\u202f001",
        "100001.0",
        "100001,0",
        "1.00001E+5",
        "1,00001e5",
    ],
)
def test_every_spelling_of_a_whole_number_is_its_digits(typed: str) -> None:
    """Spaces (incl. no-break), a zero fraction and scientific notation all normalize to the plain digits."""
    assert normalize_key(typed) == "100001"


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("DEMO-001", "DEMO-001"),
        ("  job-7 ", "job-7"),
        ("12.5", "12.5"),
        ("1.5E+0", "1.5E+0"),
        ("", ""),
        ("abc 1", "abc 1"),
    ],
)
def test_non_integers_and_codes_are_only_trimmed(typed: str, key: str) -> None:
    """Codes, fractions and text keep their spelling (trimmed): nothing else is folded together."""
    assert normalize_key(typed) == key
