"""initData validation: Telegram's algorithm, agreement with aiogram, and every way to get rejected."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import pytest
from aiogram.utils.web_app import safe_parse_webapp_init_data

from bot.web.initdata import (
    InitDataExpired,
    InitDataInvalid,
    InitDataMissing,
    InitDataValidator,
    dev_init_data_factory,
    sign_init_data,
)

TOKEN = "123456:ABC-test-token_xyz"
OTHER_TOKEN = "654321:another-token"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
AUTH_DATE = int((NOW - timedelta(minutes=5)).timestamp())


def telegram_sign(token: str, fields: list[tuple[str, str]], *, exclude_from_hash: frozenset[str] = frozenset()) -> str:
    """Sign like Telegram, written from its docs independently of the code under test."""
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    check = "\n".join(sorted(f"{k}={v}" for k, v in fields if k not in exclude_from_hash))
    digest = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    return urlencode([*fields, ("hash", digest)], quote_via=quote)


def user_json(**over: object) -> str:
    """A compact user object as Telegram sends it."""
    user: dict[str, object] = {"id": 100001, "first_name": "Анна", "last_name": "Демо", "username": "anna_demo"}
    user.update(over)
    return json.dumps(user, ensure_ascii=False, separators=(",", ":"))


VECTORS = {
    "plain": [("query_id", "AAHdF6IQAAAAAN0XohDhrOrc"), ("user", user_json()), ("auth_date", str(AUTH_DATE))],
    "unicode-and-specials": [
        ("user", user_json(first_name="Ёлка & «Ко» =+/%", username=None)),
        ("chat_instance", "-8134722200314281151"),
        ("chat_type", "private"),
        ("auth_date", str(AUTH_DATE)),
    ],
    "with-signature": [
        ("user", user_json(id=42)),
        ("auth_date", str(AUTH_DATE)),
        ("signature", "TYJxVcisqbWjtodPepiJ6ghziUL94-KNpG8Pau-X7oNNLNBM72APCpi_RKiUlBvcqo5L-LAxIc3dnTzcZX_PDg"),
    ],
    "start-param": [("auth_date", str(AUTH_DATE)), ("start_param", "promo_1"), ("user", user_json(id=7))],
}


@pytest.fixture
def validator() -> InitDataValidator:
    """A validator for TOKEN whose clock reads NOW."""
    return InitDataValidator(TOKEN, clock=lambda: NOW)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_accepts_vectors_signed_per_telegram(validator: InitDataValidator, name: str) -> None:
    """A string signed by Telegram's algorithm validates and yields the signed user."""
    fields = VECTORS[name]
    data = validator.validate(telegram_sign(TOKEN, fields))
    expected = json.loads(dict(fields)["user"])
    assert data.user.id == expected["id"]
    assert data.user.first_name == expected["first_name"]
    assert data.user.username == expected.get("username")
    assert data.auth_date == datetime.fromtimestamp(AUTH_DATE, UTC)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_aiogram_agrees_on_genuine_vectors(validator: InitDataValidator, name: str) -> None:
    """aiogram's independent implementation accepts the same vectors and reads the same user."""
    init_data = telegram_sign(TOKEN, VECTORS[name])
    theirs = safe_parse_webapp_init_data(TOKEN, init_data)
    ours = validator.validate(init_data)
    assert theirs.user is not None
    assert theirs.user.id == ours.user.id
    assert theirs.user.first_name == ours.user.first_name


def test_sign_init_data_is_accepted_by_aiogram_and_by_us(validator: InitDataValidator) -> None:
    """sign_init_data (dev mode, tests) produces initData both implementations accept."""
    init_data = sign_init_data(TOKEN, {"id": 100001, "first_name": "Демо", "username": "demo"}, AUTH_DATE)
    assert safe_parse_webapp_init_data(TOKEN, init_data).user.id == 100001  # type: ignore[union-attr]
    assert validator.validate(init_data).user.id == 100001


