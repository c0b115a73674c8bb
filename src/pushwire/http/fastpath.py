"""Routes that skip FastAPI's per-request dependency solving.

FastAPI validates every declared parameter and sub-dependency with pydantic on each request;
on the hot paths (publish, poll, long-poll, SSE) that was most of the time spent per
request. A hot route keeps its declared signature (so `/openapi.json` describes exactly the
same parameters and security requirements) but is served by a `fast` handler that takes the
bare `Request` and reads the same query parameters and headers itself:

    @router.post("/v1/publish/{topic:path}", ...)
    @fast(publish_raw_fast)
    async def publish_raw(request: Request, topic: str, ...): ...

The declared endpoint stays a working implementation (both must behave the same).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from pushwire.http.state import HttpState

FastHandler = Callable[[Request], Coroutine[Any, Any, Response]]
F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__pushwire_fast__"


def fast(handler: FastHandler) -> Callable[[F], F]:
    """Mark a documented endpoint as served by `handler(request)` (see `FastRoute`)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTR, handler)
        return endpoint

    return mark


class FastRoute(APIRoute):
    """An `APIRoute` whose request handler is the endpoint's `fast` handler when it has
    one; everything else (OpenAPI, routing, exception handling) is FastAPI's."""

    def get_route_handler(self) -> FastHandler:
        handler: FastHandler | None = getattr(self.endpoint, _ATTR, None)
        if handler is None:
            return super().get_route_handler()
        return handler


def http_state(conn: HTTPConnection) -> HttpState:
    state: HttpState = conn.app.state.pushwire
    return state


_INT: TypeAdapter[int] = TypeAdapter(int)


def query_int(request: Request, name: str) -> int | None:
    """An optional integer query parameter, validated as FastAPI would (same 400)."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        return _INT.validate_python(value)
    except ValidationError as exc:
        errors = [{**err, "loc": ("query", name)} for err in exc.errors()]
        raise RequestValidationError(errors) from None
