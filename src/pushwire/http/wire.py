"""A request and a response as the owned HTTP protocol (http/connection.py) sees them: plain
bytes and strings, no framework. Handlers of the hot endpoints (http/endpoints.py) take a
`WireRequest` and return a `WireResponse`, whichever server parsed the request: the owned
protocol builds one straight from the parser's callbacks, and `from_scope` builds one from
an ASGI scope (requests that reach the FastAPI app, e.g. from browsers)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.datastructures import QueryParams

if TYPE_CHECKING:
    from pushwire.http.auth import CallerCache

_EMPTY = QueryParams("")  # immutable: shared by every request without a query string


@dataclass(slots=True)
class WireRequest:
    method: str
    path: str  # percent-decoded
    query_string: bytes
    headers: list[tuple[bytes, bytes]]  # names in lower case
    client: tuple[str, int] | None
    cert_name: str | None = None  # the connection's verified client certificate CN
    path_tail: str = ""  # the part of the path after the endpoint's prefix
    body: bytes = b""
    # bytes of a body over the endpoint's limit (0: within it); such a body is not kept
    oversize: int = 0
    # the connection's cache of its caller (owned protocol only; None through the ASGI app)
    callers: CallerCache | None = None
    _query: QueryParams | None = field(default=None, repr=False)

    def header(self, name: bytes) -> str | None:
        """The first value of header `name` (lower case), as Starlette's `headers.get`."""
        found: bytes | None = None
        for key, value in self.headers:
            if key == name:
                found = value
                break
        return found.decode("latin-1") if found is not None else None

    def header_list(self, name: bytes) -> list[str]:
        return [v.decode("latin-1") for k, v in self.headers if k == name]

    @property
    def query(self) -> QueryParams:
        if self._query is None:
            self._query = (
                QueryParams(self.query_string.decode("latin-1")) if self.query_string else _EMPTY
            )
        return self._query

    @property
    def ip(self) -> str:
        return self.client[0] if self.client is not None else ""


@dataclass(slots=True)
class WireResponse:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


# one encoder: json.dumps with options builds a new one per call
JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def json_response(status: int, content: Any, headers: dict[str, str] | None = None) -> WireResponse:
    """JSON as Starlette's JSONResponse renders it (compact, UTF-8)."""
    body = JSON_ENCODER.encode(content)
    return WireResponse(status, body.encode(), list(headers.items()) if headers else [])


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> WireResponse:
    return json_response(status, {"error": {"code": code, "message": message}}, headers)
