"""The API's one error shape: `{"error": {"code": "...", "message": "..."}}`, message in Russian."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway import SheetUnavailable

log = logging.getLogger(__name__)

MSG_OPEN_FROM_TELEGRAM = "Откройте приложение из Telegram: кнопка «Открыть» в чате с ботом."
MSG_SESSION_EXPIRED = "Сессия устарела. Закройте приложение и откройте его снова из чата с ботом."
MSG_FORBIDDEN = "Нет доступа. Авторизуйтесь в боте: отправьте /start и поделитесь номером телефона."
MSG_UNAVAILABLE = "Таблица временно недоступна. Попробуйте через минуту."
MSG_INTERNAL = "Что-то пошло не так. Попробуйте ещё раз чуть позже."

# Default code and message for statuses raised without our own text (routing, body limit).
_BY_STATUS: Mapping[int, tuple[str, str]] = {
    400: ("bad_request", "Некорректный запрос."),
    401: ("unauthorized", MSG_OPEN_FROM_TELEGRAM),
    403: ("forbidden", MSG_FORBIDDEN),
    404: ("not_found", "Не найдено."),
    405: ("method_not_allowed", "Метод не поддерживается."),
    413: ("payload_too_large", "Слишком большой запрос."),
    415: ("unsupported_media_type", "Отправьте данные в формате JSON."),
    429: ("too_many_requests", "Слишком много запросов. Попробуйте позже."),
}
# What a 422 says, by the body field that failed.
_FIELD_MESSAGES: Mapping[str, str] = {
    "text": "Введите сообщение (до 4000 символов).",
    "object_code": "Укажите код объекта, например DEMO-0001.",
    "a1": "Укажите ячейку, например G2.",
    "value": "Значение ячейки должно быть строкой.",
}


class ApiError(Exception):
    """A request failed in a way the user should be told about (status, stable code, Russian message)."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> bytes:
    """The serialized error shape."""
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False).encode()


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSONResponse in the error shape."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code, message = _BY_STATUS.get(exc.status_code, ("http_error", MSG_INTERNAL))
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message = "Некорректный запрос."
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if err.get("type") == "json_invalid":
            message = "Тело запроса должно быть JSON."
            break
        field = next((p for p in reversed(loc) if p in _FIELD_MESSAGES), None)
        if field is not None:
            message = _FIELD_MESSAGES[field]
            break
    return error_response(422, "validation_error", message)


async def _sheet_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("sheet unavailable: %s", exc)
    return error_response(503, "unavailable", MSG_UNAVAILABLE, headers={"Retry-After": "30"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", MSG_INTERNAL)


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the one JSON error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SheetUnavailable, _sheet_unavailable)
    app.add_exception_handler(Exception, _unexpected)
