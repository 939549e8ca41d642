"""A local Telegram Bot API server: real python-telegram-bot runs against it through ``base_url``.

``POST {url}/bot{token}/{method}`` with JSON, urlencoded or multipart bodies (as PTB sends them), long-polling
``getUpdates`` fed by simulated users, Telegram-like validation (entity parsing for MarkdownV2/HTML/Markdown,
length limits, blocked users, flood limits) and a record of everything the bot sent.

    with FakeTelegramServer() as telegram:
        app = ApplicationBuilder().token(telegram.token).base_url(telegram.api_base_url)
              .base_file_url(telegram.file_base_url).build()
        telegram.user_sends_text(42, "привет")
        reply = await telegram.wait_for_sent(chat_id=42)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import mimetypes
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from tests.fakes._http import (
    JSON,
    FakeServerError,
    FakeTimeout,
    HTTPRequest,
    HTTPResponse,
    LoopbackHTTPServer,
    Notifier,
    base_arg_parser,
    run_standalone,
)

DEFAULT_TOKEN = "123456789:AAFakeTelegramTokenForTests_0123456789"
MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64

#: Methods whose records ``wait_for_sent``/``sent_to`` look at unless told otherwise.
MESSAGE_METHODS: tuple[str, ...] = ("sendMessage", "sendDocument", "sendPhoto")
#: Methods that put something in front of a user and so are recorded as ``SentMessage``.
RECORDED_METHODS = frozenset(
    {
        "sendMessage",
        "sendDocument",
        "sendPhoto",
        "sendChatAction",
        "editMessageText",
        "editMessageReplyMarkup",
        "answerCallbackQuery",
        "deleteMessage",
        "sendMessageDraft",
    }
)
#: How long Telegram shows a draft that no message or newer draft replaced (the Bot API's "30-second preview").
DRAFT_LIFETIME = 30.0
# Telegram's flood control counts messages, edits included, but not chat actions.
_FLOOD_METHODS = frozenset({"sendMessage", "sendDocument", "sendPhoto", "editMessageText", "editMessageReplyMarkup"})
_CHAT_METHODS = _FLOOD_METHODS | {"sendChatAction", "deleteMessage"}
_GIFT_TYPES = {
    "unlimited_gifts": False,
    "limited_gifts": False,
    "unique_gifts": False,
    "premium_subscription": False,
    "gifts_from_channels": False,
}
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)

ChatId = int | str


# ---------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentMessage:
    """Something the bot successfully sent or did in a chat.

    ``text`` is the message text for sendMessage/editMessageText, the caption for sendDocument/sendPhoto and
    the notification text for answerCallbackQuery, exactly as the bot sent it (markup included);
    ``plain_text`` is the same after entity parsing, as the user sees it.
    """

    method: str
    chat_id: ChatId | None
    text: str | None
    parse_mode: str | None
    reply_markup: JSON | None
    message_id: int | None
    timestamp: float
    document: bytes | None = None
    filename: str | None = None
    plain_text: str | None = None
    entities: tuple[JSON, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0

    @property
    def action(self) -> str | None:
        """The chat action of a sendChatAction record."""
        value = self.params.get("action")
        return str(value) if value is not None else None

    @property
    def draft_id(self) -> int | None:
        """The draft_id of a sendMessageDraft record."""
        value = self.params.get("draft_id")
        return int(value) if value is not None else None

    @property
    def callback_query_id(self) -> str | None:
        """The query answered by an answerCallbackQuery record."""
        value = self.params.get("callback_query_id")
        return str(value) if value is not None else None

    @property
    def inline_keyboard(self) -> list[list[JSON]]:
        """Rows of inline buttons attached to the message (empty when there are none)."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [list(row) for row in rows]

    @property
    def button_data(self) -> list[str]:
        """callback_data of every inline button, row by row."""
        return [str(b["callback_data"]) for row in self.inline_keyboard for b in row if "callback_data" in b]


@dataclass(frozen=True)
class ApiCall:
    """One Bot API call, successful or not."""

    method: str
    params: Mapping[str, Any]
    status: int
    description: str | None
    timestamp: float


@dataclass(frozen=True)
class _UploadedFile:
    data: bytes
    filename: str | None
    content_type: str | None


@dataclass(frozen=True)
class _StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    filename: str | None
    mime_type: str | None
    file_path: str


@dataclass(frozen=True)
class _Fault:
    method: str | None
    chat_id: ChatId | None
    status: int
    description: str
    retry_after: int | None
    text_contains: str | None = None


class _ApiError(Exception):
    """A Bot API error reply (``ok: false``)."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def body(self) -> JSON:
        payload: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            payload["parameters"] = {"retry_after": self.retry_after}
        return payload


def _bad_request(detail: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {detail}")


# ---------------------------------------------------------------------------------------------------------
# Entity parsing (MarkdownV2, HTML, legacy Markdown) — close enough to Telegram to catch escaping bugs
# ---------------------------------------------------------------------------------------------------------


class EntityParseError(ValueError):
    """The text does not parse in its parse_mode; the message follows Telegram's wording."""


@dataclass(frozen=True)
class ParsedText:
    """Text as the user sees it and its entities (Bot API dicts, UTF-16 offsets)."""

    text: str
    entities: tuple[JSON, ...]


class _Output:
    """Collects parsed characters and entities (code-point positions until ``finish``)."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.spans: list[tuple[str, int, int, JSON]] = []

    @property
    def pos(self) -> int:
        return len(self.chars)

    def add(self, kind: str, start: int, extra: JSON | None = None) -> None:
        if self.pos > start:  # Telegram drops empty entities
            self.spans.append((kind, start, self.pos, extra or {}))

    def finish(self) -> ParsedText:
        raw = "".join(self.chars)
        # Telegram trims leading and trailing whitespace and shifts entities accordingly.
        lead = len(raw) - len(raw.lstrip())
        text = raw.strip()
        utf16 = [0]
        for ch in text:
            utf16.append(utf16[-1] + (2 if ord(ch) > 0xFFFF else 1))
        entities: list[JSON] = []
        for kind, start, end, extra in sorted(self.spans, key=lambda s: (s[1], -s[2])):
            start, end = max(0, start - lead), min(len(text), end - lead)
            if end > start:
                entities.append({"type": kind, "offset": utf16[start], "length": utf16[end] - utf16[start], **extra})
        return ParsedText(text, tuple(entities))


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_V2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "code": "Code",
    "pre": "Pre",
}


def _v2_closes(kind: str, src: str, i: int) -> int:
    """Length of the token at ``i`` that closes an open ``kind`` entity, or 0."""
    c = src[i]
    if kind == "bold" and c == "*":
        return 1
    if kind == "italic" and c == "_" and not src.startswith("__", i):
        return 1
    if kind == "underline" and src.startswith("__", i):
        return 2
    if kind == "strikethrough" and c == "~":
        return 1
    if kind == "spoiler" and src.startswith("||", i):
        return 2
    if kind in ("text_link", "custom_emoji") and c == "]":
        return 1
    return 0


def _v2_opens(src: str, i: int) -> tuple[str, int] | None:
    """The entity kind and token length that start at ``i``, or None for a stray reserved character."""
    c = src[i]
    if c == "_":
        return ("underline", 2) if src.startswith("__", i) else ("italic", 1)
    if c == "`":
        return ("pre", 3) if src.startswith("```", i) else ("code", 1)
    if c == "!" and src.startswith("![", i):
        return ("custom_emoji", 2)
    if c == "|" and src.startswith("||", i):
        return ("spoiler", 2)
    return {"*": ("bold", 1), "~": ("strikethrough", 1), "[": ("text_link", 1)}.get(c)


def _v2_url(src: str, i: int) -> tuple[str | None, int]:
    """Parse ``(url)`` at ``i``; returns the URL (None when absent) and the index after it."""
    if i >= len(src) or src[i] != "(":
        return None, i
    url: list[str] = []
    j = i + 1
    while j < len(src):
        if src[j] == "\\" and j + 1 < len(src):
            url.append(src[j + 1])
            j += 2
            continue
        if src[j] == ")":
            return "".join(url), j + 1
        url.append(src[j])
        j += 1
    raise EntityParseError(f"Can't find end of a URL at byte offset {_byte_offset(src, i)}")


def _pre_language(src: str, i: int) -> tuple[str | None, int]:
    """A language name right after an opening ``` up to the end of the line."""
    newline = src.find("\n", i)
    if newline > i and re.fullmatch(r"[^\s`\\]+", src[i:newline]):
        return src[i:newline], newline + 1
    return None, i


