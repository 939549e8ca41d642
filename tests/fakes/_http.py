"""Scaffolding shared by the fake servers: a restartable threaded HTTP server on 127.0.0.1, a request/response
model with a ``/_fake/*`` control API, waiting helpers, the standalone runner, and the responder, latency,
fault injection and request recording of the AI fakes (Gemini, OpenAI-compatible).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

JSON = dict[str, Any]
#: A responder turns the request body (parsed JSON) into the model's reply text.
#: It may also return a full response body (a dict) which is sent as is.
Responder = Callable[[JSON], "str | JSON"]
RecordT = TypeVar("RecordT")


class FakeServerError(Exception):
    """Base class for errors raised by the fake servers' Python control API."""


class StreamCut(Exception):
    """Raised by a streamed body's iterator to cut the response mid-way (connection dropped, body incomplete)."""


class FakeTimeout(FakeServerError, AssertionError):
    """Raised when a ``wait_for_*`` helper gives up before the awaited thing happened."""


# ---------------------------------------------------------------------------------------------------------
# Loopback HTTP scaffolding
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HTTPRequest:
    """One request as the fake server saw it."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (``None`` for an empty body)."""
        return json.loads(self.body) if self.body else None


@dataclass
class HTTPResponse:
    """What a handler sends back; ``chunks`` streams the body and closes the connection."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> HTTPResponse:
        """A JSON response."""
        merged = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, json.dumps(payload, ensure_ascii=False).encode(), merged)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # The default backlog of 5 drops SYNs when a benchmark opens 50 connections at once.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], owner: LoopbackServer) -> None:
        self.owner = owner
        super().__init__(address, owner.handler_class)


class LoopbackHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 without Nagle; hands every request to the owning server's ``_serve``."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs do
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms per call.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def handle(self) -> None:
        # A client dropping a kept-alive connection (pool closed, stream abandoned) is normal, not a fake bug.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self.server.owner._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 with start/stop (restartable on the same port) and a context manager.

    Subclasses implement ``_serve(handler)`` and may pick another ``handler_class``.
    """

    handler_class: ClassVar[type[LoopbackHandler]] = LoopbackHandler

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0  # TCP connections accepted since start (a kept-alive pool reuses its own)

    # lifecycle -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash); kept while stopped for restarts."""
        if self._port == 0:
            raise FakeServerError("server was never started")
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (0 before the first start)."""
        return self._port

    def start(self) -> Self:
        """Bind (a free port the first time, the same port on a restart) and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server((self._host, self._port), self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake blocked handlers and drop open connections; ``start()`` may be called again."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        self._on_stop()
        httpd.shutdown()
        httpd.server_close()
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._httpd is not None

    # hooks -----------------------------------------------------------------------------------------------

    def _serve(self, handler: LoopbackHandler) -> None:
        """Read one request from ``handler`` and answer it (runs on the connection's thread)."""
        raise NotImplementedError

    def _on_stop(self) -> None:
        """Wake anything blocked inside a handler (long polls, hangs)."""

    # internals -------------------------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; returns False when interrupted by ``stop()``."""
        return not self._stopping.wait(seconds) if seconds > 0 else True

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(conn)
                self.connections_opened += 1
            else:
                self._connections.discard(conn)


class LoopbackHTTPServer(LoopbackServer):
    """A loopback server answering parsed requests through ``_handle``, with a ``/_fake/*`` control API.

    Subclasses implement ``_handle``; ``_controls`` exposes Python control methods over HTTP so a fake run
    standalone (``python -m ...``) can still be driven by a benchmark in another process.
    """

    # hooks -----------------------------------------------------------------------------------------------

    def _handle(self, request: HTTPRequest) -> HTTPResponse:
        raise NotImplementedError

    def _controls(self) -> dict[str, Callable[..., Any]]:
        return {}

    # internals -------------------------------------------------------------------------------------------

    def _serve(self, handler: LoopbackHandler) -> None:
        split = urlsplit(handler.path)
        request = HTTPRequest(
            method=handler.command,
            path=unquote(split.path),  # clients percent-encode e.g. the ':' of a bot token
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=_read_body(handler),
        )
        try:
            response = self._route(request)
        except Exception:  # a bug in the fake must show up as a 500, not a hung client
            log.exception("fake server %s failed on %s %s", type(self).__name__, handler.command, handler.path)
            response = HTTPResponse.json(500, {"error": "fake server bug, see log"})
        try:
            _write(handler, response)
        except OSError:  # the client gave up (timeout) or the server is stopping
            handler.close_connection = True

    def _route(self, request: HTTPRequest) -> HTTPResponse:
        if request.path.startswith("/_fake/"):
            return self._control(request)
        return self._handle(request)

    def _control(self, request: HTTPRequest) -> HTTPResponse:
        name = request.path.removeprefix("/_fake/")
        control = self._controls().get(name)
        if control is None:
            return HTTPResponse.json(404, {"error": f"unknown control {name!r}", "known": sorted(self._controls())})
        kwargs = request.json() or {}
        try:
            result = control(**kwargs)
        except (TypeError, ValueError, FakeServerError) as exc:
            return HTTPResponse.json(400, {"error": str(exc)})
        return HTTPResponse.json(200, {"result": _jsonable(result)})


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                break
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(parts)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _write(handler: BaseHTTPRequestHandler, response: HTTPResponse) -> None:
    handler.send_response(response.status)
    for name, value in response.headers.items():
        handler.send_header(name, value)
    if response.chunks is None:
        handler.send_header("Content-Length", str(len(response.body)))
        handler.end_headers()
        handler.wfile.write(response.body)
        return
    # Chunked transfer encoding on a kept-alive connection, as the real streaming APIs answer; a stream cut
    # short ends without the terminating chunk and closes the connection, so the client sees a broken body.
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    try:
        for chunk in response.chunks:
            if chunk:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.flush()
    except StreamCut:
        handler.close_connection = True
        return
    handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()


def _jsonable(value: Any) -> Any:
    """Turns records (dataclasses, bytes, tuples) into JSON-friendly values for the control API."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: _jsonable(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class Notifier:
    """Lets sync and async code wait for a condition that server threads make true."""

    def __init__(self, lock: threading.Condition) -> None:
        self._cond = lock
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify(self) -> None:
        """Wake every waiter; the caller holds the condition's lock."""
        self._cond.notify_all()
        for loop, event in list(self._waiters):
            with contextlib.suppress(RuntimeError):  # the waiter's loop is already closed
                loop.call_soon_threadsafe(event.set)

    def wait_sync(self, check: Callable[[], Any], timeout: float) -> Any:
        """Block until ``check()`` (called under the lock) returns a non-None value or time runs out."""
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            raise FakeServerError("wait_*_sync called from a running event loop: it would block the loop")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = check()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    async def wait(self, check: Callable[[], Any], timeout: float) -> Any:  # noqa: ASYNC109 - a deadline, not a cancel scope
        """Await until ``check()`` (called under the lock) returns a non-None value; None on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter = (loop, asyncio.Event())
        with self._cond:
            self._waiters.add(waiter)
        try:
            while True:
                waiter[1].clear()  # cleared before checking, so a notify in between is not lost
                with self._cond:
                    found = check()
                if found is not None:
                    return found
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter[1].wait(), remaining)
        finally:
            with self._cond:
                self._waiters.discard(waiter)


def run_standalone(server: LoopbackServer, describe: str) -> None:
    """Serve until SIGINT/SIGTERM; prints the URL on the first line so a parent process can read it."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(f"{server.url} {describe}", flush=True)
        stop.wait()


def base_arg_parser(description: str) -> argparse.ArgumentParser:
    """Common command-line options of the standalone fakes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API call")
    return parser


# ---------------------------------------------------------------------------------------------------------
# Faults and responders shared by the AI fakes
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected failure: an HTTP error, or a hang of ``seconds`` before a normal answer."""

    status: int | None = None
    retry_after: float | None = None
    message: str | None = None
    hang_seconds: float = 0.0


@dataclass(frozen=True)
class StreamShape:
    """How a streamed answer is delivered: ``first_token`` seconds before the first chunk, then the rest spread
    evenly over ``duration`` seconds, in ``chunks`` pieces (None: the fake's default split)."""

    first_token: float = 0.0
    duration: float = 0.0
    chunks: int | None = None


class AIFakeServer(LoopbackHTTPServer, Generic[RecordT]):
    """Responder, latency, fault injection and request recording shared by the Gemini and OpenAI fakes."""

    #: What a recorded call is, for "no … requests were made".
    record_noun: ClassVar[str] = "model"

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        api_key: str | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self._cond = threading.Condition()
        self._notifier = Notifier(self._cond)
        self._responder = responder
        self._api_key = api_key
        self._latency = latency
        self._faults: list[Fault] = []
        self._records: list[RecordT] = []
        self._shape = StreamShape()
        self._breaks: list[int] = []  # chunks each of the next streams delivers before it breaks

    # control API -----------------------------------------------------------------------------------------

    def set_responder(self, responder: Responder | None) -> None:
        """Use ``responder(request_json) -> text`` for answers; None restores the deterministic echo."""
        with self._cond:
            self._responder = responder

    def set_latency(self, seconds: float) -> None:
        """Delay every model call by ``seconds`` (simulated generation time)."""
        with self._cond:
            self._latency = seconds

    def fail_next(
        self, n: int = 1, status: int = 503, retry_after: float | None = None, message: str | None = None
    ) -> None:
        """Answer the next ``n`` model calls with an error in the provider's JSON shape."""
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error code, got {status}")
        with self._cond:
            self._faults.extend(Fault(status=status, retry_after=retry_after, message=message) for _ in range(n))

    def hang_next(self, n: int = 1, seconds: float = 30.0) -> None:
        """Hold the next ``n`` model calls for ``seconds`` before answering (to trip client timeouts)."""
        with self._cond:
            self._faults.extend(Fault(hang_seconds=seconds) for _ in range(n))

    def set_streaming(self, first_token: float = 0.0, duration: float = 0.0, chunks: int | None = None) -> None:
        """Shape streamed answers: the first chunk after ``first_token`` s, the rest over ``duration`` s. A
        non-streamed call then answers after ``first_token + duration`` s, when the whole answer is written."""
        if first_token < 0 or duration < 0 or (chunks is not None and chunks < 1):
            raise ValueError("first_token and duration must be >= 0, chunks >= 1")
        with self._cond:
            self._shape = StreamShape(first_token, duration, chunks)

    def break_next_stream(self, n: int = 1, after_chunks: int = 1) -> None:
        """The next ``n`` streamed answers stop after ``after_chunks`` chunks: the connection is dropped mid-body
        (no finish reason, no ``[DONE]``), as when the model or the network fails mid-answer."""
        if after_chunks < 0:
            raise ValueError("after_chunks must be >= 0")
        with self._cond:
            self._breaks.extend([after_chunks] * n)

    def clear_faults(self) -> None:
        """Drop injected faults (and stream breaks) that have not fired yet."""
        with self._cond:
            self._faults.clear()
            self._breaks.clear()

    def reset(self) -> None:
        """Forget recorded requests and pending faults; keep responder and latency."""
        with self._cond:
            self._records.clear()
            self._faults.clear()
            self._breaks.clear()

    @property
    def request_count(self) -> int:
        """How many model calls reached the server (including failed and hung ones)."""
        with self._cond:
            return len(self._records)

    @property
    def requests(self) -> list[RecordT]:
        """Every model call so far, oldest first."""
        with self._cond:
            return list(self._records)

    @property
    def last_request(self) -> RecordT:
        """The most recent model call."""
        with self._cond:
            if not self._records:
                raise FakeServerError(f"no {self.record_noun} requests were made")
            return self._records[-1]

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordT]:  # noqa: ASYNC109
        """Await until at least ``n`` model calls were recorded; returns the records."""
        found = await self._notifier.wait(lambda: list(self._records) if len(self._records) >= n else None, timeout)
        if found is None:
            raise FakeTimeout(f"expected {n} model requests within {timeout}s, got {self.request_count}")
        return list(found)

    # internals -------------------------------------------------------------------------------------------

    def _take_fault(self, problem: str | None) -> tuple[Fault | None, int]:
        """The next injected fault and the status this call gets (400 for an invalid body wins)."""
        with self._cond:
            fault = self._faults.pop(0) if self._faults else None
        return fault, 400 if problem else (fault.status if fault and fault.status else 200)

    def _record(self, record: RecordT) -> None:
        with self._cond:
            self._records.append(record)
            self._notifier.notify()

    def _answer_text(self, body: JSON, default: Callable[[JSON], str]) -> str | JSON:
        with self._cond:
            responder = self._responder
        return responder(body) if responder is not None else default(body)

    def _simulate_generation(self) -> None:
        """A non-streamed answer arrives when the whole answer is written: the stream shape's time, if set."""
        with self._cond:
            shape = self._shape
        self._sleep(shape.first_token + shape.duration)

    def _stream_shape(self) -> tuple[StreamShape, int | None]:
        """The stream shape, and after how many chunks this stream breaks (None: it completes)."""
        with self._cond:
            return self._shape, self._breaks.pop(0) if self._breaks else None

    def _paced(self, events: list[bytes], shape: StreamShape, break_after: int | None, since: float) -> Iterator[bytes]:
        """``events`` sent as the shape says, timed from ``since`` (``time.monotonic()`` when the answer began, so
        the fake's own time building them is not added to the first token's); cut short (body incomplete,
        connection closed) on a break."""
        gap = shape.duration / (len(events) - 1) if len(events) > 1 else 0.0
        due = since
        for i, event in enumerate(events):
            if break_after is not None and i >= break_after:
                raise StreamCut(f"stream broken after {i} chunks")
            due += shape.first_token if i == 0 else gap
            if not self._sleep(due - time.monotonic()):
                raise StreamCut("server stopping")
            yield event

    def _simulate_latency(self, fault: Fault | None) -> None:
        with self._cond:
            latency = self._latency
        self._sleep(latency + (fault.hang_seconds if fault else 0.0))

    def _on_stop(self) -> None:
        with self._cond:
            self._notifier.notify()

    def _controls(self) -> dict[str, Callable[..., Any]]:
        return {
            "fail_next": self.fail_next,
            "hang_next": self.hang_next,
            "set_latency": self.set_latency,
            "set_streaming": self.set_streaming,
            "break_next_stream": self.break_next_stream,
            "clear_faults": self.clear_faults,
            "reset": self.reset,
            "stats": lambda: {"requests": self.request_count},
            "requests": lambda: self.requests,
        }


def serve_ai_fake(
    server_class: Callable[..., AIFakeServer[Any]],
    description: str,
    key_help: str,
    describe: str,
    argv: list[str] | None,
) -> None:
    """The ``python -m tests.fakes.<ai fake>`` entry point: parse the options and serve until interrupted."""
    parser = base_arg_parser(description)
    parser.add_argument("--api-key", default=None, help=key_help)
    args = parser.parse_args(argv)
    run_standalone(server_class(api_key=args.api_key, latency=args.latency, host=args.host, port=args.port), describe)


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def echo_reply(text: str) -> str:
    """The default deterministic answer to a user message."""
    return f"Эхо: {text}"
