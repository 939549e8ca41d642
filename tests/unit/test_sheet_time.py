"""The sheets' time conventions: how the bot writes a time and reads back what staff and workers wrote."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.services.sheet_time import parse_stamp
from tests.unit.analytics_support import MSK


def test_parse_stamp_reads_what_staff_and_workers_write() -> None:
    """ISO, ISO with an offset, Russian dates and a trailing claim token all parse; junk does not."""
    expected = datetime(2026, 11, 24, 15, 10, 5, tzinfo=MSK)
    assert parse_stamp("2026-11-24 15:10:05", MSK) == expected
    assert parse_stamp("2026-11-24 15:10:05 #abc123", MSK) == expected
    assert parse_stamp("2026-11-24T12:10:05Z", MSK) == expected
    assert parse_stamp("2026-11-24T15:10:05.123+03:00", MSK) == expected.replace(microsecond=0)
    assert parse_stamp("24.11.2026 15:10:05", MSK) == expected
    assert parse_stamp("24.11.2026 15:10", UTC) == datetime(2026, 11, 24, 15, 10, tzinfo=UTC)
    assert parse_stamp("вчера", MSK) is None
    assert parse_stamp("2026-02-30 10:00", MSK) is None