def parse_markdown_v2(src: str) -> ParsedText:
    """Parse MarkdownV2 the way Telegram does, raising ``EntityParseError`` with Telegram's message."""
    out = _Output()
    stack: list[tuple[str, int, int, JSON]] = []  # kind, output start, source index, extra
    quote: tuple[int, bool] | None = None  # output start, expandable
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        top = stack[-1][0] if stack else None
        if c == "\\" and i + 1 < n and 0 < ord(src[i + 1]) <= 126:
            out.chars.append(src[i + 1])
            i += 2
            continue
        if top in ("code", "pre"):
            token = "```" if top == "pre" else "`"
            if src.startswith(token, i):
                kind, start, _, extra = stack.pop()
                out.add(kind, start, extra)
                i += len(token)
            else:
                out.chars.append(c)
                i += 1
            continue
        at_line_start = i == 0 or src[i - 1] == "\n"
        if at_line_start and (c == ">" or src.startswith("**>", i)):
            expandable = c == "*"
            if quote is None:
                quote = (out.pos, expandable)
            i += 3 if expandable else 1
            continue
        if c == "\n":
            if quote is not None and not src.startswith(">", i + 1):
                out.add("expandable_blockquote" if quote[1] else "blockquote", quote[0])
                quote = None
            out.chars.append(c)
            i += 1
            continue
        if quote is not None and quote[1] and src.startswith("||", i) and (i + 2 == n or src[i + 2] == "\n"):
            i += 2  # the end marker of an expandable blockquote
            continue
        if c not in _V2_RESERVED:
            out.chars.append(c)
            i += 1
            continue
        closing = _v2_closes(top, src, i) if top else 0
        if closing:
            kind, start, _, extra = stack.pop()
            i += closing
            if kind in ("text_link", "custom_emoji"):
                url, i = _v2_url(src, i)
                if kind == "custom_emoji" and url and "id=" in url:
                    out.add(kind, start, {"custom_emoji_id": url.split("id=", 1)[1]})
                elif kind == "text_link" and url:
                    out.add(kind, start, {"url": url})
            else:
                out.add(kind, start, extra)
            continue
        opening = _v2_opens(src, i)
        if opening is None:
            raise EntityParseError(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        kind, size = opening
        source_index = i
        i += size
        language = None
        if kind == "pre":
            language, i = _pre_language(src, i)
        stack.append((kind, out.pos, source_index, {"language": language} if language else {}))
    if stack:
        kind, _, source_index, _ = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_V2_NAMES[kind]} entity at byte offset {_byte_offset(src, source_index)}"
        )
    if quote is not None:
        out.add("expandable_blockquote" if quote[1] else "blockquote", quote[0])
    return out.finish()


def parse_markdown(src: str) -> ParsedText:
    """Parse legacy Markdown (``*bold*``, ``_italic_``, backticks, ``[text](url)``); no nesting."""
    out = _Output()
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.chars.append(src[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.chars.append(c)
            i += 1
            continue
        unclosed = EntityParseError(f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}")
        start = out.pos
        if c == "[":
            end = src.find("]", i + 1)
            if end < 0:
                raise unclosed
            out.chars.extend(src[i + 1 : end])
            i = end + 1
            if i < n and src[i] == "(":
                close = src.find(")", i + 1)
                if close < 0:
                    raise EntityParseError(f"Can't find end of a URL at byte offset {_byte_offset(src, i)}")
                out.add("text_link", start, {"url": src[i + 1 : close]})
                i = close + 1
            continue
        marker = "```" if src.startswith("```", i) else c
        end = src.find(marker, i + len(marker))
        if end < 0:
            raise unclosed
        body_start = i + len(marker)
        extra: JSON = {}
        if marker == "```":
            language, body_start = _pre_language(src, body_start)
            if language:
                extra["language"] = language
        out.chars.extend(src[body_start:end])
        kind = {"*": "bold", "_": "italic", "`": "code", "```": "pre"}[marker]
        out.add(kind, start, extra)
        i = end + len(marker)
    return out.finish()


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|lt|gt|amp|quot);")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ATTR = re.compile(r"\s*([a-zA-Z0-9_-]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>\"']+))?")


def _html_unescape(value: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("#x"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
        return _HTML_NAMED[name]

    return _HTML_ENTITY.sub(replace, value)


def _html_entity(tag: str, attrs: Mapping[str, str], out: _Output, start: int) -> None:
    kind = _HTML_TAGS[tag]
    if kind == "text_link":
        if attrs.get("href"):
            out.add(kind, start, {"url": attrs["href"]})
    elif kind == "custom_emoji":
        out.add(kind, start, {"custom_emoji_id": attrs.get("emoji-id", "")})
    elif kind == "blockquote":
        out.add("expandable_blockquote" if "expandable" in attrs else kind, start)
    elif kind == "code" and attrs.get("class", "").startswith("language-"):
        out.add(kind, start, {"language": attrs["class"].removeprefix("language-")})
    else:
        out.add(kind, start)


def parse_html(src: str) -> ParsedText:
    """Parse Telegram's HTML subset; unsupported or unbalanced tags raise ``EntityParseError``."""
    out = _Output()
    stack: list[tuple[str, int, dict[str, str]]] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "&":
            match = _HTML_ENTITY.match(src, i)
            out.chars.append(_html_unescape(match.group(0)) if match else "&")
            i = match.end() if match else i + 1
            continue
        if c != "<":
            out.chars.append(c)
            i += 1
            continue
        offset = _byte_offset(src, i)
        if src.startswith("</", i):
            end = src.find(">", i)
            if end < 0:
                raise EntityParseError(f"Unclosed end tag at byte offset {offset}")
            name = src[i + 2 : end].strip().lower()
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {offset}")
            open_tag, start, open_attrs = stack[-1]
            if name and name != open_tag:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {offset}, expected "</{open_tag}>", found "</{name}>"'
                )
            stack.pop()
            _html_entity(open_tag, open_attrs, out, start)
            i = end + 1
            continue
        name_match = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)").match(src, i)
        name = name_match.group(1).lower() if name_match else ""
        if name_match is None or name not in _HTML_TAGS:
            raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {offset}')
        j = name_match.end()
        attrs: dict[str, str] = {}
        while j < n and src[j] != ">":
            attr = _HTML_ATTR.match(src, j)
            if attr is None or attr.end() == j:
                raise EntityParseError(f'Empty attribute name in the tag "{name}" at byte offset {offset}')
            value = attr.group(2) or ""
            if value[:1] in ("'", '"'):
                value = value[1:-1]
            attrs[attr.group(1).lower()] = _html_unescape(value)
            j = attr.end()
            while j < n and src[j] in " \t\r\n":
                j += 1
        if j >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {offset}")
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        stack.append((name, out.pos, attrs))
        i = j + 1
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.finish()


def parse_entities(text: str, parse_mode: str | None) -> ParsedText:
    """Text and entities after parsing ``text`` in ``parse_mode`` (None: plain text)."""
    mode = (parse_mode or "").lower()
    if mode == "markdownv2":
        return parse_markdown_v2(text)
    if mode == "markdown":
        return parse_markdown(text)
    if mode == "html":
        return parse_html(text)
    if mode:
        raise _bad_request(f"unsupported parse_mode {parse_mode}")
    out = _Output()
    out.chars.extend(text)
    return out.finish()


# ---------------------------------------------------------------------------------------------------------
# Request parameters: JSON, urlencoded and multipart bodies as the Bot API accepts them
# ---------------------------------------------------------------------------------------------------------

_DISPOSITION_PARAM = re.compile(r';\s*([\w*-]+)=("(?:[^"\\]|\\.)*"|[^;]*)')


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, Any], dict[str, _UploadedFile]]:
    boundary_match = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary_match is None:
        raise _bad_request("invalid multipart body")
    params: dict[str, Any] = {}
    files: dict[str, _UploadedFile] = {}
    for section in body.split(b"--" + boundary_match.group(1).encode())[1:]:
        if section.startswith(b"--"):
            break
        head, _, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            header, _, header_value = line.partition(":")
            headers[header.strip().lower()] = header_value.strip()
        disposition: dict[str, str] = {}
        for key, raw in _DISPOSITION_PARAM.findall(headers.get("content-disposition", "")):
            value = raw[1:-1].replace('\\"', '"').replace("%22", '"') if raw.startswith('"') else raw
            if key.endswith("*"):  # RFC 5987: utf-8''percent-encoded
                key, value = key[:-1], unquote(value.split("''", 1)[-1])
            disposition.setdefault(key.lower(), value)
        field_name = disposition.get("name")
        if not field_name:
            continue
        if "filename" in disposition:
            files[field_name] = _UploadedFile(content, disposition["filename"], headers.get("content-type"))
        else:
            params[field_name] = content.decode("utf-8")
    return params, files


