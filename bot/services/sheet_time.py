"""The agency's time conventions in the sheets: one zone, one way to write a date-time.

Staff read every time the bot writes, so times go into the sheet in Moscow time as `2026-11-24 15:10:05`.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

MOSCOW = ZoneInfo("Europe/Moscow")  # the agency's zone


def stamp(moment: datetime, tz: tzinfo = MOSCOW) -> str:
    """How the bot writes a date-time into the sheets: `2026-11-24 15:10:05` in `tz` (staff's zone)."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
