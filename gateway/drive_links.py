"""Google Drive file URLs (what Apps Script writes into «Очередь».pdf_url): the file id, and the name of the bot's
local copy of that report."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qs, urlsplit

_FILE_ID = re.compile(r"[A-Za-z0-9_-]{10,128}")
_DRIVE_HOSTS = frozenset({"drive.google.com", "docs.google.com"})


def valid_drive_file_id(file_id: str) -> bool:
    """Whether a string has the shape of a Drive file id (safe in a URL path and a file name)."""
    return bool(_FILE_ID.fullmatch(file_id))


def drive_file_id(url: str) -> str | None:
    """The file id in an https Google Drive URL (`/file/d/<id>/…`, `?id=<id>`), else None."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return None
    if parts.scheme != "https" or host not in _DRIVE_HOSTS:
        return None
    m = re.search(r"/d/([^/?#]+)", parts.path)
    candidate = m.group(1) if m else (parse_qs(parts.query).get("id") or [""])[0]
    return candidate if valid_drive_file_id(candidate) else None


def drive_report_stem(file_id: str) -> str:
    """The bot's local copy of a Drive report is `<stem>.pdf` in the reports folder (a name /reports serves)."""
    stem = f"drive-{file_id}"
    return stem if len(stem) <= 64 else "drive-" + hashlib.sha256(file_id.encode()).hexdigest()[:40]
