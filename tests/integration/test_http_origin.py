"""Origin checks and CORS without a browser (the browser itself: test_browser_origins.py):
by default no CORS headers, and cross-origin WebSocket upgrades and state-changing
requests are refused with 403 and the JSON error model; requests without Origin, or from
the server's own origin, are unaffected."""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .http_util import StartServer, base, http_server, ws_url

__all__ = ["http_server"]
pytestmark = pytest.mark.pushwire_only("pushwire's HTTP transports")

EVIL = "http://evil.example"


def forbidden_origin(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden_origin"


async def test_cross_origin_writes_and_websockets_are_refused(http_server: StartServer) -> None:
    srv = http_server()
    url = base(srv)
    own = f"http://{srv.host}:{srv.http_port}"
    forbidden_origin(httpx.post(f"{url}/v1/publish/o/t", content=b"x", headers={"Origin": EVIL}))
    forbidden_origin(httpx.put(f"{url}/v1/publish/o/t", content=b"x", headers={"Origin": "null"}))
    forbidden_origin(
        httpx.post(
            f"{url}/v1/publish", json={"topic": "o/t", "payload": "x"}, headers={"Origin": EVIL}
        )
    )
    for path in ("/v1/ws", "/mqtt"):
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(srv, path), origin=EVIL, subprotocols=["mqtt"]):  # type: ignore[arg-type, list-item]
                pass
        assert info.value.response.status_code == 403
    # the server's own origin, and no Origin at all (curl, SDKs), are fine
    assert (
        httpx.post(f"{url}/v1/publish/o/t", content=b"own", headers={"Origin": own}).status_code
        == 201
    )
    assert httpx.post(f"{url}/v1/publish/o/t", content=b"plain").status_code == 201
    async with connect(ws_url(srv), origin=own):  # type: ignore[arg-type]
        pass
    async with connect(ws_url(srv)):
        pass
    # reads are not state-changing: served, but without CORS headers a page cannot read them
    r = httpx.get(f"{url}/v1/poll/o/t", params={"since": "all"}, headers={"Origin": EVIL})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert [m["payload"] for m in r.json()["messages"]] == ["own", "plain"]


def test_cors_for_listed_origins_only(http_server: StartServer) -> None:
    app = "http://app.example:8000"
    srv = http_server(cors_origins=f"{app}, http://other.example")
    url = base(srv)
    pre = httpx.options(
        f"{url}/v1/publish/c/t",
        headers={
            "Origin": app,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type, pushwire-retain",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == app
    assert "PUT" in pre.headers["access-control-allow-methods"]
    assert "pushwire-retain" in pre.headers["access-control-allow-headers"].lower()
    r = httpx.post(f"{url}/v1/publish/c/t", content=b"x", headers={"Origin": app})
    assert r.status_code == 201 and r.headers["access-control-allow-origin"] == app
    r = httpx.get(f"{url}/v1/poll/c/t", params={"since": "all"}, headers={"Origin": app})
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"pushwire-gap", "etag", "last-event-id"} <= exposed
    # an origin not listed gets no CORS headers, and its writes are refused
    r = httpx.get(f"{url}/v1/poll/c/t", headers={"Origin": EVIL})
    assert "access-control-allow-origin" not in r.headers
    forbidden_origin(httpx.post(f"{url}/v1/publish/c/t", content=b"x", headers={"Origin": EVIL}))


def test_method_not_allowed_names_every_method_of_the_path(http_server: StartServer) -> None:
    """Without CORS a preflight is just an OPTIONS request: 405, naming what the path
    serves (it used to say `Allow: PUT` for the POST and PUT publish routes)."""
    srv = http_server()
    url = base(srv)
    r = httpx.options(
        f"{url}/v1/publish/t",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST, PUT"
    assert "access-control-allow-origin" not in r.headers
    r = httpx.delete(f"{url}/v1/poll/t")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
