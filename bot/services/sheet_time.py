"""The agency's time conventions in the sheets: one zone, one way to write a date-time, one way to read it back.

Staff read every time the bot writes, so times go into the sheet in Moscow time as `2026-11-24 15:10:05`;
what staff or a worker wrote (ISO with an offset, `24.11.2026 15:10`) is read back with `parse_stamp`.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

MOSCOW = ZoneInfo("Europe/Moscow")  # the agency's zone
_STAMP_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{1,2}):(\d{2})(?::(\d{2}))?")
_STAMP_RU = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})[ ,]+(\d{1,2}):(\d{2})(?::(\d{2}))?")
_OFFSET = re.compile(r"^(?:\.\d+)?([+-]\d{2}:?\d{2}|Z)")


def stamp(moment: datetime, tz: tzinfo = MOSCOW) -> str:
    """How the bot writes a date-time into the sheets: `2026-11-24 15:10:05` in `tz` (staff's zone)."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def parse_stamp(text: str, zone: tzinfo | None) -> datetime | None:
    """A time read back from the sheet (ISO or `24.11.2026 15:10`, anything after it ignored), or None.

    A stamp without an offset is taken to be in `zone` (the zone the bot writes in).
    """
    s = text.strip()
    m = _STAMP_ISO.match(s)
    if m:
        y, mo, d, h, mi, sec = m.groups()
    else:
        m = _STAMP_RU.match(s)
        if not m:
            return None
        d, mo, y, h, mi, sec = m.groups()
    try:
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec or 0))
    except ValueError:
        return None
    offset = _OFFSET.match(s[m.end() :])
    if offset:
        raw = offset.group(1)
        try:
            return datetime.fromisoformat(moment.isoformat() + ("+00:00" if raw == "Z" else raw))
        except ValueError:
            return None
    return moment.replace(tzinfo=zone)
