"""POST /telegram/webhook: Telegram's updates, accepted only with the secret header (PTB's custom-webhook pattern)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

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
