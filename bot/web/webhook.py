"""POST /telegram/webhook: Telegram's updates, accepted only with the secret header (PTB's custom-webhook pattern)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.config import Settings
from bot.handoff import FORWARDED_HEADER, forward_to_leader
from bot.web.ports import HandOffGate

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/telegram/webhook"
HANDOFF_WAIT_SECONDS = 3.0  # how long a standby holds a webhook update while no leader answers
HANDOFF_RETRY_SECONDS = 0.05

Deliver = Callable[[dict[str, Any], Mapping[str, str]], Awaitable[int | None]]


class RetryLater(Exception):
    """Raised by `deliver` when this process cannot take the update now (no leader during a hand-over): the
    answer is 503 with Retry-After, so Telegram delivers it again."""


def webhook_endpoint(secret: str, deliver: Deliver) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint handing verified update objects (and the request's headers) to `deliver`, which
    answers with a status (None: 200), raises ValueError for an update it cannot use (400) or RetryLater (503);
    anything else is a 4xx."""
    expected = secret.encode()

    async def telegram_webhook(request: Request) -> Response:
        # Bytes, not str: a header is any latin-1 text, and compare_digest refuses non-ASCII str.
        given = request.headers.get(SECRET_HEADER, "").encode("latin-1", "replace")
        if not hmac.compare_digest(given, expected):
            return JSONResponse({"error": {"code": "unauthorized", "message": "bad secret"}}, status_code=401)
        try:
            update = json.loads(await request.body())
        except (ValueError, RecursionError):
            update = None
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            return JSONResponse({"error": {"code": "bad_request", "message": "not an update"}}, status_code=400)
        try:
            status = await deliver(update, request.headers)
        except ValueError:  # deliver's way of saying "not an update I can use"
            return JSONResponse({"error": {"code": "bad_request", "message": "not an update"}}, status_code=400)
        except RetryLater as exc:
            return JSONResponse(
                {"error": {"code": "not_leader", "message": str(exc)}}, status_code=503, headers={"Retry-After": "1"}
            )
        return Response(status_code=status or 200)

    return telegram_webhook


def webhook_secret(settings: Settings) -> str:
    """The secret Telegram echoes in X-Telegram-Bot-Api-Secret-Token: derived from the bot token, so the
    old and the new release of a blue-green switch accept the same webhook."""
    token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
    return hashlib.sha256(f"marketingbot-webhook:{token}".encode()).hexdigest()[:48]


def leader_deliver(
    gate: HandOffGate,
    parse: Callable[[dict[str, Any]], Any],
    journal: Callable[[Any], Awaitable[None]],
    *,
    secret: str,
    slot_socket: Path | None,
) -> Deliver:
    """`deliver` for webhook_endpoint: the leader journals the update (`parse` raises ValueError for an
    unusable one, returns None for one to ignore); a standby hands it to the leader or asks to retry."""

    async def deliver(data: dict[str, Any], headers: Mapping[str, str]) -> int | None:
        update = parse(data)
        if update is None:
            return None
        # Only the leader takes updates, and only until it steps down (updates_open closes first).
        leadership = gate.leadership
        deadline = time.monotonic() + HANDOFF_WAIT_SECONDS
        while True:
            if leadership is None or (leadership.role in ("taking-over", "leader") and gate.updates_open):
                # Journaled before the 200: an update Telegram considers delivered is never lost.
                await journal(update)
                return None
            if leadership.role != "standby" or headers.get(FORWARDED_HEADER):
                break  # stepping down (its shutdown must not wait on this), or already forwarded once
            # A standby hands the update to the leader; while none answers (the old one stepping down, the
            # new one taking over: a few hundred ms), it holds it, and takes it itself once it leads.
            status = await forward_to_leader(
                leadership.lease,
                WEBHOOK_PATH,
                json.dumps(data).encode(),
                {SECRET_HEADER: secret, "Content-Type": "application/json"},
                slot_socket,
            )
            if status is not None and status < 500:
                return status
            if time.monotonic() >= deadline or gate.phase != "running":
                break
            await asyncio.sleep(HANDOFF_RETRY_SECONDS)
        raise RetryLater("no leader: retry")  # Telegram delivers it again later

    return deliver
