"""A local Gemini API server that google-genai talks to through ``HttpOptions(base_url=...)``.

It answers ``POST /{version}/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``
(google-genai 3.3.0 defaults to ``v1``; ``v1beta`` is accepted too and recorded), records every request,
and injects errors, latency and hangs on demand.

The module also holds the loopback HTTP scaffolding and the fault knobs shared with the OpenAI-compatible
fake (``tests/fakes/openai_server.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

JSON = dict[str, Any]
#: A responder turns the request body (parsed JSON) into the model's reply text.
#: It may also return a full response body (a dict) which is sent as is.
Responder = Callable[[JSON], "str | JSON"]


class FakeServerError(Exception):
    """Base class for errors raised by the fake servers' Python control API."""


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

    def __init__(self, address: tuple[str, int], owner: LoopbackHTTPServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs do
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms per call.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        request = HTTPRequest(
            method=self.command,
            path=unquote(split.path),  # clients percent-encode e.g. the ':' of a bot token
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        try:
            response = owner._route(request)
        except Exception:  # a bug in the fake must show up as a 500, not a hung client
            log.exception("fake server %s failed on %s %s", type(owner).__name__, self.command, self.path)
            response = HTTPResponse.json(500, {"error": "fake server bug, see log"})
        try:
            self._write(response)
        except OSError:  # the client gave up (timeout) or the server is stopping
            self.close_connection = True

    def _write(self, response: HTTPResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.chunks is None:
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for chunk in response.chunks:
            self.wfile.write(chunk)
            self.wfile.flush()


class LoopbackHTTPServer:
    """A threaded HTTP server on 127.0.0.1 with start/stop, a context manager and a ``/_fake/*`` control API.

    Subclasses implement ``_handle``; ``_controls`` exposes Python control methods over HTTP so a fake run
    standalone (``python -m ...``) can still be driven by a benchmark in another process.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()

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

    def _on_stop(self) -> None:
        """Wake anything blocked inside a handler (long polls, hangs)."""

    def _handle(self, request: HTTPRequest) -> HTTPResponse:
        raise NotImplementedError

    def _controls(self) -> dict[str, Callable[..., Any]]:
        return {}

    # internals -------------------------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; returns False when interrupted by ``stop()``."""
        return not self._stopping.wait(seconds) if seconds > 0 else True

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

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


def run_standalone(server: LoopbackHTTPServer, describe: str) -> None:
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


class AIFakeServer(LoopbackHTTPServer):
    """Responder, latency, fault injection and request recording shared by the Gemini and OpenAI fakes."""

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
        self._records: list[Any] = []

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

    def clear_faults(self) -> None:
        """Drop injected faults that have not fired yet."""
        with self._cond:
            self._faults.clear()

    def reset(self) -> None:
        """Forget recorded requests and pending faults; keep responder and latency."""
        with self._cond:
            self._records.clear()
            self._faults.clear()

    @property
    def request_count(self) -> int:
        """How many model calls reached the server (including failed and hung ones)."""
        with self._cond:
            return len(self._records)

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Any]:  # noqa: ASYNC109
        """Await until at least ``n`` model calls were recorded; returns the records."""
        found = await self._notifier.wait(lambda: list(self._records) if len(self._records) >= n else None, timeout)
        if found is None:
            raise FakeTimeout(f"expected {n} model requests within {timeout}s, got {self.request_count}")
        return list(found)

    # internals -------------------------------------------------------------------------------------------

    def _take_fault(self) -> Fault | None:
        with self._cond:
            return self._faults.pop(0) if self._faults else None

    def _record(self, record: Any) -> None:
        with self._cond:
            self._records.append(record)
            self._notifier.notify()

    def _answer_text(self, body: JSON, default: Callable[[JSON], str]) -> str | JSON:
        with self._cond:
            responder = self._responder
        return responder(body) if responder is not None else default(body)

    def _simulate_latency(self, fault: Fault | None) -> None:
        with self._cond:
            latency = self._latency
        self._sleep(latency + (fault.hang_seconds if fault else 0.0))

    def _on_stop(self) -> None:
        with self._cond:
            self._notifier.notify()

    def _ai_controls(self) -> dict[str, Callable[..., Any]]:
        return {
            "fail_next": self.fail_next,
            "hang_next": self.hang_next,
            "set_latency": self.set_latency,
            "clear_faults": self.clear_faults,
            "reset": self.reset,
            "stats": lambda: {"requests": self.request_count},
        }


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def echo_reply(text: str) -> str:
    """The default deterministic answer to a user message."""
    return f"Эхо: {text}"


# ---------------------------------------------------------------------------------------------------------
# Gemini
# ---------------------------------------------------------------------------------------------------------

_GOOGLE_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}

_MODEL_PATH = re.compile(r"^/(?P<version>v1(?:alpha|beta)?)/models/(?P<model>[^/:]+)(?::(?P<method>\w+))?$")


@dataclass(frozen=True)
class GeminiRequest:
    """One generateContent call as the model saw it."""

    model: str
    api_version: str
    method: str  # generateContent | streamGenerateContent
    system_instruction: str | None
    contents: tuple[tuple[str, str], ...]  # (role, text of all text parts joined)
    generation_config: Mapping[str, Any]
    api_key: str | None
    body: Mapping[str, Any]
    status: int  # what the fake answered (200 or the injected error)
    timestamp: float


def gemini_error_body(status: int, message: str | None = None, retry_after: float | None = None) -> JSON:
    """Google's JSON error shape: ``{"error": {"code", "message", "status", "details"}}``."""
    name, default_message = _GOOGLE_STATUS.get(status, ("UNKNOWN", "Unknown error."))
    error: JSON = {"code": status, "message": message or default_message, "status": name}
    if retry_after is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}]
    return {"error": error}


