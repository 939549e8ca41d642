"""The uvicorn server configuration with bounds against slow or greedy clients.

uvicorn bounds idle keep-alive connections, the size of an incomplete request head and the number of
concurrent connections/tasks, but not the time a client may take to send its request head (h11 has no such
timeout): a client sending one header line a second would hold a connection forever. `HeadTimeoutH11Protocol`
adds that deadline: from the first byte of a request head (or the connection's start) until the head is
complete; past it the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# A request head larger than this is refused by h11 (the Mini App's longest header is initData, ~1 KiB).
MAX_HEAD_BYTES = 32 * 1024


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Bounds for the web server (WEB_HEADER_TIMEOUT, WEB_KEEP_ALIVE_TIMEOUT, WEB_MAX_CONCURRENCY)."""

    header_timeout: float = 10.0
    keep_alive: float = 5.0
    max_concurrency: int = 500

    def __post_init__(self) -> None:
        if self.header_timeout <= 0 or self.keep_alive <= 0 or self.max_concurrency <= 0:
            raise ValueError("server limits must be positive")


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each request head, and a graceful stop that serves
    a request already on its way."""

    head_timeout: float = 10.0
    # How long a stopping server waits for the first request of a connection it has just accepted.
    fresh_grace: float = 2.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the first head's clock as the connection opens."""
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._served_any = False  # bytes of a request have arrived on this connection
        self._stopping = False
        self._arm_head_timer()

    def shutdown(self) -> None:
        """A graceful stop. uvicorn closes every connection that is between requests, which resets one the
        server has just accepted and whose first request is still on its way: on a listening socket shared by
        two slots during a hand-over, the client chose this process, so serve that one request (or give it up
        after `fresh_grace`) and close after the response."""
        self._stopping = True
        if self.cycle is None and not self._served_any and not self.transport.is_closing():
            self.loop.call_later(self.fresh_grace, self._give_up_if_silent)
            return
        if self.cycle is None and self._served_any:
            return  # a head is arriving: its cycle ends with keep_alive off (see data_received)
        super().shutdown()

    def _give_up_if_silent(self) -> None:
        if self.cycle is None and not self._served_any and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Feed h11, then (re)arm or clear the head deadline depending on what arrived."""
        if data:
            self._served_any = True
        super().data_received(data)
        if self._stopping and self.cycle is not None:
            self.cycle.keep_alive = False  # the last request of a stopping server: close after its response
        if self._awaiting_head():
            if self._head_timer is None and data:
                self._arm_head_timer()
        else:
            self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        # A new cycle is created once a head is complete; a finished one means the next head is awaited.
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head() and not self.transport.is_closing():
            log.info("closing a connection that did not send its request head within %ss", self.head_timeout)
            self.transport.close()


def server_config(app: Any, *, host: str, port: int, limits: ServerLimits, **options: Any) -> uvicorn.Config:
    """uvicorn.Config for `app` with the limits applied (other uvicorn options pass through)."""
    protocol = type("BoundedH11Protocol", (HeadTimeoutH11Protocol,), {"head_timeout": limits.header_timeout})
    options.setdefault("log_level", "warning")
    options.setdefault("lifespan", "off")
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=max(1, round(limits.keep_alive)),
        limit_concurrency=limits.max_concurrency,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        **options,
    )
