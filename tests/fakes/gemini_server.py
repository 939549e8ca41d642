"""A local Gemini API server that google-genai talks to through ``HttpOptions(base_url=...)``.

It answers ``POST /{version}/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``
(google-genai 3.3.0 defaults to ``v1``; ``v1beta`` is accepted too and recorded), records every request,
and injects errors, latency and hangs on demand (the knobs live in ``tests/fakes/_http.py``).
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes._http import (
    JSON,
    AIFakeServer,
    HTTPRequest,
    HTTPResponse,
    Responder,
    count_tokens,
    echo_reply,
    serve_ai_fake,
)
from tests.fakes._http import FakeTimeout as FakeTimeout  # re-exported: what callers of wait_for_requests catch

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


class FakeGeminiServer(AIFakeServer[GeminiRequest]):
    """A local Gemini API (generateContent, streamGenerateContent, models.get) driven by real google-genai."""

    record_noun = "Gemini"

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

    # HTTP --------------------------------------------------------------------------------------------------

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
        problem = self._validate(body)
        fault, status = self._take_fault(problem)
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
        self._simulate_generation()
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
    def _prompt_tokens(body: JSON) -> int:
        return count_tokens(_parts_text(body.get("systemInstruction"))) + sum(
            count_tokens(_parts_text(c)) for c in body.get("contents") or []
        )

    def _response_body(
        self, body: JSON, model: str, answer: str, *, final: bool = True, prompt_tokens: int | None = None
    ) -> JSON:
        candidate: JSON = {"content": {"parts": [{"text": answer}], "role": "model"}, "index": 0}
        if final:
            candidate["finishReason"] = "STOP"
        prompt = self._prompt_tokens(body) if prompt_tokens is None else prompt_tokens
        output = count_tokens(answer)
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": output,
                "totalTokenCount": prompt + output,
            },
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:22],
        }

    def _stream(self, body: JSON, model: str, answer: str | JSON) -> HTTPResponse:
        begun = time.monotonic()
        shape, break_after = self._stream_shape()
        if isinstance(answer, dict):
            events: list[JSON] = [answer]
        else:
            # Word-boundary chunks like the real stream (3 by default); the last one carries finishReason.
            words = re.findall(r"\S+\s*|\s+", answer) or [""]
            size = max(1, math.ceil(len(words) / (shape.chunks or 3)))
            pieces = ["".join(words[i : i + size]) for i in range(0, len(words), size)]
            prompt = self._prompt_tokens(body)  # once: the system prompt alone is ~15 KB of text to count
            events = [
                self._response_body(body, model, piece, final=i == len(pieces) - 1, prompt_tokens=prompt)
                for i, piece in enumerate(pieces)
            ]
        encoded = [b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\r\n\r\n" for event in events]
        return HTTPResponse(
            200, headers={"Content-Type": "text/event-stream"}, chunks=self._paced(encoded, shape, break_after, begun)
        )


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.gemini_server --port N``: serve the fake Gemini API until interrupted."""
    serve_ai_fake(
        FakeGeminiServer,
        "Local fake of the Gemini API",
        "reject other keys with 400 like Google does",
        "fake Gemini API (use api_version v1)",
        argv,
    )


if __name__ == "__main__":
    main()