def test_sign_init_data_accepts_a_datetime_and_extra_fields(validator: InitDataValidator) -> None:
    """auth_date may be a datetime; extra fields are signed too."""
    init_data = sign_init_data(TOKEN, {"id": 5, "first_name": "X"}, NOW - timedelta(hours=1), extra={"query_id": "q"})
    assert "query_id=q" in init_data
    assert validator.validate(init_data).auth_date == NOW - timedelta(hours=1)


def test_signature_field_is_part_of_the_data_check_string(validator: InitDataValidator) -> None:
    """Per Telegram's docs only `hash` is left out: a hash that skipped `signature` is rejected, like aiogram does."""
    fields = VECTORS["with-signature"]
    forged = telegram_sign(TOKEN, fields, exclude_from_hash=frozenset({"signature"}))
    with pytest.raises(InitDataInvalid):
        validator.validate(forged)
    with pytest.raises(ValueError):
        safe_parse_webapp_init_data(TOKEN, forged)


@pytest.mark.parametrize(
    ("field", "value"),
    [("user", user_json(id=999)), ("auth_date", str(AUTH_DATE + 1)), ("query_id", "AAHdF6IQAAAAAN0XohDhrOrX")],
)
def test_tampered_field_is_rejected(validator: InitDataValidator, field: str, value: str) -> None:
    """Changing any signed field after signing breaks the hash (aiogram agrees)."""
    fields = VECTORS["plain"]
    genuine = telegram_sign(TOKEN, fields)
    tampered = genuine.replace(
        urlencode({field: dict(fields)[field]}, quote_via=quote), urlencode({field: value}, quote_via=quote)
    )
    assert tampered != genuine
    with pytest.raises(InitDataInvalid):
        validator.validate(tampered)
    with pytest.raises(ValueError):
        safe_parse_webapp_init_data(TOKEN, tampered)


def test_wrong_token_is_rejected(validator: InitDataValidator) -> None:
    """initData signed for another bot is rejected (aiogram agrees)."""
    init_data = telegram_sign(OTHER_TOKEN, VECTORS["plain"])
    with pytest.raises(InitDataInvalid):
        validator.validate(init_data)
    with pytest.raises(ValueError):
        safe_parse_webapp_init_data(TOKEN, init_data)


def test_expired_auth_date_is_rejected() -> None:
    """auth_date older than 24 h is rejected as expired; just under 24 h is still accepted."""
    init_data = telegram_sign(TOKEN, VECTORS["plain"])
    issued = datetime.fromtimestamp(AUTH_DATE, UTC)
    fresh = InitDataValidator(TOKEN, clock=lambda: issued + timedelta(hours=24) - timedelta(seconds=1))
    stale = InitDataValidator(TOKEN, clock=lambda: issued + timedelta(hours=24, seconds=1))
    assert fresh.validate(init_data).user.id == 100001
    with pytest.raises(InitDataExpired):
        stale.validate(init_data)


def test_max_age_is_configurable() -> None:
    """A shorter max_age rejects initData that the default would accept."""
    init_data = telegram_sign(TOKEN, VECTORS["plain"])  # five minutes old at NOW
    with pytest.raises(InitDataExpired):
        InitDataValidator(TOKEN, max_age=timedelta(minutes=1), clock=lambda: NOW).validate(init_data)


def test_forged_and_expired_is_reported_as_forged() -> None:
    """The signature is checked before the age, so a forgery never learns it was merely 'expired'."""
    init_data = telegram_sign(OTHER_TOKEN, VECTORS["plain"])
    late = InitDataValidator(TOKEN, clock=lambda: NOW + timedelta(days=30))
    with pytest.raises(InitDataInvalid):
        late.validate(init_data)


