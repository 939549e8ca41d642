"""Аналитика 360: the market analysis of an agency object, its summary text, PDF and demo data."""

from bot.analytics.analysis import (
    AnalysisError,
    HistogramBin,
    InvalidObjectData,
    ObjectNotFound,
    Recommendation,
    Report,
    TrendPoint,
    analyze,
    narrative_numbers_ok,
    narrative_prompt,
    render_summary,
    report_to_dict,
    usable_narrative,
)

__all__ = [
    "AnalysisError",
    "HistogramBin",
    "InvalidObjectData",
    "ObjectNotFound",
    "Recommendation",
    "Report",
    "TrendPoint",
    "analyze",
    "narrative_numbers_ok",
    "narrative_prompt",
    "render_summary",
    "report_to_dict",
    "usable_narrative",
]
