"""Connection pools kept warm for the APIs a partner's turn waits on: Telegram and the model.

httpx keeps idle connections for 5 s (aiohttp for 15 s). A partner who writes again after a pause of a few
seconds would find them closed, and against the real APIs each new connection costs a TCP and TLS handshake, two
or three round trips, in front of the first draft or the reply; so idle connections are kept for half a minute
(under the usual server-side keep-alive timeouts). The model's session (aiohttp, bot/ai/gemini.py) keeps every
connection a burst opened. Telegram's pool (httpx, through python-telegram-bot) keeps httpx's 20: its calls are
paced (30 a second) and short, so few run at once, and httpcore checks each idle connection on every call. A
connection the server closed meanwhile is seen before reuse and replaced.
"""

from __future__ import annotations

import httpx

KEEPALIVE_SECONDS = 30.0
TELEGRAM_IDLE = 20  # httpx's default: paced calls rarely need more at once


def warm_limits(max_connections: int, idle: int) -> httpx.Limits:
    """httpx pool limits for a client on a partner's path: `max_connections` in flight at most, `idle` kept."""
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=min(max_connections, idle),
        keepalive_expiry=KEEPALIVE_SECONDS,
    )