def _parse_params(request: HTTPRequest) -> tuple[dict[str, Any], dict[str, _UploadedFile]]:
    params: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
    files: dict[str, _UploadedFile] = {}
    content_type = request.headers.get("content-type", "")
    if not request.body:
        return params, files
    if content_type.startswith("application/json"):
        try:
            body = json.loads(request.body)
        except ValueError as exc:
            raise _bad_request("can't parse JSON object") from exc
        if not isinstance(body, dict):
            raise _bad_request("can't parse JSON object")
        params.update(body)
    elif content_type.startswith("multipart/form-data"):
        form, files = _parse_multipart(request.body, content_type)
        params.update(form)
    else:
        params.update(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    return params, files


def _json_param(params: Mapping[str, Any], name: str) -> Any:
    """A parameter that may arrive JSON-encoded in a string (form bodies) or as a value (JSON bodies)."""
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise _bad_request(f"can't parse {name} JSON object") from exc
    return value


def _int_param(params: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise _bad_request(f"invalid {name} specified") from exc


def _float_param(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError) as exc:
        raise _bad_request(f"invalid {name} specified") from exc


def _bool_param(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def _str_param(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    return None if value is None else str(value)


def _chat_key(value: Any) -> ChatId:
    """Chat ids arrive as ints or strings; ``@username`` stays a string."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def _utf16_len(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


# ---------------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------------


class FakeTelegramServer(LoopbackHTTPServer):
    """A local Bot API with simulated users, validation like Telegram's and a record of what the bot sent."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "marketing_test_bot",
        bot_first_name: str = "MarketingBot",
        latency: float = 0.0,
        max_poll_timeout: float = 50.0,
        webhook_retry_interval: float = 0.5,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.token = token
        self._bot_user: JSON = {
            "id": int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._max_poll_timeout = max_poll_timeout
        self._webhook_retry_interval = webhook_retry_interval
        self._cond = threading.Condition()
        self._notifier = Notifier(self._cond)
        self._latency = latency
        self._updates: list[JSON] = []  # not yet confirmed through getUpdates' offset
        self._next_update_id = 100_000
        self._delivered_update_id = 0  # highest update_id handed to the bot
        self._poll_generation = 0
        self._message_ids: Counter[ChatId] = Counter()
        self._messages: dict[tuple[ChatId, int], JSON] = {}
        self._users: dict[int, JSON] = {}
        self._named_chats: dict[str, int] = {}
        self._callback_queries: dict[str, JSON] = {}
        self._files: dict[str, _StoredFile] = {}
        self._sent: list[SentMessage] = []
        self._seq = itertools.count(1)
        self._consumed: set[int] = set()
        self._calls: list[ApiCall] = []
        self._counters: Counter[str] = Counter()
        self._blocked: set[ChatId] = set()
        self._left_groups: set[ChatId] = set()  # groups the bot is not (or no longer) a member of
        self._faults: list[_Fault] = []
        self._per_chat_rate: float | None = None
        self._global_rate: float | None = None
        self._chat_sends: dict[ChatId, deque[float]] = {}
        self._global_sends: deque[float] = deque()
        self._webhook: JSON | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._webhook_thread: threading.Thread | None = None
        self._commands: dict[str, list[JSON]] = {}
        self._menu_buttons: dict[ChatId | None, JSON] = {}
        self._members: dict[tuple[int, int], str] = {}  # (group chat, user) → ChatMember status
        self._draft_refusal: tuple[int, str] | None = None
        self._methods: dict[str, Callable[[dict[str, Any], dict[str, _UploadedFile]], Any]] = {
            name.lower(): getattr(self, f"_api_{name}")
            for name in (
                "getMe",
                "logOut",
                "close",
                "getUpdates",
                "setWebhook",
                "deleteWebhook",
                "getWebhookInfo",
                "sendMessage",
                "sendDocument",
                "sendPhoto",
                "sendChatAction",
                "getChat",
                "getChatMember",
                "sendMessageDraft",
                "editMessageText",
                "editMessageReplyMarkup",
                "deleteMessage",
                "answerCallbackQuery",
                "setMyCommands",
                "getMyCommands",
                "deleteMyCommands",
                "setChatMenuButton",
                "getChatMenuButton",
                "getFile",
                "getChatMember",
            )
        }

    # URLs --------------------------------------------------------------------------------------------------

    @property
    def api_base_url(self) -> str:
        """What PTB's ``base_url``/``TELEGRAM_API_BASE_URL`` takes: ``{url}/bot`` (the token is appended)."""
        return f"{self.url}/bot"

    @property
    def file_base_url(self) -> str:
        """What PTB's ``base_file_url`` takes: ``{url}/file/bot``."""
        return f"{self.url}/file/bot"

    @property
    def bot_user(self) -> JSON:
        """The bot's own User object as getMe returns it."""
        return dict(self._bot_user)

    # knobs -------------------------------------------------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Delay every Bot API call by ``seconds`` before handling it."""
        with self._cond:
            self._latency = seconds

    def block_chat(self, chat_id: ChatId) -> None:
        """Make the user behind ``chat_id`` block the bot: sends answer 403 Forbidden."""
        with self._cond:
            self._blocked.add(_chat_key(chat_id))

    def remove_bot_from_chat(self, chat_id: ChatId) -> None:
        """The bot leaves (or was never added to) group ``chat_id``: getChat answers 400 «chat not found»,
        sends 403, getChatMember of the bot says ``left``."""
        with self._cond:
            self._left_groups.add(_chat_key(chat_id))

    def unblock_chat(self, chat_id: ChatId) -> None:
        """Undo ``block_chat``."""
        with self._cond:
            self._blocked.discard(_chat_key(chat_id))

    def fail_next(
        self,
        method: str | None = None,
        n: int = 1,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        chat_id: ChatId | None = None,
        text_contains: str | None = None,
    ) -> None:
        """Answer the next ``n`` calls (of ``method``/to ``chat_id``/whose ``text`` or ``caption`` contains
        ``text_contains``, when given) with an error."""
        default = {
            400: "Bad Request: chat not found",
            409: "Conflict: terminated by other getUpdates request",
            429: f"Too Many Requests: retry after {retry_after}",
            500: "Internal Server Error",
            502: "Bad Gateway",
        }.get(status, f"Error {status}")
        fault = _Fault(
            method.lower() if method else None,
            _chat_key(chat_id) if chat_id is not None else None,
            status,
            description or default,
            retry_after,
            text_contains,
        )
        with self._cond:
            self._faults.extend([fault] * n)

    def flood_next(
        self, n: int = 1, retry_after: int = 3, method: str | None = None, chat_id: ChatId | None = None
    ) -> None:
        """Answer the next ``n`` matching calls with 429 Too Many Requests and ``retry_after``."""
        self.fail_next(method, n, 429, f"Too Many Requests: retry after {retry_after}", retry_after, chat_id)

    def set_flood_limits(
        self, per_chat_per_second: float | None = None, global_per_second: float | None = None
    ) -> None:
        """Enforce Telegram-like flood limits (e.g. 1/s per chat, 30/s overall); None switches one off."""
        with self._cond:
            self._per_chat_rate = per_chat_per_second
            self._global_rate = global_per_second
            self._chat_sends.clear()
            self._global_sends.clear()

    def refuse_drafts(self, status: int = 400, description: str | None = None) -> None:
        """Refuse every sendMessageDraft from now on, as an older server or client does: 400 (e.g. "method is
        not available") or 404 Not Found (a Bot API server without the method); ``accept_drafts`` undoes it."""
        default = "Not Found" if status == 404 else "Bad Request: method is not available"
        with self._cond:
            self._draft_refusal = (status, description or default)

    def accept_drafts(self) -> None:
        """Undo ``refuse_drafts``."""
        with self._cond:
            self._draft_refusal = None

    def reset(self) -> None:
        """Forget sent records, calls, counters and pending faults; keep users, messages and updates."""
        with self._cond:
            self._sent.clear()
            self._consumed.clear()
            self._calls.clear()
            self._counters.clear()
            self._faults.clear()

    # simulated users ---------------------------------------------------------------------------------------

    def user_sends_text(self, user_id: int, text: str, **user: Any) -> JSON:
        """A user writes ``text`` to the bot in a private chat; a leading /command gets its entity."""
        fields: JSON = {"text": text}
        command = re.match(r"/[A-Za-z0-9_]+(@\w+)?", text)
        if command:
            fields["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(command.group(0))}]
        return self.user_sends_message(user_id, fields, **user)

    def user_sends_command(self, user_id: int, command: str, **user: Any) -> JSON:
        """A user sends ``/command [args]`` (with a bot_command entity, as Telegram adds it)."""
        if not command.startswith("/"):
            raise FakeServerError(f"a command starts with '/', got {command!r}")
        return self.user_sends_text(user_id, command, **user)

    def user_sends_contact(
        self,
        user_id: int,
        phone: str,
        contact_user_id: int | None = None,
        *,
        omit_user_id: bool = False,
        contact_first_name: str | None = None,
        **user: Any,
    ) -> JSON:
        """A user shares a contact: their own by default (as the request_contact button does).

        ``contact_user_id`` shares someone else's Telegram account; ``omit_user_id`` a phone-book contact
        that has no Telegram account.
        """
        sender = self._user(user_id, **user)
        contact: JSON = {"phone_number": phone, "first_name": contact_first_name or sender["first_name"]}
        if not omit_user_id:
            contact["user_id"] = user_id if contact_user_id is None else contact_user_id
        return self.user_sends_message(user_id, {"contact": contact}, **user)

    def user_presses_button(
        self, user_id: int, callback_data: str, message_id: int, *, chat_id: ChatId | None = None, **user: Any
    ) -> JSON:
        """A user presses an inline button under the bot's message ``message_id``; returns the update.

        The callback query id is ``update["callback_query"]["id"]``.
        """
        sender = self._user(user_id, **user)
        chat = _chat_key(chat_id if chat_id is not None else user_id)
        with self._cond:
            message = self._messages.get((chat, message_id)) or {
                "message_id": message_id,
                "from": dict(self._bot_user),
                "chat": self._chat(chat),
                "date": int(time.time()),
                "text": "",
            }
            query_id = f"{user_id}{self._next_update_id}"
            query: JSON = {
                "id": query_id,
                "from": sender,
                "message": json.loads(json.dumps(message)),
                "chat_instance": f"ci{abs(hash(chat)) % 10**12}",
                "data": callback_data,
            }
            self._callback_queries[query_id] = {"chat_id": chat, "answered": False}
        return self.enqueue_update({"callback_query": query})

    def user_sends_photo(
        self, user_id: int, *, data: bytes = b"\x89PNG fake photo", caption: str | None = None, **user: Any
    ) -> JSON:
        """A user sends a photo (a non-text message); the bytes are downloadable through getFile."""
        stored = self._store_file(data, "photo.jpg", "image/jpeg", "photos")
        photo = [
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "width": 320,
                "height": 240,
                "file_size": len(data),
            }
        ]
        fields: JSON = {"photo": photo}
        if caption is not None:
            fields["caption"] = caption
        return self.user_sends_message(user_id, fields, **user)

    def user_sends_sticker(self, user_id: int, *, emoji: str = "👍", **user: Any) -> JSON:
        """A user sends a sticker (a non-text message)."""
        stored = self._store_file(b"fake sticker", "sticker.webp", "image/webp", "stickers")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        return self.user_sends_message(user_id, {"sticker": sticker}, **user)

    def user_sends_message(self, user_id: int, fields: Mapping[str, Any], **user: Any) -> JSON:
        """A user sends a private message with arbitrary Message ``fields`` (voice, document, location…)."""
        sender = self._user(user_id, **user)
        with self._cond:
            chat = self._chat(user_id)
            message = {
                "message_id": self._new_message_id(user_id),
                "from": sender,
                "chat": chat,
                "date": int(time.time()),
                **fields,
            }
        return self.enqueue_update({"message": message})

    def set_chat_member(self, chat_id: int, user_id: int, status: str = "member", **user: Any) -> None:
        """Make ``user_id`` a member of group ``chat_id`` with a ChatMember ``status`` (creator, administrator,
        member, restricted, left, kicked); users never set are ``left``."""
        if status not in ("creator", "administrator", "member", "restricted", "left", "kicked"):
            raise FakeServerError(f"unknown chat member status {status!r}")
        self._user(user_id, **user)
        with self._cond:
            self._members[(chat_id, user_id)] = status

    def user_sends_group_text(
        self, chat_id: int, user_id: int, text: str, *, reply_to_message_id: int | None = None, **user: Any
    ) -> JSON:
        """A user writes ``text`` in group ``chat_id``, optionally as a Telegram reply to message
        ``reply_to_message_id`` of that chat (the replied-to message is embedded as Telegram does)."""
        if chat_id >= 0:
            raise FakeServerError("a group chat id is negative")
        sender = self._user(user_id, **user)
        with self._cond:
            message: JSON = {
                "message_id": self._new_message_id(chat_id),
                "from": sender,
                "chat": self._chat(chat_id),
                "date": int(time.time()),
                "text": text,
            }
            if reply_to_message_id is not None:
                original = self._messages.get((chat_id, reply_to_message_id))
                if original is None:
                    raise FakeServerError(f"no message {reply_to_message_id} in chat {chat_id} to reply to")
                message["reply_to_message"] = json.loads(json.dumps(original))
            self._messages[(chat_id, message["message_id"])] = message
        return self.enqueue_update({"message": message})

    def enqueue_update(self, update: Mapping[str, Any]) -> JSON:
        """Queue a raw Update (``update_id`` is assigned when missing); returns the queued update."""
        with self._cond:
            queued = dict(update)
            if "update_id" not in queued:
                queued["update_id"] = self._next_update_id
            self._next_update_id = max(self._next_update_id, int(queued["update_id"])) + 1
            self._updates.append(queued)
            self._notifier.notify()
        copy: JSON = json.loads(json.dumps(queued))
        return copy

    # inspection --------------------------------------------------------------------------------------------

    @property
    def sent(self) -> list[SentMessage]:
        """Everything the bot sent, oldest first."""
        with self._cond:
            return list(self._sent)

    def sent_to(self, chat_id: ChatId, methods: Collection[str] | None = MESSAGE_METHODS) -> list[SentMessage]:
        """What the bot sent to ``chat_id`` (messages and files by default; ``methods=None`` for all)."""
        key = _chat_key(chat_id)
        with self._cond:
            return [s for s in self._sent if s.chat_id == key and (methods is None or s.method in methods)]

    def drafts_to(self, chat_id: ChatId) -> list[SentMessage]:
        """Every draft shown in ``chat_id``, oldest first (``params["draft_id"]`` tells the parts apart)."""
        return self.sent_to(chat_id, ("sendMessageDraft",))

    def open_draft(self, chat_id: ChatId) -> SentMessage | None:
        """The draft the user sees in ``chat_id`` now: the newest draft sent after the bot's last message there
        and less than DRAFT_LIFETIME ago; None when no draft hangs in the chat."""
        with self._cond:
            for record in reversed(self._sent):
                if record.chat_id != _chat_key(chat_id) or record.method not in ("sendMessage", "sendMessageDraft"):
                    continue
                if record.method == "sendMessage" or time.time() - record.timestamp > DRAFT_LIFETIME:
                    return None
                return record if record.plain_text else None
        return None

    def texts_to(self, chat_id: ChatId) -> list[str]:
        """Plain texts (as the user sees them) of messages sent to ``chat_id``."""
        return [s.plain_text or "" for s in self.sent_to(chat_id, ("sendMessage",))]

    @property
    def calls(self) -> list[ApiCall]:
        """Every Bot API call, successful or not, oldest first."""
        with self._cond:
            return list(self._calls)

    @property
    def counters(self) -> dict[str, int]:
        """Calls per method name (as the bot spelled it)."""
        with self._cond:
            return dict(self._counters)

    def call_count(self, method: str) -> int:
        """How many times ``method`` was called (any outcome)."""
        with self._cond:
            return sum(count for name, count in self._counters.items() if name.lower() == method.lower())

    def message(self, chat_id: ChatId, message_id: int) -> JSON | None:
        """The current state (after edits) of a message the bot sent, as a Message dict."""
        with self._cond:
            stored = self._messages.get((_chat_key(chat_id), message_id))
            return json.loads(json.dumps(stored)) if stored else None

    def commands(self, scope: Mapping[str, Any] | None = None, language_code: str = "") -> list[JSON]:
        """Commands set with setMyCommands for a scope/language."""
        with self._cond:
            return list(self._commands.get(self._commands_key(scope, language_code), []))

    def menu_button(self, chat_id: ChatId | None = None) -> JSON:
        """The menu button set for ``chat_id`` (None: the default one)."""
        with self._cond:
            return dict(self._menu_button(chat_id))

    @property
    def webhook_url(self) -> str | None:
        """The webhook URL the bot registered, if any."""
        with self._cond:
            return str(self._webhook["url"]) if self._webhook else None

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by the bot (via the next getUpdates offset or a webhook 2xx)."""
        with self._cond:
            return len(self._updates)

    async def wait_for_sent(
        self,
        predicate: Callable[[SentMessage], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline for the test, not a cancel scope
        *,
        chat_id: ChatId | None = None,
        method: str | Collection[str] | None = MESSAGE_METHODS,
    ) -> SentMessage:
        """Await the oldest not-yet-awaited record matching the filters; each record is returned once.

        Raises ``FakeTimeout`` (an AssertionError) listing what was sent when nothing matches in time.
        """
        found = await self._notifier.wait(self._matcher(predicate, chat_id, method), timeout)
        return self._found_or_raise(found, timeout, chat_id)

    def wait_for_sent_sync(
        self,
        predicate: Callable[[SentMessage], bool] | None = None,
        timeout: float = 5.0,
        *,
        chat_id: ChatId | None = None,
        method: str | Collection[str] | None = MESSAGE_METHODS,
    ) -> SentMessage:
        """Blocking ``wait_for_sent`` for threads without an event loop (benchmark drivers)."""
        found = self._notifier.wait_sync(self._matcher(predicate, chat_id, method), timeout)
        return self._found_or_raise(found, timeout, chat_id)

    async def wait_for_delivery(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Await until the bot has fetched every queued update."""
        found = await self._notifier.wait(
            lambda: True if all(u["update_id"] <= self._delivered_update_id for u in self._updates) else None,
            timeout,
        )
        if found is None:
            raise FakeTimeout(f"the bot did not fetch {self.pending_updates} pending updates in {timeout}s")

    def _matcher(
        self,
        predicate: Callable[[SentMessage], bool] | None,
        chat_id: ChatId | None,
        method: str | Collection[str] | None,
    ) -> Callable[[], SentMessage | None]:
        methods = (method,) if isinstance(method, str) else method
        key = _chat_key(chat_id) if chat_id is not None else None

        def check() -> SentMessage | None:  # runs under the lock
            for record in self._sent:
                if (
                    record.seq not in self._consumed
                    and (methods is None or record.method in methods)
                    and (key is None or record.chat_id == key)
                    and (predicate is None or predicate(record))
                ):
                    self._consumed.add(record.seq)
                    return record
            return None

        return check

    def _found_or_raise(self, found: SentMessage | None, timeout: float, chat_id: ChatId | None) -> SentMessage:
        if found is not None:
            return found
        recent = [(s.method, s.chat_id, (s.plain_text or s.text or "")[:80]) for s in self.sent[-10:]]
        raise FakeTimeout(f"nothing matching was sent to chat {chat_id} within {timeout}s; last sent: {recent}")

    # HTTP --------------------------------------------------------------------------------------------------

    def _handle(self, request: HTTPRequest) -> HTTPResponse:
        file_match = re.fullmatch(r"/file/bot([^/]+)/(.+)", request.path)
        if file_match:
            return self._download(file_match.group(1), file_match.group(2))
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", request.path)
        if match is None:
            return HTTPResponse.json(404, _ApiError(404, "Not Found").body())
        token, method = match.groups()
        try:
            if token != self.token:
                raise _ApiError(401, "Unauthorized")
            params, files = _parse_params(request)
        except _ApiError as error:
            return HTTPResponse.json(error.status, error.body())
        with self._cond:
            latency = self._latency
        self._sleep(latency)
        return self._call(method, params, files)

    def _call(self, method: str, params: dict[str, Any], files: dict[str, _UploadedFile]) -> HTTPResponse:
        handler = self._methods.get(method.lower())
        with self._cond:
            self._counters[method] += 1
        try:
            if handler is None:
                raise _ApiError(404, "Not Found")
            self._check_faults(method, params)
            result = handler(params, files)
        except _ApiError as error:
            self._log_call(method, params, error.status, error.description)
            return HTTPResponse.json(error.status, error.body())
        self._log_call(method, params, 200, None)
        return HTTPResponse.json(200, {"ok": True, "result": result})

    def _log_call(self, method: str, params: Mapping[str, Any], status: int, description: str | None) -> None:
        with self._cond:
            self._calls.append(ApiCall(method, dict(params), status, description, time.time()))

    def _check_faults(self, method: str, params: Mapping[str, Any]) -> None:
        chat = _chat_key(params["chat_id"]) if params.get("chat_id") not in (None, "") else None
        text = str(params.get("text") or params.get("caption") or "")
        with self._cond:
            for index, fault in enumerate(self._faults):
                if (
                    (fault.method is None or fault.method == method.lower())
                    and (fault.chat_id is None or fault.chat_id == chat)
                    and (fault.text_contains is None or fault.text_contains in text)
                ):
                    del self._faults[index]
                    raise _ApiError(fault.status, fault.description, fault.retry_after)

    def _download(self, token: str, file_path: str) -> HTTPResponse:
        if token != self.token:
            return HTTPResponse.json(401, _ApiError(401, "Unauthorized").body())
        with self._cond:
            stored = next((f for f in self._files.values() if f.file_path == file_path), None)
        if stored is None:
            return HTTPResponse.json(404, _ApiError(404, "Not Found").body())
        return HTTPResponse(200, stored.data, {"Content-Type": stored.mime_type or "application/octet-stream"})

    def _on_stop(self) -> None:
        with self._cond:
            self._notifier.notify()

    def _controls(self) -> dict[str, Callable[..., Any]]:
        def user_sends_photo(user_id: int, caption: str | None = None, **user: Any) -> JSON:
            return self.user_sends_photo(user_id, caption=caption, **user)

        return {
            "user_sends_text": self.user_sends_text,
            "user_sends_command": self.user_sends_command,
            "user_sends_contact": self.user_sends_contact,
            "user_presses_button": self.user_presses_button,
            "user_sends_group_text": self.user_sends_group_text,
            "set_chat_member": self.set_chat_member,
            "user_sends_photo": user_sends_photo,
            "user_sends_sticker": self.user_sends_sticker,
            "enqueue_update": self.enqueue_update,
            "block_chat": self.block_chat,
            "unblock_chat": self.unblock_chat,
            "fail_next": self.fail_next,
            "flood_next": self.flood_next,
            "set_flood_limits": self.set_flood_limits,
            "set_latency": self.set_latency,
            "refuse_drafts": self.refuse_drafts,
            "accept_drafts": self.accept_drafts,
            "reset": self.reset,
            "sent": lambda since=0: self.sent[since:],
            "counters": lambda: self.counters,
        }

    # helpers (call with the lock held unless noted) --------------------------------------------------------

    def _user(self, user_id: int, **fields: Any) -> JSON:
        """The User object of a simulated user; given name fields are remembered. Takes the lock."""
        allowed = {"first_name", "last_name", "username", "language_code", "is_premium"}
        unknown = set(fields) - allowed
        if unknown:
            raise FakeServerError(f"unknown user fields {sorted(unknown)}; allowed: {sorted(allowed)}")
        with self._cond:
            user = self._users.setdefault(
                user_id, {"id": user_id, "is_bot": False, "first_name": "Партнёр", "language_code": "ru"}
            )
            user.update({k: v for k, v in fields.items() if v is not None})
            return dict(user)

    def _chat(self, chat_id: ChatId) -> JSON:
        if isinstance(chat_id, str):
            numeric = self._named_chats.setdefault(chat_id, -1001000000000 - len(self._named_chats))
            return {"id": numeric, "type": "channel", "title": chat_id, "username": chat_id.lstrip("@")}
        if chat_id < 0:
            kind = "supergroup" if str(chat_id).startswith("-100") else "group"
            return {"id": chat_id, "type": kind, "title": f"Чат {chat_id}"}
        user = self._users.get(chat_id, {"first_name": "Пользователь"})
        chat: JSON = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        for name in ("last_name", "username"):
            if name in user:
                chat[name] = user[name]
        return chat

    def _new_message_id(self, chat_id: ChatId) -> int:
        # A private chat has one message sequence shared by the user and the bot, as in Telegram.
        self._message_ids[chat_id] += 1
        return self._message_ids[chat_id]

    def _store_file(self, data: bytes, filename: str | None, mime_type: str | None, folder: str) -> _StoredFile:
        with self._cond:
            number = len(self._files) + 1
            extension = (filename or "").rpartition(".")[2] or "bin"
            stored = _StoredFile(
                file_id=f"FAKEFILE{number:06d}",
                file_unique_id=f"FU{number:06d}",
                data=data,
                filename=filename,
                mime_type=mime_type,
                file_path=f"{folder}/file_{number}.{extension}",
            )
            self._files[stored.file_id] = stored
            return stored

    def _record_sent(self, method: str, chat_id: ChatId | None, params: Mapping[str, Any], **fields: Any) -> None:
        with self._cond:
            clean = {k: v for k, v in params.items() if not isinstance(v, bytes)}
            record = SentMessage(
                method=method,
                chat_id=chat_id,
                text=fields.pop("text", None),
                parse_mode=_str_param(params, "parse_mode"),
                reply_markup=fields.pop("reply_markup", None),
                message_id=fields.pop("message_id", None),
                timestamp=time.time(),
                params=clean,
                seq=next(self._seq),
                **fields,
            )
            self._sent.append(record)
            self._notifier.notify()

    def _target_chat(self, params: Mapping[str, Any], method: str) -> ChatId:
        raw = params.get("chat_id")
        if raw in (None, ""):
            raise _bad_request("chat_id is empty")
        chat = _chat_key(raw)
        with self._cond:
            if chat in self._blocked:
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            if chat in self._left_groups:
                raise _ApiError(403, "Forbidden: bot is not a member of the group chat")
            if method in _FLOOD_METHODS:
                self._check_flood(chat)
        return chat

    def _check_flood(self, chat: ChatId) -> None:
        now = time.monotonic()
        windows: list[tuple[deque[float], float]] = []
        if self._per_chat_rate:
            windows.append((self._chat_sends.setdefault(chat, deque()), self._per_chat_rate))
        if self._global_rate:
            windows.append((self._global_sends, self._global_rate))
        for sends, rate in windows:
            window = max(1.0, 1.0 / rate)
            limit = max(1, int(rate * window))
            while sends and sends[0] <= now - window:
                sends.popleft()
            if len(sends) >= limit:
                retry_after = max(1, math.ceil(sends[0] + window - now))
                raise _ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        for sends, _ in windows:
            sends.append(now)

    def _parsed_text(
        self, params: Mapping[str, Any], name: str, limit: int, *, required: bool
    ) -> tuple[str | None, ParsedText | None]:
        raw = _str_param(params, name)
        if raw is None:
            if required:
                raise _bad_request("message text is empty")
            return None, None
        parse_mode = _str_param(params, "parse_mode")
        try:
            parsed = parse_entities(raw, parse_mode)
        except EntityParseError as exc:
            raise _bad_request(f"can't parse entities: {exc}") from exc
        if not parse_mode and params.get("entities") is not None:
            parsed = ParsedText(parsed.text, tuple(_json_param(params, "entities") or ()))
        if not parsed.text and required:
            raise _bad_request("message text is empty")
        if len(parsed.text) > limit:
            raise _bad_request("message is too long" if name == "text" else "message caption is too long")
        return raw, parsed

    @staticmethod
    def _reply_markup(params: Mapping[str, Any]) -> JSON | None:
        markup = _json_param(params, "reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard") or []:
            for button in row:
                if not button.get("text"):
                    raise _bad_request("text buttons are unallowed in the inline keyboard")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise _bad_request("BUTTON_DATA_INVALID")
        return markup

    def _bot_message(self, chat: ChatId, fields: JSON, markup: JSON | None) -> JSON:
        message: JSON = {
            "message_id": self._new_message_id(chat),
            "from": dict(self._bot_user),
            "chat": self._chat(chat),
            "date": int(time.time()),
            **fields,
        }
        if markup and "inline_keyboard" in markup:  # only inline keyboards are part of a Message
            message["reply_markup"] = markup
        self._messages[(chat, message["message_id"])] = message
        return message

    def _text_fields(self, key: str, parsed: ParsedText | None) -> JSON:
        if parsed is None or not parsed.text:
            return {}
        fields: JSON = {key: parsed.text}
        if parsed.entities:
            fields["entities" if key == "text" else "caption_entities"] = list(parsed.entities)
        return fields

    def _input_file(
        self, params: Mapping[str, Any], files: Mapping[str, _UploadedFile], name: str
    ) -> tuple[_UploadedFile | None, _StoredFile | None]:
        """An uploaded file (multipart or attach://) or a known file_id; returns (upload, stored)."""
        value = params.get(name)
        upload = files.get(name)
        if upload is None and isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value.removeprefix("attach://"))
        if upload is not None:
            if not upload.data:
                raise _bad_request("file must be non-empty")
            mime = upload.content_type or mimetypes.guess_type(upload.filename or "")[0]
            if mime in (None, "application/octet-stream"):
                mime = mimetypes.guess_type(upload.filename or "")[0] or mime
            folder = "photos" if name == "photo" else "documents"
            return upload, self._store_file(upload.data, upload.filename, mime, folder)
        if value in (None, ""):
            raise _bad_request(f"there is no {name} in the request")
        with self._cond:
            stored = self._files.get(str(value))
        if stored is not None:
            return None, stored
        if str(value).startswith(("http://", "https://")):
            return None, None  # Telegram would download it; the fake only records the URL
        raise _bad_request("wrong file identifier/HTTP URL specified")

    def _commands_key(self, scope: Any, language_code: Any) -> str:
        return json.dumps([scope or {"type": "default"}, language_code or ""], sort_keys=True)

    def _menu_button(self, chat_id: ChatId | None) -> JSON:
        key = _chat_key(chat_id) if chat_id is not None else None
        return self._menu_buttons.get(key) or self._menu_buttons.get(None) or {"type": "default"}

    # Bot API methods ---------------------------------------------------------------------------------------

    def _api_getMe(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        return dict(self._bot_user)

    def _api_getChat(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        raw = params.get("chat_id")
        if raw in (None, ""):
            raise _bad_request("chat_id is empty")
        chat = _chat_key(raw)
        with self._cond:
            if chat in self._left_groups or chat in self._blocked:
                raise _bad_request("chat not found")
            info = self._chat(chat)
        # ChatFullInfo: the fields every chat carries besides the basic Chat ones.
        return {**info, "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": _GIFT_TYPES}

    def _api_logOut(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        return True

    def _api_close(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        return True

    def _api_getUpdates(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        offset = _int_param(params, "offset", 0) or 0
        limit = min(100, max(1, _int_param(params, "limit", 100) or 100))
        timeout = min(self._max_poll_timeout, max(0.0, _float_param(params, "timeout", 0.0)))
        allowed = _json_param(params, "allowed_updates") or None
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._webhook is not None:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            self._poll_generation += 1
            generation = self._poll_generation
            self._confirm(offset)
            while True:
                if generation != self._poll_generation:
                    raise _ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                ready = [u for u in self._updates if allowed is None or set(u) & set(allowed)][:limit]
                remaining = deadline - time.monotonic()
                if ready or remaining <= 0 or self._stopping.is_set():
                    break
                self._cond.wait(remaining)
            if ready:
                self._delivered_update_id = max(self._delivered_update_id, ready[-1]["update_id"])
                self._notifier.notify()
            return json.loads(json.dumps(ready))

    def _confirm(self, offset: int) -> None:
        """Forget updates the bot confirmed: ids below ``offset``; a negative offset keeps the last -offset."""
        if offset < 0:
            self._updates = self._updates[offset:]
        elif offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        self._notifier.notify()

    def _api_setWebhook(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        url = _str_param(params, "url") or ""
        with self._cond:
            if _bool_param(params, "drop_pending_updates"):
                self._updates.clear()
            if not url:
                self._webhook = None
                return True
            if not url.startswith(("http://", "https://")):
                raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
            self._webhook = {
                "url": url,
                "secret_token": _str_param(params, "secret_token"),
                "allowed_updates": _json_param(params, "allowed_updates") or None,
            }
            self._webhook_error = None
            if self._webhook_thread is None or not self._webhook_thread.is_alive():
                self._webhook_thread = threading.Thread(target=self._deliver_webhooks, daemon=True)
                self._webhook_thread.start()
            self._notifier.notify()
        return True

    def _api_deleteWebhook(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        with self._cond:
            self._webhook = None
            if _bool_param(params, "drop_pending_updates"):
                self._updates.clear()
            self._notifier.notify()
        return True

    def _api_getWebhookInfo(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        with self._cond:
            info: JSON = {
                "url": self._webhook["url"] if self._webhook else "",
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
            if self._webhook and self._webhook.get("allowed_updates"):
                info["allowed_updates"] = self._webhook["allowed_updates"]
            if self._webhook_error:
                info["last_error_date"], info["last_error_message"] = self._webhook_error
        return info

    def _deliver_webhooks(self) -> None:
        """POST queued updates to the webhook in order; retry until 2xx, as Telegram does."""
        while not self._stopping.is_set():
            with self._cond:
                while not self._stopping.is_set() and not (self._webhook and self._updates):
                    if self._webhook is None:
                        return
                    self._cond.wait(0.5)
                if self._stopping.is_set() or self._webhook is None:
                    return
                update, hook = self._updates[0], dict(self._webhook)
            request = urllib.request.Request(
                hook["url"], data=json.dumps(update).encode(), headers={"Content-Type": "application/json"}
            )
            if hook.get("secret_token"):
                request.add_header("X-Telegram-Bot-Api-Secret-Token", hook["secret_token"])
            error: str | None = None
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
            except urllib.error.HTTPError as exc:
                error = f"Wrong response from the webhook: {exc.code} {exc.reason}"
            except OSError as exc:
                error = f"Connection refused: {exc}"
            with self._cond:
                if error is None:
                    with contextlib.suppress(ValueError):
                        self._updates.remove(update)
                    self._delivered_update_id = max(self._delivered_update_id, update["update_id"])
                    self._notifier.notify()
                    continue
                self._webhook_error = (int(time.time()), error)
            self._sleep(self._webhook_retry_interval)

    def _api_sendMessage(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        chat = self._target_chat(params, "sendMessage")
        raw, parsed = self._parsed_text(params, "text", MAX_MESSAGE_LENGTH, required=True)
        assert parsed is not None
        markup = self._reply_markup(params)
        with self._cond:
            message = self._bot_message(chat, self._text_fields("text", parsed), markup)
        self._record_sent(
            "sendMessage",
            chat,
            params,
            text=raw,
            plain_text=parsed.text,
            entities=parsed.entities,
            reply_markup=markup,
            message_id=message["message_id"],
        )
        return message

    def _send_media(self, method: str, name: str, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        chat = self._target_chat(params, method)
        raw, parsed = self._parsed_text(params, "caption", MAX_CAPTION_LENGTH, required=False)
        markup = self._reply_markup(params)
        upload, stored = self._input_file(params, files, name)
        fields = self._text_fields("caption", parsed)
        if name == "document":
            fields["document"] = {
                "file_id": stored.file_id if stored else f"URL:{params[name]}",
                "file_unique_id": stored.file_unique_id if stored else "URL",
                **({"file_name": stored.filename} if stored and stored.filename else {}),
                **({"mime_type": stored.mime_type} if stored and stored.mime_type else {}),
                "file_size": len(stored.data) if stored else 0,
            }
        else:
            fields["photo"] = [
                {
                    "file_id": stored.file_id if stored else f"URL:{params[name]}",
                    "file_unique_id": stored.file_unique_id if stored else "URL",
                    "width": 320,
                    "height": 240,
                    "file_size": len(stored.data) if stored else 0,
                }
            ]
        with self._cond:
            message = self._bot_message(chat, fields, markup)
        self._record_sent(
            method,
            chat,
            params,
            text=raw,
            plain_text=parsed.text if parsed else None,
            entities=parsed.entities if parsed else (),
            reply_markup=markup,
            message_id=message["message_id"],
            document=stored.data if stored else None,
            filename=(upload.filename if upload else stored.filename if stored else None),
        )
        return message

    def _api_sendDocument(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        return self._send_media("sendDocument", "document", params, files)

    def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        return self._send_media("sendPhoto", "photo", params, files)

    def _api_sendChatAction(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        chat = self._target_chat(params, "sendChatAction")
        if _str_param(params, "action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        self._record_sent("sendChatAction", chat, params)
        return True

    def _api_sendMessageDraft(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        with self._cond:
            refusal = self._draft_refusal
        if refusal is not None:
            raise _ApiError(*refusal)
        chat = self._target_chat(params, "sendMessageDraft")
        if not isinstance(chat, int) or chat <= 0:
            raise _bad_request("message drafts can be sent only to private chats")
        draft_id = _int_param(params, "draft_id")
        if not draft_id:
            raise _bad_request("draft_id must be non-zero")
        raw, parsed = self._parsed_text(params, "text", 2 * MAX_MESSAGE_LENGTH, required=False)
        if parsed is not None and _utf16_len(parsed.text) > MAX_MESSAGE_LENGTH:
            raise _bad_request("message is too long")
        self._record_sent(
            "sendMessageDraft",
            chat,
            params,
            text=raw,
            plain_text=parsed.text if parsed else "",
            entities=parsed.entities if parsed else (),
        )
        return True

    def _edit_target(self, params: Mapping[str, Any], method: str) -> tuple[ChatId, int, JSON]:
        if params.get("inline_message_id"):
            raise _bad_request("MESSAGE_ID_INVALID")  # inline mode is not used by this bot
        chat = self._target_chat(params, method)
        message_id = _int_param(params, "message_id")
        with self._cond:
            message = self._messages.get((chat, message_id or 0))
        if message is None or message_id is None:
            raise _bad_request("message to edit not found")
        return chat, message_id, message

    def _api_editMessageText(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        chat, message_id, message = self._edit_target(params, "editMessageText")
        raw, parsed = self._parsed_text(params, "text", MAX_MESSAGE_LENGTH, required=True)
        assert parsed is not None
        markup = self._reply_markup(params)
        with self._cond:
            if "text" not in message:
                raise _bad_request("there is no text in the message to edit")
            inline = markup if markup and "inline_keyboard" in markup else None
            if (
                message["text"] == parsed.text
                and message.get("entities", []) == list(parsed.entities)
                and message.get("reply_markup") == inline
            ):
                raise _bad_request(_NOT_MODIFIED)
            message.pop("entities", None)
            message.pop("reply_markup", None)
            message.update(self._text_fields("text", parsed), edit_date=int(time.time()))
            if inline:
                message["reply_markup"] = inline
            result = json.loads(json.dumps(message))
        self._record_sent(
            "editMessageText",
            chat,
            params,
            text=raw,
            plain_text=parsed.text,
            entities=parsed.entities,
            reply_markup=markup,
            message_id=message_id,
        )
        return result

    def _api_editMessageReplyMarkup(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        chat, message_id, message = self._edit_target(params, "editMessageReplyMarkup")
        markup = self._reply_markup(params)
        inline = markup if markup and "inline_keyboard" in markup and markup["inline_keyboard"] else None
        with self._cond:
            if message.get("reply_markup") == inline:
                raise _bad_request(_NOT_MODIFIED)
            message.pop("reply_markup", None)
            if inline:
                message["reply_markup"] = inline
            message["edit_date"] = int(time.time())
            result = json.loads(json.dumps(message))
        self._record_sent("editMessageReplyMarkup", chat, params, reply_markup=markup, message_id=message_id)
        return result

    def _api_deleteMessage(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        chat = self._target_chat(params, "deleteMessage")
        message_id = _int_param(params, "message_id") or 0
        with self._cond:
            if self._messages.pop((chat, message_id), None) is None:
                raise _bad_request("message to delete not found")
        self._record_sent("deleteMessage", chat, params, message_id=message_id)
        return True

    def _api_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        query_id = _str_param(params, "callback_query_id") or ""
        text = _str_param(params, "text")
        with self._cond:
            query = self._callback_queries.get(query_id)
            if query is None or query["answered"]:
                raise _bad_request("query is too old and response timeout expired or query ID is invalid")
            if text is not None and len(text) > 200:
                raise _bad_request("MESSAGE_TOO_LONG")
            query["answered"] = True
        self._record_sent("answerCallbackQuery", query["chat_id"], params, text=text, plain_text=text)
        return True

    def _api_getChatMember(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        chat = self._target_chat(params, "getChatMember")
        user_id = _int_param(params, "user_id")
        if user_id is None:
            raise _bad_request("user_id is required")
        with self._cond:
            if user_id == self._bot_user["id"]:
                # The bot itself: a member of every chat it was not removed from (remove_bot_from_chat).
                status = "left" if chat in self._left_groups else "member"
                return {"status": status, "user": dict(self._bot_user)}
            if chat in self._left_groups:
                raise _bad_request("chat not found")
            user = self._users.get(user_id)
            if user is None:
                raise _bad_request("PARTICIPANT_ID_INVALID")
            status = self._members.get((int(chat), user_id), "left") if not isinstance(chat, str) else "left"
            member: JSON = {"status": status, "user": dict(user)}
        if status == "administrator":
            member.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=True,
                can_manage_video_chats=True,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=True,
                can_invite_users=True,
                can_post_stories=False,
                can_edit_stories=False,
                can_delete_stories=False,
            )
        elif status == "creator":
            member["is_anonymous"] = False
        elif status == "restricted":
            member.update(
                is_member=True,
                can_send_messages=True,
                can_send_audios=True,
                can_send_documents=True,
                can_send_photos=True,
                can_send_videos=True,
                can_send_video_notes=True,
                can_send_voice_notes=True,
                can_send_polls=True,
                can_send_other_messages=True,
                can_add_web_page_previews=True,
                can_change_info=False,
                can_invite_users=False,
                can_pin_messages=False,
                can_manage_topics=False,
                can_edit_tag=False,
                can_react_to_messages=True,
                until_date=0,
            )
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _api_setMyCommands(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        commands = _json_param(params, "commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("commands must be an array of at most 100 BotCommand")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(_json_param(params, "scope"), _str_param(params, "language_code"))
        with self._cond:
            self._commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        return True

    def _api_getMyCommands(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        key = self._commands_key(_json_param(params, "scope"), _str_param(params, "language_code"))
        with self._cond:
            return list(self._commands.get(key, []))

    def _api_deleteMyCommands(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        key = self._commands_key(_json_param(params, "scope"), _str_param(params, "language_code"))
        with self._cond:
            self._commands.pop(key, None)
        return True

    def _api_setChatMenuButton(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        button = _json_param(params, "menu_button") or {"type": "default"}
        if button.get("type") not in ("default", "commands", "web_app"):
            raise _bad_request("unsupported menu button type")
        chat = params.get("chat_id")
        with self._cond:
            self._menu_buttons[_chat_key(chat) if chat not in (None, "") else None] = button
        return True

    def _api_getChatMenuButton(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        chat = params.get("chat_id")
        with self._cond:
            return dict(self._menu_button(chat if chat not in (None, "") else None))

    def _api_getFile(self, params: dict[str, Any], files: dict[str, _UploadedFile]) -> Any:
        with self._cond:
            stored = self._files.get(_str_param(params, "file_id") or "")
        if stored is None:
            raise _bad_request("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.telegram_server --port N``: serve the fake Bot API until interrupted."""
    parser = base_arg_parser("Local fake of the Telegram Bot API")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--per-chat-rate", type=float, default=None, help="messages per second per chat")
    parser.add_argument("--global-rate", type=float, default=None, help="messages per second overall")
    args = parser.parse_args(argv)
    server = FakeTelegramServer(token=args.token, latency=args.latency, host=args.host, port=args.port)
    server.set_flood_limits(args.per_chat_rate, args.global_rate)
    run_standalone(server, f"fake Telegram Bot API (base_url = this URL + /bot, token {args.token})")


if __name__ == "__main__":
    main()
