"""Fixtures of the e2e tests: a headless Chromium context, the screenshot directory, a real local stack."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.browser_support import CHROMIUM, CHROMIUM_ARGS, PHONE, TIMEOUT_MS, require_chromium
from tests.local_stack import LocalStack, spawn_local_stack

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


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[Callable[..., LocalStack]]:
    """Start `marketingbot local` in an empty directory; whatever still runs at teardown is killed."""
    started: list[LocalStack] = []

    def start(**extra: str) -> LocalStack:
        workdir = tmp_path / f"run{len(started)}"
        workdir.mkdir()
        assert list(workdir.iterdir()) == []
        stack = spawn_local_stack(workdir, tmp_path / f"run{len(started)}.log", extra=extra)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.kill()