def test_missing_hash_is_rejected(validator: InitDataValidator) -> None:
    """Without `hash` there is nothing to verify (aiogram agrees)."""
    init_data = urlencode(VECTORS["plain"], quote_via=quote)
    with pytest.raises(InitDataInvalid):
        validator.validate(init_data)
    with pytest.raises(ValueError):
        safe_parse_webapp_init_data(TOKEN, init_data)


def test_duplicated_hash_is_rejected_although_aiogram_accepts_it(validator: InitDataValidator) -> None:
    """A second `hash` is refused; aiogram keeps the last value and accepts the string."""
    genuine = telegram_sign(TOKEN, VECTORS["plain"])
    doubled = "hash=" + "0" * 64 + "&" + genuine
    assert safe_parse_webapp_init_data(TOKEN, doubled).user is not None
    with pytest.raises(InitDataInvalid):
        validator.validate(doubled)


@pytest.mark.parametrize("field", ["user", "auth_date", "query_id"])
def test_duplicated_other_key_is_rejected_although_aiogram_accepts_it(validator: InitDataValidator, field: str) -> None:
    """A duplicated signed key (e.g. a forged `user` in front of the genuine one) is refused; aiogram accepts it."""
    fields = VECTORS["plain"]
    genuine = telegram_sign(TOKEN, fields)
    forged_value = user_json(id=1) if field == "user" else "1"
    doubled = urlencode({field: forged_value}, quote_via=quote) + "&" + genuine
    assert safe_parse_webapp_init_data(TOKEN, doubled).user is not None
    with pytest.raises(InitDataInvalid):
        validator.validate(doubled)


def test_duplicate_with_the_same_value_is_rejected_too(validator: InitDataValidator) -> None:
    """Even an identical repeated pair is refused: no key may appear twice."""
    genuine = telegram_sign(TOKEN, VECTORS["plain"])
    with pytest.raises(InitDataInvalid):
        validator.validate(genuine + f"&auth_date={AUTH_DATE}")


def test_initdata_without_user_is_rejected(validator: InitDataValidator) -> None:
    """Genuine initData without a user (not launched by a person) cannot identify a partner."""
    init_data = telegram_sign(TOKEN, [("auth_date", str(AUTH_DATE)), ("query_id", "x")])
    with pytest.raises(InitDataInvalid):
        validator.validate(init_data)


@pytest.mark.parametrize("garbage", ["not a query string", "user=%7B&hash=zz", "=&=", "hash=abc&auth_date=x"])
def test_malformed_initdata_is_rejected(validator: InitDataValidator, garbage: str) -> None:
    """Strings that are not initData at all are rejected as invalid, never crash."""
    with pytest.raises(InitDataInvalid):
        validator.validate(garbage)


def test_header_parsing(validator: InitDataValidator) -> None:
    """`Authorization: tma <initData>` (scheme case-insensitive) validates; anything else is 'missing'."""
    init_data = telegram_sign(TOKEN, VECTORS["plain"])
    assert validator.validate_header(f"tma {init_data}").user.id == 100001
    assert validator.validate_header(f"TMA  {init_data} ").user.id == 100001
    for header in (None, "", "   ", f"Bearer {init_data}", init_data, "tma", "tma   "):
        with pytest.raises(InitDataMissing):
            validator.validate_header(header)


def test_validator_refuses_nonsense_configuration() -> None:
    """An empty token or a non-positive max age is a programming error."""
    with pytest.raises(ValueError):
        InitDataValidator("")
    with pytest.raises(ValueError):
        InitDataValidator(TOKEN, max_age=timedelta(0))


def test_dev_init_data_factory_signs_fresh_demo_initdata() -> None:
    """Local mode's factory signs initData for the demo partner (Telegram ID 100001) that validates now."""
    make = dev_init_data_factory(TOKEN)
    data = InitDataValidator(TOKEN).validate(make())
    assert data.user.id == 100001
    assert abs((datetime.now(UTC) - data.auth_date).total_seconds()) < 5
