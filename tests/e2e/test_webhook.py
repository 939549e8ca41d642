"""Webhook mode in the real process: Telegram POSTs updates to /telegram/webhook with the secret header."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from tests.fakes.telegram_server import FakeTelegramServer
from tests.local_stack import LocalStack

DEMO_ID = 100001


async def test_updates_arrive_by_webhook_and_forged_posts_are_refused(
    start_stack: Callable[..., LocalStack], telegram_server: FakeTelegramServer
) -> None:
    """With WEBHOOK_URL the bot registers the webhook with a secret, answers updates Telegram POSTs, and
    refuses a POST without the secret (401); getUpdates is never used."""
    from tests.local_stack import free_port

    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram/webhook"
    stack = start_stack(
        WEB_PORT=str(port),
        TELEGRAM_BOT_TOKEN=telegram_server.token,
        TELEGRAM_API_BASE_URL=telegram_server.api_base_url,
        WEBHOOK_URL=hook,
    )
    assert stack.wait_healthy()["telegram"] == "on"
    assert telegram_server.webhook_url == hook
    telegram_server.user_sends_text(DEMO_ID, "Какая комиссия партнёра?")
    reply = await telegram_server.wait_for_sent(chat_id=DEMO_ID, method="sendMessage", timeout=15.0)
    assert "комисси" in reply.text.lower()
    assert telegram_server.call_count("getUpdates") == 0

    forged = urllib.request.Request(
        hook, data=json.dumps({"update_id": 1}).encode(), headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=5)  # noqa: ASYNC210 - a one-off probe of our own server
    assert refused.value.code == 401
    assert stack.stop() == 0
