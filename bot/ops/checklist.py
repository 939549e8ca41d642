"""`marketingbot check`: the go-live checklist (DESIGN §4) and deploy.sh's smoke test.

Every item is checked even after another failed, and each yields one line: `✔ item` (with what was found) or
`✖ item — how to fix it`. Secrets never appear: tokens are shown as `123456:****`, and every line is scrubbed
of the configured secrets before it is printed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot.config import Settings
from bot.ops.preflight import backend_problems, credentials_problems, data_dir_problems, mask_token, token_problems
from gateway import AsyncSheetsGateway, GatewayError, RetryPolicy, SchemaError, SheetMissing
from gateway.schemas import ALL_SCHEMAS, QUEUE, QueueCol, QueueStatus

WORKER_STALE_AFTER = timedelta(minutes=5)
ITEM_TIMEOUT = 30.0
MINI_APP_MARKER = "telegram-web-app.js"  # every Mini App page loads Telegram's script; our index.html does
SKIPPABLE = ("spreadsheet", "sheets", "bot-token", "mini-app", "staff-chat", "ai", "worker", "prompt")


@dataclass(frozen=True)
class Item:
    """One checklist line."""

    name: str
    ok: bool
    detail: str = ""  # ✔: what was found; ✖: what is wrong and how to fix it

    def line(self) -> str:
        """`✔ name (detail)` or `✖ name — detail`."""
        if self.ok:
            return f"✔ {self.name}" + (f" ({self.detail})" if self.detail else "")
        return f"✖ {self.name} — {self.detail}"


class CheckFailed(Exception):
    """An item does not hold; the message says how to fix it."""


@dataclass
class Probe:
    """What later items learn from earlier ones (the gateway opened once, the bot's identity)."""

    gateway: AsyncSheetsGateway | None = None
    gateway_error: str = ""
    bot_username: str = ""
    token_rejected: bool = False


def service_account_email(credentials_file: Path | None) -> str | None:
    """The `client_email` of a service-account key file, or None."""
    if credentials_file is None:
        return None
    try:
        data = json.loads(credentials_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    email = data.get("client_email") if isinstance(data, dict) else None
    return email if isinstance(email, str) and email else None


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret replaced by its masked form."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, mask_token(secret))
    return text


class Checklist:
    """Runs the items of DESIGN §4 against one configuration."""

    def __init__(
        self,
        settings: Settings,
        settings_problems: Sequence[str] = (),
        *,
        skip: Collection[str] = (),
        verify: ssl.SSLContext | bool = True,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._s = settings
        self._settings_problems = list(settings_problems)
        self._skip = set(skip)
        self._verify = verify  # tests pass a context trusting their own certificate authority
        self._now = now or (lambda: datetime.now().astimezone())
        self._probe = Probe()

    async def run(self) -> list[Item]:
        """Every item, in order; an item's exception becomes its ✖ line."""
        items = [self._settings_item(), self._data_dir_item()]
        steps: list[tuple[str, str, Callable[[], Awaitable[str]]]] = [
            ("spreadsheet", "spreadsheet reachable", self._spreadsheet),
            ("sheets", "every sheet and header", self._sheets),
            ("bot-token", "bot token (getMe)", self._bot_token),
            ("mini-app", "WEBAPP_URL serves the Mini App over https", self._mini_app),
            ("staff-chat", "the bot can post to STAFF_CHAT_ID", self._staff_chat),
            ("ai", "AI provider answers", self._ai),
            ("worker", "analytics worker alive (no NEW request older than 5 minutes)", self._worker),
            ("prompt", "system prompt readable", self._prompt),
        ]
        try:
            for key, name, step in steps:
                if key in self._skip:
                    items.append(Item(name, True, "skipped on request"))
                    continue
                items.append(await self._item(name, step))
        finally:
            if self._probe.gateway is not None:
                await self._probe.gateway.close()
        secrets = self._secrets()
        return [replace(i, detail=scrub(i.detail, secrets)) for i in items]

    async def _item(self, name: str, step: Callable[[], Awaitable[str]]) -> Item:
        try:
            return Item(name, True, await asyncio.wait_for(step(), ITEM_TIMEOUT))
        except CheckFailed as exc:
            return Item(name, False, str(exc))
        except TimeoutError:
            return Item(name, False, f"no answer within {ITEM_TIMEOUT:.0f} s")
        except Exception as exc:  # an unexpected failure is still one readable line, never a traceback
            return Item(name, False, f"{type(exc).__name__}: {exc}")

    def _secrets(self) -> list[str]:
        values = [self._s.telegram_bot_token, self._s.gemini_api_key, self._s.openai_api_key]
        return [v.get_secret_value() for v in values if v is not None]

    # -- items ---------------------------------------------------------------------------------

    def _settings_item(self) -> Item:
        # What `marketingbot run` would refuse belongs on the checklist too.
        problems = self._settings_problems + backend_problems(self._s) + credentials_problems(self._s)
        if problems:
            return Item("settings", False, "; ".join(problems))
        return Item("settings", True, f"SHEETS_BACKEND={self._s.sheets_backend}")

    def _data_dir_item(self) -> Item:
        problems = data_dir_problems(self._s)
        folder = self._s.local_db_path.parent
        return Item("data directory writable", not problems, "; ".join(problems) if problems else str(folder))

    async def _gateway(self) -> AsyncSheetsGateway:
        if self._probe.gateway_error:
            raise CheckFailed(f"not checked: {self._probe.gateway_error}")
        if self._probe.gateway is not None:
            return self._probe.gateway
        from bot.app import gateway_config
        from gateway import build_gateway

        # Two attempts, not the bot's patient retries: a checklist should answer in seconds.
        cfg = replace(gateway_config(self._s), retry=RetryPolicy(max_attempts=2, max_backoff=1.0))
        gw = build_gateway(cfg)
        try:
            await gw.start()
        except BaseException:
            await gw.close()
            raise
        self._probe.gateway = gw
        return gw

    async def _spreadsheet(self) -> str:
        s = self._s
        try:
            gw = await self._gateway()
            titles = await gw.sheet_titles()
        except GatewayError as exc:
            self._probe.gateway_error = "the spreadsheet is not reachable"
            raise CheckFailed(self._spreadsheet_fix(str(exc))) from None
        if s.sheets_backend == "local":
            return f"local store {s.local_db_path}, {len(titles)} sheets"
        return f"spreadsheet {s.google_spreadsheet_id}, {len(titles)} sheets"

    def _spreadsheet_fix(self, error: str) -> str:
        s = self._s
        if s.sheets_backend == "local":
            return f"cannot open the local store {s.local_db_path}: {error}"
        if "access denied" in error or "HTTP 403" in error or "HTTP 401" in error:
            email = service_account_email(s.google_credentials_file)
            who = email or "the service account's client_email (in GOOGLE_CREDENTIALS_FILE)"
            return (
                f"access denied to spreadsheet {s.google_spreadsheet_id}: open it, Share → add {who} as Editor "
                "(and check that the Sheets API is enabled in its Google Cloud project)"
            )
        if "404" in error or "not found" in error.lower():
            return (
                f"no spreadsheet {s.google_spreadsheet_id!r}: check GOOGLE_SPREADSHEET_ID (the id in the sheet's URL)"
            )
        return f"{error} — check the network and GOOGLE_SPREADSHEET_ID"

    async def _sheets(self) -> str:
        gw = await self._gateway()
        problems = await structure_problems(gw)
        if problems:
            raise CheckFailed("; ".join(problems) + " — run `marketingbot sheets init`")
        return f"{len(ALL_SCHEMAS)} sheets with their headers"

    def _bot(self) -> Any:
        from telegram import Bot

        token = self._s.telegram_bot_token
        assert token is not None
        base = (self._s.telegram_api_base_url or "https://api.telegram.org/bot").rstrip("/")
        return Bot(token.get_secret_value(), base_url=base, base_file_url=base.removesuffix("/bot") + "/file/bot")

    async def _bot_token(self) -> str:
        problems = token_problems(self._s)
        if problems:
            raise CheckFailed(problems[0])
        from telegram.error import InvalidToken, TelegramError

        assert self._s.telegram_bot_token is not None
        masked = mask_token(self._s.telegram_bot_token.get_secret_value())
        try:
            async with self._bot() as bot:
                me = bot.bot  # initialize() called getMe
        except InvalidToken:
            self._probe.token_rejected = True
            raise CheckFailed(
                f"Telegram rejected TELEGRAM_BOT_TOKEN {masked}: copy the current token from @BotFather (/token)"
            ) from None
        except TelegramError as exc:
            raise CheckFailed(f"Telegram did not answer getMe for {masked}: {exc}") from None
        self._probe.bot_username = me.username or ""
        return f"@{me.username}, token {masked}"

    async def _mini_app(self) -> str:
        url = self._s.webapp_url
        if not url:
            raise CheckFailed("WEBAPP_URL is not set: set it to the https address of the Mini App (docs/deploy.md)")
        parsed = httpx.URL(url) if url.startswith(("http://", "https://")) else None
        if parsed is None or not parsed.host:
            raise CheckFailed(f"WEBAPP_URL {url!r} is not a URL: set it to https://your.domain/")
        if parsed.scheme != "https":
            raise CheckFailed(
                f"WEBAPP_URL {url} is not https: Telegram opens Mini Apps only over https — put the reverse proxy "
                "(deploy/Caddyfile) in front and use its https://… address"
            )
        try:
            async with httpx.AsyncClient(verify=self._verify, timeout=10, follow_redirects=True) as client:
                resp = await client.get(url)
        except httpx.HTTPError as exc:
            raise CheckFailed(
                f"{url} does not answer ({type(exc).__name__}: {exc}): check DNS, the proxy and TLS"
            ) from None
        if resp.status_code != 200:
            raise CheckFailed(f"{url} answered HTTP {resp.status_code}: the proxy must pass / to WEB_HOST:WEB_PORT")
        if MINI_APP_MARKER not in resp.text:
            raise CheckFailed(f"{url} answers, but not with the Mini App: the proxy must pass / to the bot")
        return url

    async def _staff_chat(self) -> str:
        chat_id = self._s.staff_chat_id
        if chat_id is None:
            raise CheckFailed("STAFF_CHAT_ID is not set: add the bot to the staff group and put the group's id here")
        if token_problems(self._s) or self._probe.token_rejected:
            raise CheckFailed("not checked: TELEGRAM_BOT_TOKEN is not usable (see the bot token line)")
        from telegram.constants import ChatAction, ChatMemberStatus
        from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError

        add = f"add the bot{' @' + self._probe.bot_username if self._probe.bot_username else ''} to that group"
        try:
            async with self._bot() as bot:
                chat = await bot.get_chat(chat_id)
                if chat.type != "private":
                    member = await bot.get_chat_member(chat_id, bot.id)
                    if member.status in (ChatMemberStatus.LEFT, ChatMemberStatus.BANNED):
                        raise CheckFailed(f"the bot is not a member of chat {chat_id}: {add}")
                    if member.status == ChatMemberStatus.RESTRICTED and not getattr(member, "can_send_messages", True):
                        raise CheckFailed(f"the bot may not send messages in chat {chat_id}: lift the restriction")
                # A typing indicator proves the bot may post, without a message in the staff chat.
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
        except InvalidToken:
            raise CheckFailed("not checked: Telegram rejected TELEGRAM_BOT_TOKEN") from None
        except (BadRequest, Forbidden) as exc:
            raise CheckFailed(
                f"the bot cannot reach chat {chat_id} ({exc.message}): {add}, or fix STAFF_CHAT_ID"
            ) from None
        except TelegramError as exc:
            raise CheckFailed(f"Telegram error for chat {chat_id}: {exc}") from None
        return f"{chat.title or chat.first_name or chat_id}"

    async def _ai(self) -> str:
        from bot.ai.factory import close_ai
        from bot.app import ai_for

        provider = self._s.effective_ai_provider
        if provider == "offline":
            return "offline responder: answers from База знаний; set GEMINI_API_KEY for Gemini"
        ai = ai_for(self._s)
        try:
            text = await ai.primary.generate("Ответь одним словом.", [], "Проверка связи: ответь «ок».", [])
        except Exception as exc:
            raise CheckFailed(
                f"{provider} did not answer ({type(exc).__name__}: {exc}): check its API key and model"
            ) from None
        finally:
            await close_ai(ai)
        if not text.strip():
            raise CheckFailed(f"{provider} answered with nothing")
        return f"{ai.primary.name}"

    async def _worker(self) -> str:
        from bot.services.sheet_time import MOSCOW, parse_stamp

        gw = await self._gateway()
        if self._probe.gateway_error:
            raise CheckFailed(f"not checked: {self._probe.gateway_error}")
        try:
            rows = await gw.table(QUEUE).select([QueueCol.ID, QueueCol.CREATED_AT, QueueCol.STATUS])
        except GatewayError as exc:
            raise CheckFailed(f"cannot read «{QUEUE.title}»: {exc}") from None
        now = self._now()
        stale = []
        for row in rows:
            if row[QueueCol.STATUS].strip().upper() != QueueStatus.NEW:
                continue
            created = parse_stamp(row[QueueCol.CREATED_AT], MOSCOW)
            if created is not None and now - created > WORKER_STALE_AFTER:
                stale.append((created, row[QueueCol.ID]))
        if stale:
            oldest, rid = min(stale)
            raise CheckFailed(
                f"{len(stale)} request(s) in «{QUEUE.title}» still NEW after 5 minutes (oldest {rid}, "
                f"{oldest:%Y-%m-%d %H:%M}): start the worker — the Apps Script trigger (gas/README.md) or "
                "`systemctl start marketingbot-worker`"
            )
        return "no request waiting"

    async def _prompt(self) -> str:
        from bot.ai.prompt import SystemPrompt
        from bot.app import prompt_values

        try:
            SystemPrompt(self._s.prompt_path, prompt_values(self._s))
        except Exception as exc:
            raise CheckFailed(f"{self._s.prompt_path}: {exc}") from None
        return str(self._s.prompt_path)


async def structure_problems(gw: AsyncSheetsGateway) -> list[str]:
    """Missing sheets and headers, each named (empty: the structure is complete); the gateway's one probe."""
    faults = await gw.structure_problems()
    missing = [f.sheet for f in faults if isinstance(f, SheetMissing)]
    problems = [("missing sheets " if len(missing) > 1 else "missing sheet ") + ", ".join(f"«{t}»" for t in missing)]
    problems = problems if missing else []
    lacking = [f for f in faults if isinstance(f, SchemaError) and not isinstance(f, SheetMissing)]
    return problems + [f"sheet «{f.sheet}» lacks " + ", ".join(f"«{h}»" for h in f.columns) for f in lacking]


async def run_checklist(settings: Settings, settings_problems: Sequence[str] = (), **options: Any) -> list[Item]:
    """The checklist's items for `settings` (see Checklist)."""
    return await Checklist(settings, settings_problems, **options).run()


async def structure_refusal(settings: Settings, within: float = 20.0) -> list[str]:
    """`marketingbot run`'s sheet check: one line when the sheet answers and lacks a sheet or header.

    A sheet that does not answer is no reason to refuse (the bot starts degraded and the outbox holds its
    writes), so then this returns nothing.
    """
    from bot.app import gateway_config
    from gateway import build_gateway

    cfg = replace(gateway_config(settings), retry=RetryPolicy(max_attempts=2, max_backoff=1.0))
    gw = build_gateway(cfg)
    try:
        async with asyncio.timeout(within):
            await gw.start()
            problems = await structure_problems(gw)
    except (GatewayError, TimeoutError):
        return []
    finally:
        await gw.close()
    if not problems:
        return []
    where = (
        f"GOOGLE_SPREADSHEET_ID ({settings.google_spreadsheet_id})"
        if settings.sheets_backend == "google"
        else f"LOCAL_DB_PATH ({settings.local_db_path})"
    )
    return [f"{where}: " + "; ".join(problems) + " — run `marketingbot sheets init`"]
