"""The HTTP surface (FastAPI): health, metrics, and the HTTP transports on the message log.

    POST|PUT /v1/publish/{topic}   POST /v1/publish (JSON, batch)
    GET /v1/poll/{filter}          GET /v1/longpoll/{filter}
    GET /v1/sse/{filter}           GET /v1/ws (JSON WebSocket)
    /v1/admin/users, /tokens, /acl (admin API)
    GET /v1/retained/{filter}      GET /v1/stats             GET /v1/me
    /v1/admin/clients, /sessions (live view)                  /console (web console)
    GET /v1/health                 GET /metrics              /docs, /openapi.json
    GET / (browsers: the console; others: a JSON index of the endpoints)

Every route but health and the API description authenticates its caller (http/auth.py) and
checks the topic ACL. See docs/http.md, docs/websocket.md and docs/security.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from pushwire import __version__
from pushwire.config import Settings
from pushwire.core.auth import AuthService
from pushwire.core.hub import Hub
from pushwire.core.log import MemoryBudget, MessageLog, Retention, RetentionRule
from pushwire.http import (
    admin,
    admin_live,
    console,
    me,
    metrics,
    poll,
    retained,
    sse,
    stats,
    ws,
)
from pushwire.http.browser import install_browser_policy
from pushwire.http.docs_ui import install_docs
from pushwire.http.endpoints import install_asgi_routes, merge_openapi
from pushwire.http.errors import install_error_handlers
from pushwire.http.state import HttpState, open_auth
from pushwire.http.strict_url import StrictUrlMiddleware


def make_log(hub: Hub, settings: Settings) -> MessageLog:
    """The message log configured from settings and fed by the hub (call `restore()`)."""
    log = MessageLog(
        hub.engine,
        Retention(settings.log_max_messages, settings.log_max_age),
        [RetentionRule(r.filter, r.max_messages, r.max_age) for r in settings.log_retention],
        budget=MemoryBudget(settings.log_topic_memory_bytes, settings.log_memory_bytes),
        stats=hub.stats,
        max_consumers_per_owner=settings.max_consumers_per_identity,
        consumer_idle_timeout=settings.consumer_idle_timeout,
        plane=hub,  # its readers are subscribers in the hub's tree (core/readers.py)
    )
    hub.add_observer(log.observer, log.observe_run)
    hub.cold_sink = log.append_cold  # engine=redis: Hub.pass_by
    log.cold_unless_listened = settings.redis_log_memory == "listened"
    return log


def create_app(
    hub: Hub,
    log: MessageLog | None = None,
    settings: Settings | None = None,
    *,
    auth: AuthService | None = None,
) -> FastAPI:
    """The HTTP app. `auth`: the server's AuthService (started by the server); without
    one, everybody is admitted to everything (tests, embedding)."""
    settings = settings or Settings.model_validate({})
    if log is None:
        log = make_log(hub, settings)
    app = FastAPI(
        title="pushwire",
        version=__version__,
        description="One push server for every way a client listens. Topics and filters use "
        "MQTT syntax; percent-encode `#` (%23) in paths. Errors are "
        '`{"error": {"code", "message"}}`. Credentials: `Authorization: Bearer <token>`, '
        "HTTP Basic (user and password), or `?auth=<token>` on poll, long-poll, SSE and "
        "WebSocket URLs; without any, the server's anonymous policy decides (an operation "
        "listing the empty security requirement `{}` may be open to anonymous clients). "
        "Topic ACLs apply to every publish and read (403 with the reason). WebSockets (not "
        "described by OpenAPI): the JSON protocol at `/v1/ws` (docs/websocket.md) and MQTT "
        "over WebSocket at `/mqtt`.",
        redirect_slashes=False,
        docs_url=None,  # served from packaged assets by docs_ui (no CDN)
        redoc_url=None,
    )
    state = HttpState(hub, log, settings, auth if auth is not None else open_auth())
    app.state.pushwire = state
    state.registry.register(metrics.ServerCollector(state))
    install_error_handlers(app)
    # URLs whose percent-encoding is not UTF-8 never reach a route (no silent U+FFFD)
    app.add_middleware(StrictUrlMiddleware)
    # added last, so outermost: Origin checks first, and CORS headers on every answer
    # (the strict-URL 400s included) for trusted origins
    install_browser_policy(app, settings.cors_origins, state.stats)

    @app.get("/v1/health", tags=["admin"])
    async def health() -> dict[str, Any]:
        """Liveness and a few numbers: 200 while the server runs."""
        return {
            "status": "ok",
            "version": __version__,
            "engine": hub.engine.name,
            "node_id": settings.node_id,  # which node/worker answered (--workers, clusters)
            "uptime": hub.stats.uptime(),
            "clients_connected": hub.stats.clients_connected,
            "sessions": len(hub.sessions),
            "log": {
                "epoch": log.epoch,
                "last_id": log.last_id,
                "messages": log.size,
                "memory_bytes": log.memory_bytes,
                "disk_only": log.cold_count,
            },
        }

    install_asgi_routes(app, state)  # the hot endpoints, for requests the protocol passes on
    app.include_router(poll.router)
    app.include_router(sse.router)
    app.include_router(ws.router)
    app.include_router(metrics.router)
    app.include_router(admin.router)
    app.include_router(admin_live.router)
    app.include_router(retained.router)
    app.include_router(stats.router)
    app.include_router(me.router)
    app.include_router(console.router)
    install_docs(app)
    _truthful_openapi(app)
    return app


def _truthful_openapi(app: FastAPI) -> None:
    """FastAPI documents a 422 on every route with parameters; pushwire answers bad input
    with 400 and the error model (http/errors.py), so drop the 422s from the description.
    Routes outside the admin API may admit anonymous clients (the anonymous policy is a
    setting): their security requirements get the empty alternative `{}`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            merge_openapi(schema)  # the hot endpoints, declared once (http/endpoints.py)
            for path, ops in schema.get("paths", {}).items():
                for op in ops.values():
                    op.get("responses", {}).pop("422", None)
                    security = op.get("security")
                    if security and not path.startswith("/v1/admin/"):
                        security.append({})
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
