"""python-telegram-bot's networking over aiohttp (PTB's documented extension point, `BaseRequest`).

PTB's own backend is httpx. Under a burst of partners the bot makes hundreds of Bot API calls a minute (drafts,
chat actions, replies), and httpcore's pool looks at every pooled connection, with system calls, each time a
request starts or ends; measured in bench/chat.py that was the largest single item of the event loop's CPU,
time every other partner's turn waits for. aiohttp's pool does not. Behaviour is PTB's: the same parameters
(form fields, files as multipart), the same errors (`TimedOut`, `NetworkError`; PTB maps status codes, flood
limits included), the same timeouts per call, the same pool size (256). The session is bot/warm_pools.py's.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput, UploadFileDict
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot.warm_pools import api_session

TELEGRAM_URL = "https://api.telegram.org/"  # PTB's default Bot API server


class AiohttpRequest(BaseRequest):
    """A `BaseRequest` over one aiohttp session (made in `initialize`, inside the event loop) to the Bot API at
    `api_url` (it picks the environment's proxy, if any)."""

    def __init__(
        self,
        connection_pool_size: int = 256,
        *,
        api_url: str = TELEGRAM_URL,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._api_url = api_url
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        """See `BaseRequest.read_timeout`."""
        return self._read_timeout

    async def initialize(self) -> None:
        """See `BaseRequest.initialize`."""
        if self._session is None or self._session.closed:
            self._session = api_session(self._pool_size, self._api_url, headers={"User-Agent": self.USER_AGENT})

    async def shutdown(self) -> None:
        """See `BaseRequest.shutdown`."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """See `BaseRequest.do_request`."""
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        fields = request_data.json_parameters if request_data else {}
        files = request_data.multipart_data if request_data else {}
        read = self._read_timeout if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = self._connect_timeout if isinstance(connect_timeout, DefaultValue) else connect_timeout
        pool = self._pool_timeout if isinstance(pool_timeout, DefaultValue) else pool_timeout
        write = write_timeout
        if isinstance(write, DefaultValue):
            write = self._media_write_timeout if files else self._write_timeout
        # aiohttp has no separate write timeout: the call as a whole gets the sum of its phases (none when any
        # phase may wait forever); reads wait `read` at most between two pieces of the answer.
        phases = (pool, connect, write, read)
        total = None if any(p is None for p in phases) else sum(p for p in phases if p is not None)
        timeout = aiohttp.ClientTimeout(
            total=total,
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=read,
        )
        try:
            async with session.request(method, url, data=_body(fields, files), timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as err:  # aiohttp's own timeouts are TimeoutErrors too
            raise TimedOut from err
        except aiohttp.ClientError as err:
            raise NetworkError(f"aiohttp.{err.__class__.__name__}: {err}") from err


def _body(fields: dict[str, str], files: UploadFileDict) -> Any:
    """The call's parameters as PTB sends them: form fields, and a multipart form when files go along."""
    if not files:
        return fields or None
    # Unquoted: Telegram takes a UTF-8 file name as is (quoted, a Cyrillic report name would show as %D0%BE…).
    form = aiohttp.FormData(quote_fields=False)
    for name, value in fields.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in files.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form
