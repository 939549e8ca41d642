"""Headless Chromium for the browser e2e tests (Debian's `chromium`, driven by playwright): where it is, how it
is launched, and where screenshots go. The fixtures built on it are in tests/e2e/conftest.py.

Without chromium the browser tests skip — unless CI is set, where a missing browser is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: ViewportSize = {"width": 390, "height": 760}
TIMEOUT_MS = 15_000
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def require_chromium() -> None:
    """Skip the test when chromium is missing; under CI, fail it."""
    if CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK):
        return
    message = f"{CHROMIUM} not found: apt-get install chromium"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


async def shoot(page: Any, artifacts: Path, name: str, *, docs: bool = False) -> Path:
    """Save a screenshot as an artifact (and, for the README's pictures, into docs/img when
    UPDATE_DOCS_SCREENSHOTS=1)."""
    path = artifacts / name
    await page.screenshot(path=str(path))
    if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        (DOCS_IMG / name).write_bytes(path.read_bytes())
    return path
