"""Validation of Telegram Mini App initData (`Authorization: tma <initData>`).

The algorithm is Telegram's ("Validating data received via the Mini App"): parse the query string,
build the data-check-string from every received field except `hash` (so `signature`, when Telegram
sends it, is covered like any other field), sorted, one `key=value` per line; the secret is
HMAC_SHA256(key="WebAppData", msg=bot_token); compare hex HMAC_SHA256(secret, data-check-string)
with `hash` in constant time; then `auth_date` must be at most `max_age` old.

The cryptography and parsing are delegated to init-data-py (MIT, typed, no dependencies), chosen over
telegram-webapp-auth and a hand-written HMAC because it:
- rejects any key that appears twice (`hash` included) instead of keeping the last value, which
  aiogram and most snippets do and which lets a forged value ride along a genuine signature;
- hashes the raw decoded pairs exactly as received and excludes only `hash`, as the docs say;
- compares with `hmac.compare_digest` and accepts a pre-hashed token, so this module never keeps the
  raw bot token;
- has no runtime dependencies (telegram-webapp-auth pulls `cryptography` and reads the wall clock).
The signature is checked before the age, so a forged string is reported as forged, not as expired.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import init_data_py
from init_data_py import errors as idp_errors

from bot.services.ports import utc_now

DEFAULT_MAX_AGE = timedelta(hours=24)
# Telegram's clock and ours differ a little; a date further ahead was not issued by Telegram (or is replayable
# for longer than max_age), so it is refused.
DEFAULT_FUTURE_SKEW = timedelta(seconds=60)
# What the parser may raise on hostile input (e.g. RecursionError on `user=[[[…`, OverflowError on a huge
# auth_date): all of it means "not valid initData", never a server error.
_PARSE_ERRORS = (
    idp_errors.InvalidInitDataError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    ArithmeticError,
    RecursionError,
)
AUTH_SCHEME = "tma"
DEMO_USER: Mapping[str, object] = {
    "id": 100001,
    "first_name": "Демо",
    "last_name": "Партнёр",
    "username": "demo_partner",
}


class InitDataError(Exception):
    """initData was missing, malformed, forged or too old; the request is unauthenticated (401)."""


class InitDataMissing(InitDataError):
    """No `Authorization: tma …` header, or an empty initData (opened outside Telegram)."""


class InitDataInvalid(InitDataError):
    """initData is malformed, has a duplicated key, lacks `hash`/`user`, or its hash does not match."""


class InitDataExpired(InitDataError):
    """initData is genuine but its `auth_date` is older than the allowed age."""


@dataclass(frozen=True, slots=True)
class WebAppUser:
    """The Telegram user who opened the Mini App, as signed by Telegram."""

    id: int
    first_name: str
    username: str | None = None


@dataclass(frozen=True, slots=True)
class ValidatedInitData:
    """initData whose signature and age were checked."""

    user: WebAppUser
    auth_date: datetime


class InitDataValidator:
    """Checks initData against one bot token; the clock and maximum age are injectable for tests."""

    def __init__(
        self,
        bot_token: str,
        *,
        max_age: timedelta = DEFAULT_MAX_AGE,
        future_skew: timedelta = DEFAULT_FUTURE_SKEW,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not bot_token:
            raise ValueError("bot_token must not be empty")
        if max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        # Keep only HMAC("WebAppData", token): enough to verify, useless for calling the Bot API.
        self._secret_hex = init_data_py.hash_token(bot_token)
        self._max_age = max_age
        self._future_skew = future_skew
        self._clock = clock

    def validate(self, init_data: str) -> ValidatedInitData:
        """Return the signed user and auth date, or raise an InitDataError subclass."""
        if not init_data.strip():
            raise InitDataMissing("empty initData")
        try:
            data = init_data_py.validate_by_hash(init_data, self._secret_hex, token_hashed=True, expires_in=None)
        except _PARSE_ERRORS as exc:
            raise InitDataInvalid(type(exc).__name__) from None
        try:
            issued = data.issued_at
            age = self._clock() - issued
            if data.user is None:
                raise InitDataInvalid("initData has no user")
            user = WebAppUser(id=int(data.user.id), first_name=str(data.user.first_name), username=data.user.username)
        except _PARSE_ERRORS as exc:
            raise InitDataInvalid(type(exc).__name__) from None
        if -age > self._future_skew:
            raise InitDataInvalid(f"auth_date {issued.isoformat()} is in the future")
        if age > self._max_age:
            raise InitDataExpired(f"auth_date {issued.isoformat()} is older than {self._max_age}")
        return ValidatedInitData(user=user, auth_date=issued)

    def validate_header(self, authorization: str | None) -> ValidatedInitData:
        """Validate the value of an `Authorization: tma <initData>` header."""
        if authorization is None or not authorization.strip():
            raise InitDataMissing("no Authorization header")
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != AUTH_SCHEME:
            raise InitDataMissing(f"Authorization scheme is not {AUTH_SCHEME!r}")
        return self.validate(credential.strip())


def sign_init_data(
    bot_token: str,
    user: Mapping[str, object],
    auth_date: int | datetime | None = None,
    *,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Build initData signed exactly as Telegram signs it (local dev mode and tests)."""
    # Telegram serialises the user compactly; any JSON is fine since the raw string is what is hashed.
    fields = {"user": json.dumps(dict(user), separators=(",", ":"), ensure_ascii=False)}
    fields.update(extra or {})
    when = auth_date if auth_date is not None else utc_now()
    return init_data_py.sign(fields, bot_token, auth_date=when)


def dev_init_data_factory(bot_token: str, user: Mapping[str, object] = DEMO_USER) -> Callable[[], str]:
    """For `marketingbot local`: a callable returning freshly signed initData for the demo partner."""
    return lambda: sign_init_data(bot_token, user)
