"""The API documentation page and the endpoint index, served without internet access.

FastAPI's default `/docs` loads Swagger UI from a CDN: on a machine without internet access
it is a white page. The Swagger UI assets (swagger-ui-dist, Apache-2.0, its LICENSE and NOTICE
kept beside them) ship inside the package under `http/static/swagger-ui/` and are served from
`/static/swagger-ui/`, so the page references no external host.

`GET /` sends browsers (`Accept: text/html`) to the web console at `/console` when the app
has one, and answers everybody else with a small JSON index of the endpoints (links a person
can follow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.routing import Match
from starlette.staticfiles import StaticFiles

from pushwire import __version__

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static"
SWAGGER_PREFIX = f"{STATIC_PREFIX}/swagger-ui"
CONSOLE = "/console"

# what `/` lists: path -> what it is (paths with {..} are templates, not links)
ENDPOINTS: dict[str, str] = {
    "/docs": "interactive API documentation (Swagger UI)",
    "/openapi.json": "OpenAPI description",
    "/v1/health": "liveness and a few numbers",
    "/metrics": "Prometheus metrics",
    "/v1/publish/{topic}": "POST/PUT: publish the request body",
    "/v1/publish": "POST: publish JSON (one message or a batch)",
    "/v1/poll/{filter}": "GET: messages after a cursor",
    "/v1/longpoll/{filter}": "GET: the same, waiting for at least one",
    "/v1/sse/{filter}": "GET: Server-Sent Events stream",
    "/v1/ws": "WebSocket, JSON protocol",
    "/mqtt": "MQTT over WebSocket (subprotocol mqtt)",
    "/console": "web console (a browser page)",
    "/v1/admin/users": "admin API: users (also /v1/admin/tokens, /v1/admin/acl)",
}


def install_docs(app: FastAPI) -> None:
    """Serve `/docs` from packaged assets and `/` as an index. The app must have been made
    with `docs_url=None, redoc_url=None` (FastAPI's own pages point at CDNs)."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{SWAGGER_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_PREFIX}/favicon-32x32.png",
            # the online validator badge would call out to validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/", include_in_schema=False, response_model=None)
    async def index(request: Request) -> JSONResponse | RedirectResponse:
        if "text/html" in request.headers.get("accept", "") and _serves(request, CONSOLE):
            return RedirectResponse(CONSOLE, status_code=307)
        base = str(request.base_url).rstrip("/")
        links: list[dict[str, Any]] = []
        for path, what in ENDPOINTS.items():
            entry: dict[str, Any] = {"path": path, "what": what}
            if "{" not in path:
                scheme = "ws" if path in ("/v1/ws", "/mqtt") else None
                url = base + path
                if scheme is not None:
                    url = url.replace("http", "ws", 1)
                entry["url"] = url
            links.append(entry)
        return JSONResponse(
            {
                "name": "pushwire",
                "version": __version__,
                "docs": base + "/docs",
                "endpoints": links,
            }
        )


def _serves(request: Request, path: str) -> bool:
    """Does some route of the app answer GET `path`?"""
    scope = {**request.scope, "path": path, "method": "GET"}
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)
