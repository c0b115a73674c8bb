"""The error model of the HTTP API: `{"error": {"code", "message"}}` with the right status.

Bad input is always a 4xx with a stable `code`; nothing a client sends turns into a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pushwire.http.allow import allowed_methods

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. bad_topic")
    message: str = Field(description="what was wrong, for humans")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """Raise anywhere in a handler to answer with the error model."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def bad_topic(message: str) -> ApiError:
    return ApiError(400, "bad_topic", message)


def bad_cursor(message: str) -> ApiError:
    return ApiError(400, "bad_cursor", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


_DESCRIPTIONS = {
    400: "bad input: bad_topic, bad_cursor or bad_request",
    401: "unauthorized: no credentials (and anonymous access is not admitted), or bad ones; "
    'with WWW-Authenticate: Bearer realm="pushwire", Basic realm="pushwire"',
    403: "forbidden: the topic ACL denies it (the message gives the reason), the topic is "
    "reserved ($SYS), or the caller lacks the admin role",
    404: "not_found",
    409: "conflict: it exists already",
    429: "rate_limited: too many failed logins from this address; see Retry-After",
    413: "payload_too_large: body over http_max_payload (or batch over http_max_batch)",
    415: "unsupported_media_type: this form of the endpoint needs another Content-Type",
    503: "unavailable: over a configured limit, or the store could not make it durable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses."""
    return {
        s: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(s, "error")} for s in statuses
    }


def error_json(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    state = getattr(request.app.state, "pushwire", None)
    if state is not None:
        stats = state.stats
        if exc.status == 401:
            stats.unauthorized += 1
        elif exc.status == 403:
            stats.forbidden += 1
        elif exc.code == "rate_limited":
            stats.rate_limited += 1
    return error_json(exc.status, exc.code, exc.message, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_json(400, "bad_request", "; ".join(parts) or "invalid request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    message = str(exc.detail)
    if exc.status_code == 405:
        allowed = allowed_methods(request) or headers.get("Allow", "").split(", ")
        headers["Allow"] = ", ".join(allowed)
        use = " or ".join(allowed)
        message = f"{request.method} is not allowed on {request.url.path}; use {use}"
    return error_json(exc.status_code, code, message, headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_json(500, "internal", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
