"""Connection pools kept warm for the APIs a partner's turn waits on: Telegram and the model.

httpx keeps at most 20 idle connections, for 5 s. A partner who writes again after a pause of a few seconds
finds them all closed, and against the real APIs each new connection costs a TCP and TLS handshake, two or three
round trips, in front of the first draft or the reply; so idle connections are kept for half a minute (under
the usual server-side keep-alive timeouts). How many are kept depends on the API: every answer streams on a
connection of its own, so the model's pool keeps a burst's worth; Telegram calls are paced (30 a second) and
short, so few run at once, and each idle connection costs a check on every call (httpcore looks at each one),
so its pool keeps httpx's 20. A connection the server closed meanwhile is seen before reuse (httpcore checks
that an idle socket has not become readable) and replaced.
"""

from __future__ import annotations

import httpx

KEEPALIVE_SECONDS = 30.0
MODEL_IDLE = 64  # answers streaming at once in a burst of partners
TELEGRAM_IDLE = 20  # httpx's default: paced calls rarely need more at once


def warm_limits(max_connections: int, idle: int) -> httpx.Limits:
    """Pool limits for a client on a partner's path: `max_connections` in flight at most, `idle` of them kept."""
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=min(max_connections, idle),
        keepalive_expiry=KEEPALIVE_SECONDS,
    )
