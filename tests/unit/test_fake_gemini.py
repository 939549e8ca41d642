"""The fake Gemini API answers the real google-genai client and records what it was sent."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types
from google.genai.client import AsyncClient

from tests.fakes.gemini_server import FakeGeminiServer, FakeTimeout

ROOT = Path(__file__).resolve().parents[2]
MODEL = "gemini-2.5-flash"
# google-genai 3.x defaults to v1 (1.x used v1beta); pinned explicitly as the bot does.
API_VERSION = "v1"


@asynccontextmanager
async def genai_client(
    server: FakeGeminiServer, *, api_key: str = "test", timeout_ms: int | None = None, api_version: str = API_VERSION
) -> AsyncIterator[AsyncClient]:
    """A real async google-genai client pointed at the fake.

    The sync ``Client`` must stay referenced while ``.aio`` is used: its finalizer closes the aiohttp session
    under a request in flight.
    """
    options = types.HttpOptions(base_url=server.url, api_version=api_version, timeout=timeout_ms)
    client = genai.Client(api_key=api_key, http_options=options)
    async with client.aio as aio:
        yield aio


HISTORY = [
    types.Content(role="user", parts=[types.Part(text="Какая комиссия по ЖК «Север»?")]),
    types.Content(role="model", parts=[types.Part(text="3% от стоимости.")]),
    types.Content(role="user", parts=[types.Part(text="А по ЖК «Юг»?")]),
]


async def test_generate_content_returns_text_and_records_the_request(gemini_server: FakeGeminiServer) -> None:
    """The reply is a deterministic echo; the record holds model, version, system prompt, history and key."""
    async with genai_client(gemini_server) as client:
        response = await client.models.generate_content(
            model=MODEL,
            contents=HISTORY,
            config=types.GenerateContentConfig(system_instruction="Ты помощник агентства.", temperature=0.2),
        )
    assert response.text == "Эхо: А по ЖК «Юг»?"
    assert response.candidates is not None and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata is not None and response.usage_metadata.total_token_count
    request = gemini_server.last_request
    assert (request.model, request.api_version, request.method) == (MODEL, "v1", "generateContent")
    assert request.system_instruction == "Ты помощник агентства."
    assert request.contents == (
        ("user", "Какая комиссия по ЖК «Север»?"),
        ("model", "3% от стоимости."),
        ("user", "А по ЖК «Юг»?"),
    )
    assert request.generation_config == {"temperature": 0.2}
    assert request.api_key == "test"
    assert request.status == 200


async def test_custom_responder_sees_the_request_json(gemini_server: FakeGeminiServer) -> None:
    """A test-provided responder gets the request body and its text becomes the answer."""
    seen: list[dict[str, Any]] = []

    def responder(body: dict[str, Any]) -> str:
        seen.append(body)
        return f"{len(body['contents'])} сообщений в истории"

    gemini_server.set_responder(responder)
    async with genai_client(gemini_server) as client:
        response = await client.models.generate_content(model=MODEL, contents=HISTORY)
    assert response.text == "3 сообщений в истории"
    assert seen[0]["contents"][1]["role"] == "model"


@pytest.mark.parametrize(
    ("status", "error_type", "google_status"),
    [
        (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
        (500, errors.ServerError, "INTERNAL"),
        (503, errors.ServerError, "UNAVAILABLE"),
    ],
)
async def test_injected_errors_surface_as_api_errors(
    gemini_server: FakeGeminiServer, status: int, error_type: type[errors.APIError], google_status: str
) -> None:
    """fail_next answers in Google's error shape; google-genai raises the matching APIError subclass once."""
    gemini_server.fail_next(1, status=status, retry_after=7)
    async with genai_client(gemini_server) as client:
        with pytest.raises(error_type) as caught:
            await client.models.generate_content(model=MODEL, contents="привет")
        assert (await client.models.generate_content(model=MODEL, contents="привет")).text == "Эхо: привет"
    assert caught.value.code == status
    assert caught.value.status == google_status
    assert caught.value.details["error"]["details"][0]["retryDelay"] == "7s"
    assert [r.status for r in gemini_server.requests] == [status, 200]


