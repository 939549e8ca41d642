"""The shared analysis vectors (gas/test/vectors) replayed through the Python twin."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bot.analytics.analysis import (
    SUMMARY_MAX_CHARS,
    AnalysisError,
    analyze,
    narrative_numbers_ok,
    narrative_prompt,
    render_summary,
    report_to_dict,
)

VECTORS_DIR = Path(__file__).resolve().parents[2] / "gas" / "test" / "vectors"
VECTORS: list[dict[str, Any]] = [
    json.loads(path.read_text(encoding="utf-8")) for path in sorted(VECTORS_DIR.glob("*.json"))
]


def test_vector_set_covers_the_edge_cases() -> None:
    """The vectors include every edge case the issue names (and the hand-checked one)."""
    names = {v["name"] for v in VECTORS}
    required = {
        "no_comparables",
        "one_comparable",
        "object_missing",
        "zero_area",
        "absurd_price_low",
        "absurd_price_high",
        "listings_without_dates",
        "widening_area30",
        "widening_city",
        "hand_small",
    }
    assert required <= names
    assert len(VECTORS) >= 8


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    """The Python twin reproduces the vector's figures, summary, prompt, error and narrative verdicts."""
    today = date.fromisoformat(vector["today"])
    expected = vector["expected"]
    if "error" in expected:
        with pytest.raises(AnalysisError) as caught:
            analyze(vector["object_code"], vector["objects"], vector["market"], today)
        error = caught.value
        assert (error.kind, error.field, error.message) == (
            expected["error"]["kind"],
            expected["error"]["field"],
            expected["error"]["message"],
        )
        return
    report = analyze(vector["object_code"], vector["objects"], vector["market"], today)
    # Through JSON, as the JS twin sees it: tuples become lists, 12.0 compares equal to 12.
    assert json.loads(json.dumps(report_to_dict(report))) == expected["report"]
    summary = render_summary(report)
    assert summary == expected["summary"]
    assert len(summary) < SUMMARY_MAX_CHARS
    assert narrative_prompt(report) == expected["prompt"]
    for item in vector["narratives"]:
        assert narrative_numbers_ok(item["text"], report) is item["ok"], item["text"]
