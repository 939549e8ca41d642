"""Authorization by phone: a partner shares their own Telegram contact, the phone is matched in Auth.

Access is decided by the Auth sheet alone, read fresh for every check: STATUS `authorized` (or `avtorizovan`)
AND this Telegram ID in «Telegram ID». Staff revoke access by typing anything else into STATUS; the next
message is refused.

The one exception: when the sheet cannot be read at all (SheetUnavailable), `check` answers from the last
successful check of the same user, if it is younger than `fallback_ttl` (default one hour). An outage of
Google Sheets then does not lock every partner out, while a revocation that staff made before the outage and
the bot already saw is still honoured (a denial removes the remembered answer). A revocation made during
the outage takes effect when the sheet is back. The last successful check is also kept in local state, so
it survives a restart (right after one, Google may still count the dead process's calls and answer 429s).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

import phonenumbers

from bot.services.ports import Clock, utc_now
from bot.services.sheet_time import MOSCOW, stamp
from gateway import AsyncSheetsGateway, GatewayError, Record, SheetUnavailable, WriteOp, normalize_key
from gateway.schemas import AUTH, AuthCol

log = logging.getLogger(__name__)

AUTHORIZED = "authorized"
AUTHORIZED_VALUES = frozenset({"authorized", "avtorizovan"})


@dataclass(frozen=True)
class Partner:
    """An authorized partner, as the Auth sheet describes them."""

    code: str
    name: str
    phone: str
    telegram_id: int
    promotions: bool = True

    @property
    def display_name(self) -> str:
        """The name to show staff (the code when the sheet has no name)."""
        return self.name or self.code or str(self.telegram_id)


class AuthOutcome(StrEnum):
    """How an authorization attempt ended."""

    AUTHORIZED = "authorized"
    NOT_OWN_CONTACT = "not_own_contact"
    INVALID_PHONE = "invalid_phone"
    NOT_FOUND = "not_found"
    BLOCKED = "blocked"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class AuthResult:
    """The outcome, the partner on success, and the Russian text to show the user."""

    outcome: AuthOutcome
    message: str
    partner: Partner | None = None

    @property
    def ok(self) -> bool:
        """Whether the user is now authorized."""
        return self.outcome is AuthOutcome.AUTHORIZED


def normalize_phone(raw: str, region: str = "RU") -> str | None:
    """E.164 form of a phone as people type it (`8 (916) 123-45-67`, `79161234567`…), or None if not a phone."""
    text = raw.strip()
    if not text:
        return None
    candidates = [text]
    digits = "".join(ch for ch in text if ch.isdigit())
    if not text.startswith("+") and digits:
        candidates.append("+" + digits)  # Telegram sends contacts as bare international digits
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return None


def is_authorized_status(value: str) -> bool:
    """Whether a STATUS cell grants access."""
    return value.strip().casefold() in AUTHORIZED_VALUES


class AuthService:
    """Phone authorization and per-message access checks against the Auth sheet."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        *,
        region: str = "RU",
        tz: ZoneInfo = MOSCOW,
        clock: Clock = utc_now,
        fallback_ttl: float = 3600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = gw.table(AUTH)
        self._memory = gw.ledgers.auth_memory  # the last good check of each partner, across restarts
        self._region = region
        self._tz = tz
        self._clock = clock
        self._fallback_ttl = fallback_ttl
        self._monotonic = monotonic
        self._last_good: dict[int, tuple[Partner, float]] = {}
        self._persisted: dict[int, tuple[Partner, float]] = {}

    async def authorize_contact(
        self, from_user_id: int, contact_user_id: int | None, phone: str, first_name: str = ""
    ) -> AuthResult:
        """Authorize the sender by the contact they shared; only their own contact is accepted."""
        if contact_user_id is None or contact_user_id != from_user_id:
            return AuthResult(AuthOutcome.NOT_OWN_CONTACT, TEXT_NOT_OWN_CONTACT)
        wanted = normalize_phone(phone, self._region)
        if wanted is None:
            return AuthResult(AuthOutcome.INVALID_PHONE, TEXT_NOT_FOUND)
        columns = [AuthCol.CODE, AuthCol.PHONE, AuthCol.NAME, AuthCol.STATUS, AuthCol.TELEGRAM_ID, AuthCol.PROMO_OPT_IN]
        try:
            rows = await self._table.select(columns)
        except GatewayError as exc:
            log.warning("authorization of %s postponed: %s", from_user_id, exc)
            return AuthResult(AuthOutcome.UNAVAILABLE, TEXT_UNAVAILABLE)
        matches = [r for r in rows if normalize_phone(r[AuthCol.PHONE], self._region) == wanted]
        if not matches:
            log.info("no Auth row for the phone of %s (%s)", from_user_id, first_name)
            return AuthResult(AuthOutcome.NOT_FOUND, TEXT_NOT_FOUND)
        # Prefer a row that may be authorized; a blocked row must not be re-opened by sharing the contact again.
        usable = [r for r in matches if not r[AuthCol.STATUS].strip() or is_authorized_status(r[AuthCol.STATUS])]
        if not usable:
            log.info(
                "Auth row %s for %s is %r: refused", matches[0][AuthCol.CODE], from_user_id, matches[0][AuthCol.STATUS]
            )
            return AuthResult(AuthOutcome.BLOCKED, TEXT_BLOCKED)
        row = usable[0]
        code = row[AuthCol.CODE].strip()
        values: dict[str, str] = {
            AuthCol.STATUS: AUTHORIZED,
            AuthCol.TELEGRAM_ID: str(from_user_id),
            AuthCol.AUTHORIZED_AT: stamp(self._clock(), self._tz),
        }
        ops = [self._op(row, values)]
        # Other rows granting this user access (e.g. the row of an old phone) are unbound: `check` reads the first
        # row with the Telegram ID, so a stale grant would decide who the partner is and hide a later revocation.
        # Rows staff blocked keep their binding (and keep denying).
        tid, chosen = str(from_user_id), _address(row)
        ops += [
            self._op(r, {AuthCol.TELEGRAM_ID: ""})
            for r in rows
            if normalize_key(r[AuthCol.TELEGRAM_ID]) == tid
            and is_authorized_status(r[AuthCol.STATUS])
            and _address(r) not in (chosen, ("", ""))
        ]
        try:
            await self._table.write(ops)  # one write: STATUS, Telegram ID and the date together
        except GatewayError as exc:
            log.error("could not record the authorization of %s: %s", from_user_id, exc)
            return AuthResult(AuthOutcome.UNAVAILABLE, TEXT_UNAVAILABLE)
        partner = Partner(
            code=code,
            name=row[AuthCol.NAME].strip() or first_name,
            phone=wanted,
            telegram_id=from_user_id,
            promotions=_opted_in(row[AuthCol.PROMO_OPT_IN]),
        )
        await self._remember(partner)
        log.info("partner %s authorized as Telegram %s", code or wanted, from_user_id)
        return AuthResult(AuthOutcome.AUTHORIZED, welcome_text(partner), partner)

    def _op(self, row: Record, values: dict[str, str]) -> WriteOp:
        column, key = _address(row)
        return self._table.op_upsert(key, dict(values), column=column or None, create=False)

    async def check(self, telegram_id: int) -> Partner | None:
        """The authorized partner bound to this Telegram ID (read fresh), or None.

        Raises SheetUnavailable only when the sheet is down and this user has no recent successful check.
        """
        try:
            row = await self._table.get(str(telegram_id), column=AuthCol.TELEGRAM_ID)
        except SheetUnavailable:
            remembered = self._last_good.get(telegram_id)
            if remembered is not None and self._monotonic() - remembered[1] <= self._fallback_ttl:
                log.warning(
                    "Auth unreadable; allowing %s from a check %.0fs ago",
                    telegram_id,
                    self._monotonic() - remembered[1],
                )
                return remembered[0]
            # Local state only speaks for a previous run: this run's own memory is never older than it.
            stored = await self._recall(telegram_id) if remembered is None else None
            if stored is not None:
                return stored
            raise
        if row is None or not is_authorized_status(row[AuthCol.STATUS]):
            if self._last_good.pop(telegram_id, None) is not None or telegram_id in self._persisted:
                await self._forget(telegram_id)
            return None
        partner = Partner(
            code=row[AuthCol.CODE].strip(),
            name=row[AuthCol.NAME].strip(),
            phone=normalize_phone(row[AuthCol.PHONE], self._region) or row[AuthCol.PHONE].strip(),
            telegram_id=telegram_id,
            promotions=_opted_in(row[AuthCol.PROMO_OPT_IN]),
        )
        await self._remember(partner)
        return partner

    async def _remember(self, partner: Partner) -> None:
        """Remember a successful check, in memory and (at most every few minutes per partner) in local state."""
        now = self._monotonic()
        self._last_good[partner.telegram_id] = (partner, now)
        persisted = self._persisted.get(partner.telegram_id)
        if persisted is not None and persisted[0] == partner and now - persisted[1] < PERSIST_EVERY:
            return
        try:
            await self._memory.remember(partner.telegram_id, _encode(partner))
            self._persisted[partner.telegram_id] = (partner, now)
        except Exception:  # the memory is a convenience for outages, never a reason to fail a check
            log.exception("could not persist the authorization of %s", partner.telegram_id)

    async def _forget(self, telegram_id: int) -> None:
        self._persisted.pop(telegram_id, None)
        try:
            await self._memory.deny(telegram_id)
        except Exception:
            log.exception("could not persist the denial of %s", telegram_id)

    async def _recall(self, telegram_id: int) -> Partner | None:
        """The authorization remembered in local state (from before a restart), if young enough."""
        try:
            entry = await self._memory.recall(telegram_id, max_age=self._fallback_ttl)
        except Exception:
            log.exception("could not read the remembered authorization of %s", telegram_id)
            return None
        if entry is None:
            return None
        partner = _decode(entry.payload, telegram_id)
        if partner is not None:
            log.warning("Auth unreadable; allowing %s from a check remembered in local state", telegram_id)
            self._last_good[telegram_id] = (partner, self._monotonic() - (time.time() - entry.updated))
        return partner