async def test_hang_trips_the_client_timeout(gemini_server: FakeGeminiServer) -> None:
    """hang_next holds the answer long enough for a client timeout; the next call is served normally."""
    gemini_server.hang_next(1, seconds=5)
    async with genai_client(gemini_server, timeout_ms=200) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # aiohttp's timeout, a builtin TimeoutError; not an APIError
            await client.models.generate_content(model=MODEL, contents="привет")
        assert time.monotonic() - started < 5
        assert (await client.models.generate_content(model=MODEL, contents="ещё")).text == "Эхо: ещё"


async def test_latency_delays_answers(gemini_server: FakeGeminiServer) -> None:
    """set_latency holds every answer for at least that long."""
    gemini_server.set_latency(0.2)
    async with genai_client(gemini_server) as client:
        started = time.monotonic()
        await client.models.generate_content(model=MODEL, contents="привет")
        assert time.monotonic() - started >= 0.2


async def test_streaming_yields_chunks_of_the_full_answer(gemini_server: FakeGeminiServer) -> None:
    """streamGenerateContent (SSE) sends the answer in several chunks that add up to the full text."""
    async with genai_client(gemini_server) as client:
        stream = await client.models.generate_content_stream(model=MODEL, contents="один два три четыре")
        chunks = [chunk.text async for chunk in stream]
    assert len(chunks) > 1
    assert "".join(c or "" for c in chunks) == "Эхо: один два три четыре"
    assert gemini_server.last_request.method == "streamGenerateContent"


async def test_wrong_api_key_is_rejected() -> None:
    """With an api_key configured, other keys get Google's 400 'API key not valid'."""
    with FakeGeminiServer(api_key="right") as server:
        async with genai_client(server, api_key="wrong") as client:
            with pytest.raises(errors.ClientError, match="API key not valid"):
                await client.models.generate_content(model=MODEL, contents="x")
        async with genai_client(server, api_key="right") as client:
            assert (await client.models.generate_content(model=MODEL, contents="x")).text == "Эхо: x"


async def test_models_get_and_v1beta(gemini_server: FakeGeminiServer) -> None:
    """models.get answers minimally, and the older v1beta path is served and recorded as such."""
    async with genai_client(gemini_server) as client:
        model = await client.models.get(model=MODEL)
    assert model.name == f"models/{MODEL}"
    async with genai_client(gemini_server, api_version="v1beta") as beta:
        await beta.models.generate_content(model=MODEL, contents="x")
    assert gemini_server.last_request.api_version == "v1beta"


async def test_invalid_requests_are_refused(gemini_server: FakeGeminiServer) -> None:
    """A body with a role other than user/model is a 400 INVALID_ARGUMENT, as Gemini answers."""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{gemini_server.url}/v1/models/{MODEL}:generateContent",
            json={"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_wait_for_requests(gemini_server: FakeGeminiServer) -> None:
    """wait_for_requests returns once enough calls arrived and times out otherwise."""
    async with genai_client(gemini_server) as client:
        await client.models.generate_content(model=MODEL, contents="x")
    assert len(await gemini_server.wait_for_requests(1, timeout=1)) == 1
    with pytest.raises(FakeTimeout):
        await gemini_server.wait_for_requests(2, timeout=0.1)


def test_standalone_server_and_control_api() -> None:
    """``python -m tests.fakes.gemini_server`` serves generateContent and takes faults over /_fake."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.gemini_server", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[0]
        httpx.post(f"{url}/_fake/fail_next", json={"n": 1, "status": 503}).raise_for_status()
        endpoint = f"{url}/v1/models/{MODEL}:generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        assert httpx.post(endpoint, json=body).status_code == 503
        answer = httpx.post(endpoint, json=body).json()
        assert answer["candidates"][0]["content"]["parts"][0]["text"] == "Эхо: hi"
        assert httpx.get(f"{url}/_fake/stats").json()["result"] == {"requests": 2}
    finally:
        process.terminate()
        process.wait(10)
