"""Fixtures of the browser e2e tests: a headless Chromium context and the screenshot directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.browser_support import CHROMIUM, CHROMIUM_ARGS, PHONE, TIMEOUT_MS, require_chromium

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: BROWSER_ARTIFACTS_DIR, or a pytest tmp dir."""
    configured = os.environ.get("BROWSER_ARTIFACTS_DIR")
    path = Path(configured) if configured else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def browser_context() -> AsyncIterator[BrowserContext]:
    """A headless Chromium context sized like a phone (Russian locale); skips without chromium unless CI."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = await chromium.new_context(viewport=PHONE, device_scale_factor=2, locale="ru-RU")
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            await context.close()
            await chromium.close()
