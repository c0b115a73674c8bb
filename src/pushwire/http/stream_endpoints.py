"""Poll, long-poll and SSE, each declared once (http/endpoints.py). The owned protocol
serves them from bytes (http/streams.py); requests it passes to the ASGI app (with
`Origin`) are served here by the same readers' entry points
(`poll._poll`, `poll._longpoll`, `sse._sse`), as Starlette responses.

Their options are read from the declaration (`Endpoint.read_options`), and their OpenAPI
fragments come from it."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from pushwire.http import poll, sse
from pushwire.http.auth import resolve_caller
from pushwire.http.endpoints import Endpoint, Header, Option
from pushwire.http.errors import ApiError, error_responses
from pushwire.http.state import HttpState

_SINCE = Option("since", "cursor: an id, EPOCH:ID, all, latest, a duration (10m), @UNIXTIME")
_LIMIT = Option("limit", "most messages in the reply", kind="integer")
_IF_NONE_MATCH = Header("If-None-Match", "a previous ETag, as the cursor")

POLL = Endpoint(
    path="/v1/poll/{filter}",
    param="filter",
    operations=(("GET", "poll_v1_poll__filter__get"),),
    summary="Messages after a cursor, at once",
    description="The messages of topics matching the filter (MQTT syntax; `#` as `%23`) "
    "published\nafter the cursor, oldest first, and the next cursor. Without a cursor: "
    "everything the\nlog holds (since=all). 403 when the topic ACL does not let the caller "
    "read the filter;\nmessages of topics it may not receive are left out.",
    tag="subscribe",
    security="reader",
    options=(_SINCE, _LIMIT),
    headers=(_IF_NONE_MATCH,),
    responses=poll._RESPONSES,
)

LONGPOLL = Endpoint(
    path="/v1/longpoll/{filter}",
    param="filter",
    operations=(("GET", "longpoll_v1_longpoll__filter__get"),),
    summary="Messages after a cursor, waiting for the first one",
    description="Like poll, but when nothing came after the cursor the request is held "
    "until a\nmatching message is published or `timeout` passes (then: an empty reply with "
    "the same\ncursor, or 304 when the cursor came as If-None-Match). Without a cursor: "
    "only new\nmessages (since=latest). Re-ask with the returned cursor. 403 when the topic "
    "ACL does\nnot let the caller read the filter; a held request whose token is revoked "
    "(or user\nremoved) is answered 401.",
    tag="subscribe",
    security="reader",
    options=(
        _SINCE,
        _LIMIT,
        Option("timeout", "seconds (or 30s, 2m) to wait; capped by the server"),
    ),
    headers=(_IF_NONE_MATCH,),
    responses=poll._RESPONSES | error_responses(503),
)

SSE = Endpoint(
    path="/v1/sse/{filter}",
    param="filter",
    operations=(("GET", "sse_v1_sse__filter__get"),),
    summary="Server-Sent Events stream of a filter",
    description="Every message of topics matching the filter, as events whose `id:` is the "
    "cursor.\nWithout Last-Event-ID or since=: only new messages. 403 when the topic ACL "
    "does not\nlet the caller read the filter; messages of topics it may not receive are "
    "left out.",
    tag="subscribe",
    security="reader",
    options=(Option("since", "cursor for the first connection (Last-Event-ID wins when sent)"),),
    headers=(Header("Last-Event-ID"),),
    responses={
        200: {
            "description": "an event stream (see docs/http.md)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(400, 401, 403, 429, 503),
    },
)

_INT: TypeAdapter[int] = TypeAdapter(int)


def integer(options: Mapping[str, str | None], name: str) -> int | None:
    """An integer option, validated as FastAPI validated the declared `int | None` (the
    same 400 and message)."""
    value = options[name]
    if value is None:
        return None
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        return _INT.validate_python(value)
    except ValidationError as exc:
        message = "; ".join(f"query.{name}: {err.get('msg', 'invalid')}" for err in exc.errors())
        raise ApiError(400, "bad_request", message) from None


async def serve_poll(
    state: HttpState, request: Request, flt: str, options: Mapping[str, str | None]
) -> Response:
    caller = await resolve_caller(request, allow_query=True)
    limit = integer(options, "limit")
    return await poll._poll(state, caller, flt, options["since"], limit, options["if-none-match"])


async def serve_longpoll(
    state: HttpState, request: Request, flt: str, options: Mapping[str, str | None]
) -> Response:
    caller = await resolve_caller(request, allow_query=True)
    limit = integer(options, "limit")
    return await poll._longpoll(
        request,
        state,
        caller,
        flt,
        options["since"],
        limit,
        options["timeout"],
        options["if-none-match"],
    )


async def serve_sse(
    state: HttpState, request: Request, flt: str, options: Mapping[str, str | None]
) -> Response:
    caller = await resolve_caller(request, allow_query=True)
    return sse._sse(state, caller, flt, options["since"], options["last-event-id"])
