"""A local OpenAI-compatible API (``/v1/chat/completions``, ``/v1/models``) for the openai client.

Stands in for OpenRouter, Ollama or vLLM: the real ``AsyncOpenAI(base_url=url + "/v1")`` runs against it.
Responder, latency, error injection and recording work as in the Gemini fake (``tests/fakes/_http.py``).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes._http import (
    JSON,
    AIFakeServer,
    HTTPRequest,
    HTTPResponse,
    count_tokens,
    echo_reply,
    serve_ai_fake,
)

_ERROR_TYPES = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


@dataclass(frozen=True)
class OpenAIRequest:
    """One chat completion call as the model saw it."""

    model: str
    messages: tuple[tuple[str, str], ...]  # (role, text); content parts are joined
    params: Mapping[str, Any]  # everything except model and messages (temperature, max_tokens, ...)
    api_key: str | None
    stream: bool
    body: Mapping[str, Any]
    status: int
    timestamp: float

    @property
    def system_prompt(self) -> str | None:
        """Text of the system (or developer) messages, joined; None when there are none."""
        texts = [text for role, text in self.messages if role in ("system", "developer")]
        return "\n".join(texts) if texts else None


def openai_error_body(status: int, message: str | None = None) -> JSON:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    kind, code, default_message = _ERROR_TYPES.get(status, ("server_error", None, "Unexpected error."))
    return {"error": {"message": message or default_message, "type": kind, "param": None, "code": code}}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def last_user_message(body: JSON) -> str:
    """Text of the last ``user`` message in a chat completion body."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


class FakeOpenAIServer(AIFakeServer[OpenAIRequest]):
    """A local OpenAI-compatible chat completions API (non-streaming and SSE streaming)."""

    record_noun = "chat completion"

    def _handle(self, request: HTTPRequest) -> HTTPResponse:
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() or None
        if self._api_key is not None and key != self._api_key:
            return HTTPResponse.json(401, openai_error_body(401))
        if request.path == "/v1/models" and request.method == "GET":
            return HTTPResponse.json(200, {"object": "list", "data": []})
        if request.path == "/v1/chat/completions" and request.method == "POST":
            return self._complete(request, key)
        return HTTPResponse.json(404, openai_error_body(404, f"Unknown path {request.path}"))

    def _complete(self, request: HTTPRequest, key: str | None) -> HTTPResponse:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return HTTPResponse.json(400, openai_error_body(400, "We could not parse the JSON body."))
        problem = self._validate(body)
        fault, status = self._take_fault(problem)
        stream = bool(body.get("stream"))
        self._record(
            OpenAIRequest(
                model=str(body.get("model", "")),
                messages=tuple(
                    (str(m.get("role", "")), _content_text(m.get("content")))
                    for m in body.get("messages") or []
                    if isinstance(m, Mapping)
                ),
                params={k: v for k, v in body.items() if k not in ("model", "messages")},
                api_key=key,
                stream=stream,
                body=body,
                status=status,
                timestamp=time.time(),
            )
        )
        self._simulate_latency(fault)
        if problem:
            return HTTPResponse.json(400, openai_error_body(400, problem))
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": str(math.ceil(fault.retry_after))} if fault.retry_after is not None else {}
            return HTTPResponse.json(fault.status, openai_error_body(fault.status, fault.message), headers)
        answer = self._answer_text(body, lambda b: echo_reply(last_user_message(b)))
        if isinstance(answer, dict):
            return HTTPResponse.json(200, answer)
        if stream:
            return self._stream(body, answer)
        self._simulate_generation()
        return HTTPResponse.json(200, self._completion(body, answer))

    @staticmethod
    def _validate(body: JSON) -> str | None:
        if not body.get("model"):
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' must contain at least one message"
        for message in messages:
            if not isinstance(message, Mapping) or message.get("role") not in (
                "system",
                "developer",
                "user",
                "assistant",
                "tool",
            ):
                return "Invalid value for 'role'"
        return None

    @staticmethod
    def _usage(body: JSON, answer: str) -> JSON:
        prompt = sum(count_tokens(_content_text(m.get("content"))) for m in body["messages"])
        output = count_tokens(answer)
        return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}

    def _completion(self, body: JSON, answer: str) -> JSON:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(body, answer),
            "system_fingerprint": None,
        }

    def _stream(self, body: JSON, answer: str) -> HTTPResponse:
        begun = time.monotonic()
        shape, break_after = self._stream_shape()
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        words = answer.split(" ")
        words = [w if i == 0 else " " + w for i, w in enumerate(words)]
        size = max(1, math.ceil(len(words) / shape.chunks)) if shape.chunks else 1  # a word per chunk by default
        pieces = ["".join(words[i : i + size]) for i in range(0, len(words), size)]

        def chunk(delta: JSON, finish: str | None) -> bytes:
            event = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"

        # The role chunk and the first text travel together, so the first-token delay is the first text's.
        first = chunk({"role": "assistant", "content": ""}, None) + chunk({"content": pieces[0]}, None)
        events = [first, *(chunk({"content": piece}, None) for piece in pieces[1:])]
        events[-1] += chunk({}, "stop") + b"data: [DONE]\n\n"
        return HTTPResponse(
            200, headers={"Content-Type": "text/event-stream"}, chunks=self._paced(events, shape, break_after, begun)
        )


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.openai_server --port N``: serve the fake chat completions API until interrupted."""
    serve_ai_fake(
        FakeOpenAIServer,
        "Local fake of an OpenAI-compatible chat completions API",
        "reject other keys with 401",
        "fake OpenAI-compatible API (base_url = this URL + /v1)",
        argv,
    )


if __name__ == "__main__":
    main()
