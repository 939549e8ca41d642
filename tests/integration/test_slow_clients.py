"""Slow clients cannot hold connections: a request head must arrive within a bound, idle keep-alive connections
close, and the server caps concurrency. A real uvicorn server on 127.0.0.1, driven through raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import uvicorn
from fastapi import FastAPI

from bot.web.server import ServerLimits, server_config
from tests.local_stack import free_port

HEADER_TIMEOUT = 2.0
LIMITS = ServerLimits(header_timeout=HEADER_TIMEOUT, keep_alive=1.0, max_concurrency=50)


def tiny_app() -> FastAPI:
    """An app answering GET /ping."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


@contextlib.asynccontextmanager
async def running(limits: ServerLimits) -> AsyncIterator[int]:
    """A uvicorn server configured by server_config, serving on a free loopback port."""
    port = free_port()
    server = uvicorn.Server(server_config(tiny_app(), host="127.0.0.1", port=port, limits=limits))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def trickle_until_closed(port: int, *, prefix: bytes = b"", interval: float = 1.0, limit: float = 15.0) -> float:
    """Send `prefix`, then one header line every `interval` s; return the seconds until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(prefix + b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        if prefix:
            await reader.readuntil(b'{"pong":"yes"}')  # the first, complete request is answered
            started = time.monotonic()
        i = 0
        while time.monotonic() - started < limit:
            try:
                data = await asyncio.wait_for(reader.read(65536), interval)
            except TimeoutError:
                data = None
            if data == b"":
                return time.monotonic() - started
            i += 1
            try:
                writer.write(f"X-Slow-{i}: {'a' * 10}\r\n".encode())
                await writer.drain()
            except ConnectionError:
                return time.monotonic() - started
        return float("inf")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_a_request_head_sent_one_line_per_second_is_cut_off() -> None:
    """A client sending one header line every second is disconnected within the header timeout."""
    async with running(LIMITS) as port:
        elapsed = await trickle_until_closed(port)
    assert elapsed <= HEADER_TIMEOUT + 1.5, elapsed


async def test_a_slow_second_request_on_a_kept_alive_connection_is_cut_off() -> None:
    """After one complete request, a second one trickled on the same connection is cut off the same way."""
    async with running(replace(LIMITS, keep_alive=30.0)) as port:
        elapsed = await trickle_until_closed(port, prefix=b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert elapsed <= HEADER_TIMEOUT + 1.5, elapsed


async def test_a_prompt_request_is_answered_and_idle_keep_alive_closes() -> None:
    """An ordinary request is answered; the idle connection is then closed after the keep-alive timeout."""
    async with running(LIMITS) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        assert b'{"pong":"yes"}' in await reader.readuntil(b'{"pong":"yes"}')
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert time.monotonic() - started <= LIMITS.keep_alive + 1.5
        writer.close()


def test_server_config_bounds_size_keep_alive_and_concurrency() -> None:
    """The uvicorn config carries the keep-alive timeout, the concurrency cap and a small incomplete-event limit."""
    config = server_config(tiny_app(), host="127.0.0.1", port=1, limits=LIMITS)
    assert config.timeout_keep_alive == 1
    assert config.limit_concurrency == 50
    assert config.h11_max_incomplete_event_size is not None and config.h11_max_incomplete_event_size <= 64 * 1024


async def test_an_oversized_request_head_is_refused() -> None:
    """A request head over the incomplete-event limit gets 431/400 and the connection is closed."""
    async with running(LIMITS) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (128 * 1024) + b"\r\n\r\n")
            answer = b""
            with contextlib.suppress(ConnectionError):
                while chunk := await asyncio.to_thread(sock.recv, 65536):
                    answer += chunk
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")) or answer == b"", answer[:80]


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_limits_must_be_positive(bad: float) -> None:
    """A zero or negative bound is refused when the limits are built."""
    with pytest.raises(ValueError):
        ServerLimits(header_timeout=bad)


async def test_a_request_arriving_just_as_the_server_stops_is_answered_not_reset() -> None:
    """A connection accepted just before a graceful stop whose request arrives a moment later (a hand-over
    between slots on one socket) gets its answer and then the close, never a reset."""
    port = free_port()
    server = uvicorn.Server(server_config(tiny_app(), host="127.0.0.1", port=port, limits=LIMITS))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.1)  # accepted, nothing sent yet
    server.should_exit = True
    await asyncio.sleep(0.3)  # the server is stopping
    writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # up to EOF: the server closes after the response
    writer.close()
    await asyncio.wait_for(task, 10)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"pong":"yes"}')  # and then EOF: closed


async def test_a_silent_connection_does_not_hold_a_stopping_server() -> None:
    """A connection that never sends anything is closed shortly after a graceful stop begins."""
    port = free_port()
    server = uvicorn.Server(server_config(tiny_app(), host="127.0.0.1", port=port, limits=LIMITS))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    server.should_exit = True
    assert await asyncio.wait_for(reader.read(), 10) == b""
    await asyncio.wait_for(task, 10)
    writer.close()
    assert time.monotonic() - started < HEADER_TIMEOUT + 1.5
