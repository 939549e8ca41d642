"""The HTTP sessions for the APIs a partner's turn waits on (Telegram, the model), with connections kept warm.

aiohttp keeps idle connections for 15 s by default (httpx for 5 s). A partner who writes again after a pause
would find them closed, and against the real APIs each new connection costs a TCP and TLS handshake, two or
three round trips, in front of the first draft or the reply. Half a minute stays under the usual server-side
keep-alive timeouts; a connection the server closed meanwhile is noticed and replaced.

An outbound proxy from the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) is honoured, decided once per
session for the API it talks to. aiohttp's own `trust_env` decides it again on every request, in a worker thread,
and reads ~/.netrc in another: two thread hops per call, which a burst of 50 partners queues on the default
executor's few threads (measured: +60 ms to the model's first token at p50).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

KEEPALIVE_SECONDS = 30.0


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (None: connect directly), as urllib reads it."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme) or None


def api_session(connections: int, url: str, *, headers: Mapping[str, str] | None = None) -> aiohttp.ClientSession:
    """A session for the API at `url`: at most `connections` at once, idle ones kept KEEPALIVE_SECONDS, through
    the environment's proxy for that API if it names one (needs a running loop)."""
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=KEEPALIVE_SECONDS)
    return aiohttp.ClientSession(connector=connector, proxy=env_proxy(url), headers=headers)