PERSIST_EVERY = 300.0  # seconds between persisting the same partner's successful check


def _encode(partner: Partner) -> str:
    return json.dumps(
        {"code": partner.code, "name": partner.name, "phone": partner.phone, "promotions": partner.promotions},
        ensure_ascii=False,
    )


def _decode(payload: str, telegram_id: int) -> Partner | None:
    try:
        data = json.loads(payload)
        return Partner(str(data["code"]), str(data["name"]), str(data["phone"]), telegram_id, bool(data["promotions"]))
    except (ValueError, KeyError, TypeError):
        return None


def _address(row: Record) -> tuple[str, str]:
    """How a write finds an Auth row: ('', code) by its code, or (Телефон, phone as typed) for a row without one."""
    code = row[AuthCol.CODE].strip()
    if code:
        return "", code
    return AuthCol.PHONE, row[AuthCol.PHONE].strip()


def _opted_in(value: str) -> bool:
    return value.strip().casefold() not in {"нет", "no", "0", "false"}


def welcome_text(partner: Partner) -> str:
    """What a partner reads right after authorizing."""
    hello = f"{partner.name}, добро пожаловать!" if partner.name else "Добро пожаловать!"
    return (
        f"{hello} Вы авторизованы как партнёр агентства.\n\n"
        "Задайте вопрос обычным сообщением: о вознаграждении, передаче клиентов, документах, ипотеке, объектах "
        "или «Аналитике 360». Если нужен сотрудник — напишите «оператор»."
    )


TEXT_NOT_OWN_CONTACT = (
    "Для входа нужен ваш собственный номер телефона. Нажмите кнопку «Поделиться номером» внизу экрана — "
    "чужие контакты не принимаются."
)
TEXT_NOT_FOUND = (
    "Этого номера нет в списке партнёров агентства. Если вы наш партнёр, попросите вашего менеджера добавить "
    "ваш номер в список доступа и затем снова нажмите «Поделиться номером»."
)
TEXT_BLOCKED = "Доступ для этого номера закрыт. Обратитесь, пожалуйста, к вашему менеджеру в агентстве."
TEXT_UNAVAILABLE = "Сервис авторизации временно недоступен. Попробуйте, пожалуйста, ещё раз через несколько минут."
