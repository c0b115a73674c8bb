"""The hot endpoints, each declared once, as data.

An `Endpoint` names its path, methods, options (query parameters, each with an optional
header alternative; the query wins), security, request body and responses. From that one
declaration come:

- the request parsing: `Endpoint.options` reads the options of a `WireRequest`;
- the OpenAPI fragment: `Endpoint.openapi`, merged into FastAPI's generated schema
  (`merge_openapi`), so `/openapi.json` describes the endpoint without a second signature;
- the routes: `hot_routes` for the owned protocol (http/connection.py, served from bytes) and
  `install_asgi_routes` for requests that reach the FastAPI app (browsers with `Origin`,
  requests through a proxy): both call the same handler with a `WireRequest`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.models import RequestBody
from pydantic import BaseModel
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from pushwire.http.errors import ApiError, error_responses
from pushwire.http.routes import FastRoute, Lane
from pushwire.http.state import HttpState
from pushwire.http.wire import WireRequest, WireResponse, error_response
from pushwire.tls import scope_certificate_name

Security = Literal["headers", "reader"]
AsgiHandler = Callable[[HttpState, Request, str, Mapping[str, str | None]], Awaitable[Response]]
EndpointHandler = Callable[
    [HttpState, WireRequest, Mapping[str, str | None]], Awaitable[WireResponse]
]

# the security schemes of http/auth.py, as FastAPI names them; non-admin routes may admit
# anonymous clients (the empty requirement is added by app._truthful_openapi)
_SECURITY: dict[Security, list[dict[str, list[str]]]] = {
    "headers": [{"bearer": []}, {"basic": []}],
    "reader": [{"bearer": []}, {"basic": []}, {"auth_query": []}],
}


@dataclass(frozen=True)
class Option:
    """A query parameter (`name`), optionally also given as a header (`header`)."""

    name: str
    description: str
    header: str | None = None
    kind: Literal["string", "integer"] = "string"


@dataclass(frozen=True)
class Header:
    """A header read as it is (its value under its lower-case name)."""

    name: str
    description: str | None = None


@dataclass(frozen=True)
class Endpoint:
    path: str  # OpenAPI form: /v1/publish/{topic}
    # the path parameter: the rest of the path after `prefix`; None: the path is exact
    param: str | None
    operations: tuple[tuple[str, str], ...]  # (method, operationId)
    summary: str
    description: str
    tag: str
    security: Security
    options: tuple[Option, ...] = ()
    headers: tuple[Header, ...] = ()  # headers read as they are (not options)
    request_body: dict[str, Any] | None = None
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.path if self.param is None else self.path[: self.path.index("{")]

    # -- parsing --------------------------------------------------------------------------

    def read_options(self, request: WireRequest) -> dict[str, str | None]:
        """The endpoint's options from the query string and headers (the query wins), and
        its documented headers by their lower-case names (first value, as Starlette)."""
        values = dict.fromkeys(self._keys)
        by_header = self._by_header
        for name, value in request.headers:
            key = by_header.get(name)
            if key is not None and values[key] is None:
                values[key] = value.decode("latin-1")
        if request.query_string:
            query = request.query
            for option in self.options:
                given = query.get(option.name)
                if given is not None:
                    values[option.name] = given
        return values

    @functools.cached_property
    def _keys(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options) + tuple(h.name.lower() for h in self.headers)

    @functools.cached_property
    def _by_header(self) -> dict[bytes, str]:
        """Header name (lower case) -> the option or header key it fills."""
        found = {o.header.lower().encode(): o.name for o in self.options if o.header}
        found.update({h.name.lower().encode(): h.name.lower() for h in self.headers})
        return found

    # -- description ----------------------------------------------------------------------

    def openapi(self) -> dict[str, Any]:
        """The path item of the endpoint, as FastAPI would generate it."""
        params: list[dict[str, Any]] = []
        if self.param is not None:
            params.append(
                {
                    "in": "path",
                    "name": self.param,
                    "required": True,
                    "schema": {"title": self.param.title(), "type": "string"},
                }
            )
        for option in self.options:
            params.append(_param("query", option.name, option.description, option.kind))
        for option in self.options:
            if option.header is not None:
                params.append(_param("header", option.header, None))
        for header in self.headers:
            params.append(_param("header", header.name, header.description))
        responses = {str(status): _response(spec) for status, spec in self.responses.items()}
        item: dict[str, Any] = {}
        for method, operation_id in self.operations:
            op: dict[str, Any] = {
                "tags": [self.tag],
                "summary": self.summary,
                "description": self.description,
                "operationId": operation_id,
                "responses": responses,
                "security": [dict(s) for s in _SECURITY[self.security]],
            }
            if params:  # FastAPI leaves the key out of an operation without parameters
                op["parameters"] = params
            if self.request_body is not None:
                op["requestBody"] = _request_body(self.request_body)
            item[method.lower()] = op
        return item


def _param(where: str, name: str, description: str | None, kind: str = "string") -> dict[str, Any]:
    schema: dict[str, Any] = {"anyOf": [{"type": kind}, {"type": "null"}]}
    if description is not None:
        schema["description"] = description
    # FastAPI titles a parameter from its Python name (title-cased, `_` as ` `) or, for a
    # header alias, from the alias with each part title-cased
    schema["title"] = "-".join(part.title() for part in name.split("-"))
    param: dict[str, Any] = {"in": where, "name": name, "required": False, "schema": schema}
    if description is not None:
        param["description"] = description
    return param


def _request_body(body: dict[str, Any]) -> dict[str, Any]:
    """A request body as FastAPI renders an `openapi_extra` one: through its OpenAPI model
    (numbers as the model types them, `None` values left out)."""
    rendered: dict[str, Any] = jsonable_encoder(
        RequestBody.model_validate(body), by_alias=True, exclude_none=True
    )
    return rendered


def _response(spec: dict[str, Any]) -> dict[str, Any]:
    """A response as FastAPI renders a `responses=` entry: a `model` becomes a JSON body
    referring to its schema; anything else is OpenAPI as it is."""
    model = spec.get("model")
    if model is None:
        return copy.deepcopy(spec)
    out: dict[str, Any] = {
        "description": spec.get("description", "Successful Response"),
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }
    if "headers" in spec:
        out["headers"] = copy.deepcopy(spec["headers"])
    return out


# -- the endpoints and their handlers ---------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """An endpoint and who answers it: `handler` from a `WireRequest` (served from bytes by
    the owned protocol too), or `asgi` from a Starlette request (through the ASGI app
    only: the streams, until they move onto the owned protocol)."""

    endpoint: Endpoint
    handler: EndpointHandler | None = None
    body_limit: Callable[[HttpState], int] = lambda _state: 0
    asgi: AsgiHandler | None = None
    # the handler's common case as synchronous calls on the owned protocol (its `Lane`)
    lane: Callable[[HttpState], Lane] | None = None


def _served() -> list[Served]:
    # imported here: the handlers' modules import this one's types
    from pushwire.http import publish, stream_endpoints

    return [
        Served(
            publish.PUBLISH_RAW,
            publish.publish_raw,
            publish.raw_body_limit,
            lane=publish.PublishLane,
        ),
        Served(publish.PUBLISH_JSON, publish.publish_json, publish.json_publish_body_limit),
        Served(stream_endpoints.POLL, asgi=stream_endpoints.serve_poll),
        Served(stream_endpoints.LONGPOLL, asgi=stream_endpoints.serve_longpoll),
        Served(stream_endpoints.SSE, asgi=stream_endpoints.serve_sse),
    ]


def _bind(state: HttpState, served: Served) -> Callable[[WireRequest], Awaitable[WireResponse]]:
    endpoint, handler = served.endpoint, served.handler
    assert handler is not None

    async def serve(request: WireRequest) -> WireResponse:
        try:
            return await handler(state, request, endpoint.read_options(request))
        except ApiError as exc:
            return api_error_response(state, exc)

    return serve


def api_error_response(state: HttpState, exc: ApiError) -> WireResponse:
    """The error model for `exc`, counted as http/errors.py counts it."""
    stats = state.stats
    if exc.status == 401:
        stats.unauthorized += 1
    elif exc.status == 403:
        stats.forbidden += 1
    elif exc.code == "rate_limited":
        stats.rate_limited += 1
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def hot_routes(state: HttpState) -> list[FastRoute]:
    """The routes the owned protocol serves from bytes (the streams: http/streams.py)."""
    from pushwire.http.streams import stream_routes

    routes: list[FastRoute] = list(stream_routes(state))
    return routes + [
        FastRoute(
            frozenset(m for m, _ in s.endpoint.operations),
            s.endpoint.prefix,
            _bind(state, s),  # type: ignore[arg-type]
            s.body_limit(state),
            own_origin_ok=not state.settings.cors_origins,
            lane=s.lane(state) if s.lane is not None else None,
            exact=s.endpoint.param is None,
        )
        for s in _served()
        if s.handler is not None
    ]


def install_asgi_routes(app: FastAPI, state: HttpState) -> None:
    """The same endpoints in the FastAPI app (not in its schema: `merge_openapi` describes
    them), for the requests the owned protocol passes on."""
    for served in _served():
        if served.asgi is not None:
            _install_asgi_only(app, state, served.endpoint, served.asgi)
            continue
        endpoint = served.endpoint
        serve = _bind(state, served)
        limit = served.body_limit(state)

        async def asgi_endpoint(
            request: Request,
            serve: Callable[[WireRequest], Awaitable[WireResponse]] = serve,
            endpoint: Endpoint = endpoint,
            limit: int = limit,
        ) -> Response:
            wire = WireRequest(
                request.method,
                request.url.path,
                request.scope.get("query_string", b""),
                list(request.scope["headers"]),
                (request.client.host, request.client.port) if request.client else None,
                scope_certificate_name(request.scope),
                _path_tail(request, endpoint),
            )
            try:
                await _read_body(request, wire, limit)
            except ApiError as exc:
                response = api_error_response(state, exc)
            else:
                response = await serve(wire)
            return Response(
                response.body,
                response.status,
                dict(response.headers),
                media_type=response.content_type,
            )

        _add_route(app, endpoint, asgi_endpoint)


def _install_asgi_only(
    app: FastAPI, state: HttpState, endpoint: Endpoint, handler: AsgiHandler
) -> None:
    async def asgi_endpoint(request: Request) -> Response:
        wire = WireRequest(
            request.method,
            request.url.path,
            request.scope.get("query_string", b""),
            request.scope["headers"],
            None,
        )
        options = endpoint.read_options(wire)
        return await handler(state, request, _path_tail(request, endpoint), options)

    _add_route(app, endpoint, asgi_endpoint)


def _path_tail(request: Request, endpoint: Endpoint) -> str:
    return "" if endpoint.param is None else str(request.path_params[endpoint.param])


def _add_route(app: FastAPI, endpoint: Endpoint, serve: Callable[..., Awaitable[Response]]) -> None:
    """A plain Starlette route for the declared methods only (Starlette would add HEAD to
    GET, where FastAPI's declared routes answered 405)."""
    route = Route(endpoint.path.replace("}", ":path}"), serve, include_in_schema=False)
    route.methods = {m for m, _ in endpoint.operations}
    app.router.routes.append(route)


async def _read_body(request: Request, wire: WireRequest, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        wire.oversize = int(declared)
        return
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                wire.oversize = size
                return
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the request body was cut off") from None
    wire.body = b"".join(chunks)


def merge_openapi(schema: dict[str, Any]) -> None:
    """Add the hot endpoints' fragments to FastAPI's generated schema."""
    paths = schema.setdefault("paths", {})
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    models = []
    for served in _served():
        endpoint = served.endpoint
        paths[endpoint.path] = endpoint.openapi()
        models += [spec["model"] for spec in endpoint.responses.values() if "model" in spec]
    for name, sub in _response_schemas(models).items():
        schemas.setdefault(name, sub)


def _response_schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    """The component schemas FastAPI renders for these response models (its serialization
    rules: fields with defaults are required, no defaults shown)."""
    probe = FastAPI()
    for i, model in enumerate(models):
        probe.add_api_route(f"/{i}", _nothing, response_model=model)
    found: dict[str, Any] = probe.openapi().get("components", {}).get("schemas", {})
    return found


async def _nothing() -> None:
    return None


__all__ = ["Endpoint", "Option", "error_responses", "hot_routes", "merge_openapi"]
