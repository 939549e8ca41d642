"""The Mini App's static files: packaged, self-contained, and compatible with the strict CSP."""

from __future__ import annotations

import re
from importlib import resources

import pytest

STATIC = resources.files("bot.web").joinpath("static")
PAGES = ["index.html", "staff.html"]


def test_every_file_a_page_references_is_packaged() -> None:
    """Each local script and stylesheet named by the pages exists in the package's static dir."""
    for page in PAGES:
        html = STATIC.joinpath(page).read_text(encoding="utf-8")
        refs = re.findall(r'(?:src|href)="static/([^"]+)"', html)
        assert refs, page
        for ref in refs:
            assert STATIC.joinpath(ref).is_file(), f"{page} → {ref}"


def test_telegram_sdk_is_vendored_with_its_license() -> None:
    """The Telegram WebApp SDK ships with the app (no CDN), together with its MIT licence."""
    sdk = STATIC.joinpath("vendor/telegram-web-app.js").read_text(encoding="utf-8")
    assert "window.Telegram.WebApp = WebApp" in sdk
    licence = STATIC.joinpath("vendor/LICENSE.twa-dev-sdk").read_text(encoding="utf-8")
    assert licence.startswith("MIT License")


@pytest.mark.parametrize("page", PAGES)
def test_pages_need_no_inline_code_or_remote_assets(page: str) -> None:
    """No inline scripts, style attributes, event-handler attributes or remote URLs: CSP stays 'self'."""
    html = STATIC.joinpath(page).read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)


def test_scripts_load_nothing_remote() -> None:
    """The page's own modules fetch only relative URLs (works offline and under a path prefix)."""
    for name in ("app.js", "staff.js"):
        js = STATIC.joinpath(name).read_text(encoding="utf-8")
        assert not re.search(r"fetch\(\s*['\"`](?:https?:)?//", js), name
        assert not re.search(r"fetch\(\s*['\"`]/", js), name
        assert "innerHTML" not in js  # all user and sheet text goes through textContent