def _parts_text(content: Any) -> str:
    if not isinstance(content, Mapping):
        return ""
    parts = content.get("parts") or []
    return "".join(str(p.get("text", "")) for p in parts if isinstance(p, Mapping))


def last_user_text(body: JSON) -> str:
    """Text of the last ``user`` turn in a generateContent body."""
    for content in reversed(body.get("contents") or []):
        if isinstance(content, Mapping) and content.get("role", "user") == "user":
            return _parts_text(content)
    return ""


class FakeGeminiServer(AIFakeServer):
    """A local Gemini API (generateContent, streamGenerateContent, models.get) driven by real google-genai."""

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        api_key: str | None = None,
        known_models: Iterable[str] | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(responder=responder, api_key=api_key, latency=latency, host=host, port=port)
        self._known_models = frozenset(known_models) if known_models is not None else None

    @property
    def requests(self) -> list[GeminiRequest]:
        """Every model call so far, oldest first."""
        with self._cond:
            return list(self._records)

    @property
    def last_request(self) -> GeminiRequest:
        """The most recent model call."""
        with self._cond:
            if not self._records:
                raise FakeServerError("no Gemini requests were made")
            record: GeminiRequest = self._records[-1]
            return record

    # HTTP --------------------------------------------------------------------------------------------------

    def _controls(self) -> dict[str, Callable[..., Any]]:
        return {**self._ai_controls(), "requests": lambda: self.requests}

    def _handle(self, request: HTTPRequest) -> HTTPResponse:
        match = _MODEL_PATH.match(request.path)
        if match is None:
            return HTTPResponse.json(404, gemini_error_body(404, f"Unknown path {request.path}"))
        version, model, method = match["version"], match["model"], match["method"]
        key = request.headers.get("x-goog-api-key") or next(iter(request.query.get("key", [])), None)
        if self._api_key is not None and key != self._api_key:
            return HTTPResponse.json(400, gemini_error_body(400, "API key not valid. Please pass a valid API key."))
        if self._known_models is not None and model not in self._known_models:
            return HTTPResponse.json(
                404,
                gemini_error_body(404, f"models/{model} is not found for API version {version}, or is not supported."),
            )
        if request.method == "GET" and method is None:
            return HTTPResponse.json(200, self._model_info(model))
        if request.method == "POST" and method in ("generateContent", "streamGenerateContent"):
            return self._generate(request, version, model, method, key)
        return HTTPResponse.json(404, gemini_error_body(404, f"Method {method} is not supported by the fake"))

    def _model_info(self, model: str) -> JSON:
        return {
            "name": f"models/{model}",
            "version": "001",
            "displayName": model,
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        }

    def _generate(self, request: HTTPRequest, version: str, model: str, method: str, key: str | None) -> HTTPResponse:
        try:
            body = request.json()
        except ValueError:
            return HTTPResponse.json(400, gemini_error_body(400, "Invalid JSON payload received."))
        if not isinstance(body, dict):
            return HTTPResponse.json(400, gemini_error_body(400, "Invalid JSON payload received."))
        fault = self._take_fault()
        problem = self._validate(body)
        status = 400 if problem else (fault.status if fault and fault.status else 200)
        self._record(
            GeminiRequest(
                model=model,
                api_version=version,
                method=method,
                system_instruction=_parts_text(body.get("systemInstruction")) or None,
                contents=tuple(
                    (str(c.get("role", "user")), _parts_text(c))
                    for c in body.get("contents") or []
                    if isinstance(c, Mapping)
                ),
                generation_config=dict(body.get("generationConfig") or {}),
                api_key=key,
                body=body,
                status=status,
                timestamp=time.time(),
            )
        )
        self._simulate_latency(fault)
        if problem:
            return HTTPResponse.json(400, gemini_error_body(400, problem))
        if fault is not None and fault.status is not None:
            # Like Gemini: the delay travels only as a RetryInfo detail, never as a Retry-After header.
            return HTTPResponse.json(fault.status, gemini_error_body(fault.status, fault.message, fault.retry_after))
        answer = self._answer_text(body, lambda b: echo_reply(last_user_text(b)))
        if method == "streamGenerateContent":
            return self._stream(body, model, answer)
        payload = answer if isinstance(answer, dict) else self._response_body(body, model, answer)
        return HTTPResponse.json(200, payload)

    @staticmethod
    def _validate(body: JSON) -> str | None:
        contents = body.get("contents")
        if not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        for content in contents:
            if not isinstance(content, Mapping) or content.get("role", "user") not in ("user", "model"):
                return "Please use a valid role: user, model."
            if not content.get("parts"):
                return "* GenerateContentRequest.contents.parts: contents.parts must not be empty."
        return None

    @staticmethod
    def _usage(body: JSON, answer: str) -> JSON:
        prompt = count_tokens(_parts_text(body.get("systemInstruction"))) + sum(
            count_tokens(_parts_text(c)) for c in body.get("contents") or []
        )
        output = count_tokens(answer)
        return {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output}

    def _response_body(self, body: JSON, model: str, answer: str, *, final: bool = True) -> JSON:
        candidate: JSON = {"content": {"parts": [{"text": answer}], "role": "model"}, "index": 0}
        if final:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(body, answer),
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:22],
        }

    def _stream(self, body: JSON, model: str, answer: str | JSON) -> HTTPResponse:
        if isinstance(answer, dict):
            events: list[JSON] = [answer]
        else:
            # Split into word-boundary chunks like the real stream; the last chunk carries finishReason.
            words = re.findall(r"\S+\s*|\s+", answer) or [""]
            size = max(1, math.ceil(len(words) / 3))
            pieces = ["".join(words[i : i + size]) for i in range(0, len(words), size)]
            events = [
                self._response_body(body, model, piece, final=i == len(pieces) - 1) for i, piece in enumerate(pieces)
            ]

        def chunks() -> Iterator[bytes]:
            for event in events:
                yield b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\r\n\r\n"

        return HTTPResponse(200, headers={"Content-Type": "text/event-stream"}, chunks=chunks())


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.gemini_server --port N``: serve the fake Gemini API until interrupted."""
    parser = base_arg_parser("Local fake of the Gemini API")
    parser.add_argument("--api-key", default=None, help="reject other keys with 400 like Google does")
    args = parser.parse_args(argv)
    server = FakeGeminiServer(api_key=args.api_key, latency=args.latency, host=args.host, port=args.port)
    run_standalone(server, "fake Gemini API (use api_version v1)")


if __name__ == "__main__":
    main()
