"""The HTTP sessions for the APIs a partner's turn waits on (Telegram, the model), with connections kept warm.

aiohttp keeps idle connections for 15 s by default (httpx for 5 s). A partner who writes again after a pause
would find them closed, and against the real APIs each new connection costs a TCP and TLS handshake, two or
three round trips, in front of the first draft or the reply. Half a minute stays under the usual server-side
keep-alive timeouts; a connection the server closed meanwhile is noticed and replaced. HTTPS_PROXY is honoured
(trust_env), as with httpx.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

KEEPALIVE_SECONDS = 30.0


def api_session(connections: int, *, headers: Mapping[str, str] | None = None) -> aiohttp.ClientSession:
    """A session with at most `connections` at once, idle ones kept KEEPALIVE_SECONDS (needs a running loop)."""
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=KEEPALIVE_SECONDS)
    return aiohttp.ClientSession(connector=connector, trust_env=True, headers=headers)
