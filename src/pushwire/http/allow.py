"""The `Allow` header of a 405: every method the path accepts, not just the first route's.

Starlette answers a method mismatch with the methods of the first route whose path matched,
so a path served by two routes (`POST` and `PUT /v1/publish/{topic}`) said `Allow: PUT`
although `POST` works too. Asking the router, method by method, whether some route fully
matches the path finds them all (and works however FastAPI nests included routers).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app accepts on this request's path."""
    allowed: list[str] = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        for route in request.app.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                allowed.append(method)
                break
    return allowed
