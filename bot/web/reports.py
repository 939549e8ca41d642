"""Report PDFs: where they are on disk and expiring signed links to them.

A PDF is opened by navigation (a link, or Telegram's openLink in an outside browser), which cannot
carry the `Authorization: tma …` header. So `/reports/{id}.pdf` accepts either that header (the owner
checked through the analytics service) or a link signed for that one report: HMAC-SHA256 over
"id\\nexpiry" with a key derived from the bot token under its own label, valid for `ttl`. The API hands
such links only to the report's owner, so a link is as private as the chat it is shared in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

DEFAULT_LINK_TTL = 24 * 3600
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# ASCII digits only (str.isdigit() accepts «²» and other digits int() refuses), and a sane length.
_EXPIRY = re.compile(r"[0-9]{1,12}")


def valid_job_id(job_id: str) -> bool:
    """Whether an id is safe to use as a file name (no path tricks)."""
    return bool(_JOB_ID.fullmatch(job_id))


def report_stem(job_id: str) -> str:
    """The PDF's file name without `.pdf`, as the worker names it (a stable hash for unsafe ids)."""
    return job_id if valid_job_id(job_id) else uuid.uuid5(uuid.NAMESPACE_URL, job_id).hex


class ReportLinks:
    """Signs and checks report links; the clock (seconds) is injectable for tests."""

    def __init__(
        self,
        bot_token: str,
        *,
        ttl: int = DEFAULT_LINK_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = hmac.digest(b"MarketingBotReportLink", bot_token.encode(), hashlib.sha256)
        self._ttl = ttl
        self._clock = clock

    def _signature(self, stem: str, expires: int) -> str:
        return hmac.new(self._key, f"{stem}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def query(self, stem: str) -> str:
        """The query string (`exp=…&sig=…`) that opens this report until the link expires."""
        expires = int(self._clock()) + self._ttl
        return f"exp={expires}&sig={self._signature(stem, expires)}"

    def check(self, stem: str, exp: str | None, sig: str | None) -> bool:
        """Whether `exp`/`sig` are a valid, unexpired signature for this report."""
        if not exp or not sig or not _EXPIRY.fullmatch(exp) or not sig.isascii():
            return False
        expires = int(exp)
        if expires < self._clock():
            return False
        return hmac.compare_digest(self._signature(stem, expires), sig)


def report_path(reports_dir: Path, stem: str) -> Path | None:
    """The PDF `<stem>.pdf` when it exists on disk (None for unsafe names)."""
    if not valid_job_id(stem):
        return None
    path = reports_dir / f"{stem}.pdf"
    return path if path.is_file() else None
