"""Webhook updates that reach a standby are handed to the leader over the leader's slot socket.

During a hand-over both slots accept on the port, so Telegram's POST may land on the standby. Rather than
refuse it (Telegram would retry, seconds later), the standby passes it to the leader named in the lease file
and answers with the leader's status: the update is taken once, by the leader, in the order it arrived.
Without a reachable leader (none yet, or it is stepping down) the answer is a 503 and Telegram retries.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from bot.lease import LeaderLease

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-MarketingBot-Forwarded"  # a forwarded update is never forwarded again
FORWARD_TIMEOUT_SECONDS = 5.0


async def forward_to_leader(
    lease: LeaderLease, path: str, body: bytes, headers: dict[str, str], own_socket: Path | None
) -> int | None:
    """POSTs the update to the leader's slot socket; its HTTP status, or None when no leader is reachable."""
    holder = lease.read_holder()
    target = str(holder.get("socket") or "")
    if not target or (own_socket is not None and Path(target) == own_socket):
        return None  # no leader named (none yet, or it just released), or the name is our own socket
    transport = httpx.AsyncHTTPTransport(uds=target)
    # trust_env=False: a proxy from the environment must never see a local hand-over.
    async with httpx.AsyncClient(transport=transport, timeout=FORWARD_TIMEOUT_SECONDS, trust_env=False) as client:
        try:
            response = await client.post(
                f"http://leader{path}", content=body, headers={**headers, FORWARDED_HEADER: "1"}
            )
        except httpx.HTTPError as exc:
            log.debug("webhook update not handed to the leader (%s): %s", target, type(exc).__name__)
            return None
    log.info("webhook update handed to the leader (slot %s): %d", holder.get("slot") or "?", response.status_code)
    return response.status_code
