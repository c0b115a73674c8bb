"""The web console at /console: static HTML, CSS and JS shipped in the package.

No build step and nothing from a CDN: the files in `http/console/` are served as they are.
The page talks to the same HTTP API as every client (credentials in an Authorization header
kept in sessionStorage, never a cookie: no CSRF surface). A strict Content-Security-Policy
allows only this origin's scripts, styles and connections.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import Response

from pushwire.http.errors import ApiError

router = APIRouter()

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str]]:
    """Every console file by name, read once: only these names are ever served."""
    files: dict[str, tuple[bytes, str]] = {}
    try:
        entries = list(resources.files("pushwire.http").joinpath("console").iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return files  # installed without its package data: /console answers 404
    for entry in entries:
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


_FILES = _load()


def _serve(name: str) -> Response:
    found = _FILES.get(name)
    if found is None:
        raise ApiError(404, "not_found", f"no console file {name!r}")
    body, media_type = found
    return Response(body, media_type=media_type, headers=_HEADERS)


@router.get("/console", include_in_schema=False)
@router.get("/console/", include_in_schema=False)
async def console_index() -> Response:
    return _serve("index.html")


@router.get("/console/{name}", include_in_schema=False)
async def console_file(name: str) -> Response:
    return _serve(name)
