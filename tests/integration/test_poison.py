"""No request can poison the store (issue 9): text that cannot be encoded (a lone UTF-16
surrogate), JSON nested too deep, bytes that are not UTF-8 in a URL and out-of-range numbers
are refused with a 4xx (or an error frame) before anything is routed, so the log stays
readable on every transport and the server logs no error."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from helpers.jsonws import recv, request

from .http_util import HttpServerProcess, StartServer, base, http_server, ws_url
from .test_http_auth import Secured, basic, error, secured

__all__ = ["http_server", "secured"]
pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")

SURROGATE = "\ud800"


def post_json(srv: HttpServerProcess, body: Any) -> httpx.Response:
    # json.dumps escapes the surrogate as \ud800: valid JSON, not valid text
    return httpx.post(
        f"{base(srv)}/v1/publish",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )


def poll_all(srv: HttpServerProcess, flt: str = "chat/%23") -> dict[str, Any]:
    r = httpx.get(f"{base(srv)}/v1/poll/{flt}?since=all")
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("field", ["topic", "payload", "content_type"])
def test_a_surrogate_in_a_json_publish_is_refused_before_routing(
    http_server: StartServer, field: str
) -> None:
    srv = http_server(memory=False)
    body = {"topic": "chat/a", "payload": "p"}
    body[field] = body.get(field, "") + SURROGATE
    message = error(post_json(srv, body), 400, "bad_request")
    assert f"body.{field}" in message  # names the field
    # in a batch: nothing of it is published
    message = error(
        post_json(srv, [{"topic": "chat/ok", "payload": "x"}, body]), 400, "bad_request"
    )
    assert f"body[1].{field}" in message
    r = post_json(srv, {"topic": "chat/b", "payload": "marker"})
    assert r.status_code == 201, r.text
    polled = poll_all(srv)
    assert [m["payload"] for m in polled["messages"]] == ["marker"]
    assert "ERROR" not in srv.output()


async def test_sse_and_websocket_readers_with_since_all_read_past_a_refused_poison(
    http_server: StartServer,
) -> None:
    srv = http_server(memory=False)
    assert post_json(srv, {"topic": f"chat/{SURROGATE}", "payload": "p"}).status_code == 400
    assert post_json(srv, {"topic": "chat/x", "payload": "one"}).status_code == 201
    sse_url = f"{base(srv)}/v1/sse/chat/%23?since=all"
    async with httpx.AsyncClient(timeout=5) as client, client.stream("GET", sse_url) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                assert json.loads(line[5:])["payload"] == "one"
                break
    async with connect(ws_url(srv)) as ws:
        r2 = await request(
            ws, {"type": "subscribe", "sub": "s", "filter": "chat/#", "since": "all"}
        )
        assert r2["type"] == "subscribed"
        frame = await recv(ws)
        assert (frame["type"], frame["payload"]) == ("message", "one")


async def test_a_surrogate_in_any_websocket_frame_gets_a_bad_request_frame(
    http_server: StartServer,
) -> None:
    srv = http_server(memory=False)
    async with connect(ws_url(srv)) as ws:
        frames: list[tuple[dict[str, Any], str]] = [
            ({"type": "publish", "topic": f"chat/{SURROGATE}", "payload": "p"}, "bad_request"),
            ({"type": "publish", "topic": "chat/a", "payload": SURROGATE}, "bad_request"),
            ({"type": "publish", "topic": "chat/a", "content_type": SURROGATE}, "bad_request"),
            ({"type": "subscribe", "sub": SURROGATE, "filter": "chat/#"}, "bad_request"),
            ({"type": "subscribe", "sub": "s", "filter": f"chat/{SURROGATE}"}, "bad_request"),
            ({"type": "ping", "ref": SURROGATE}, "bad_request"),
            ({"type": "ping", "ref": {SURROGATE: 1}}, "bad_request"),
            ({"type": SURROGATE}, "bad_request"),
        ]
        for frame, code in frames:
            r = await request(ws, frame)
            assert (r["type"], r["code"]) == ("error", code), (frame, r)
            assert "ref" not in r  # the ref itself may be the bad text: never echoed
        # the connection is still usable, and nothing was published
        r = await request(ws, {"type": "ping", "ref": 7})
        assert (r["type"], r["ref"]) == ("pong", 7)
        r = await request(ws, {"type": "publish", "topic": "chat/a", "payload": "ok", "ref": 1})
        assert r["type"] == "published", r
    assert [m["payload"] for m in poll_all(srv)["messages"]] == ["ok"]
    assert "ERROR" not in srv.output()


def test_bad_bytes_in_a_url_are_refused(http_server: StartServer) -> None:
    srv = http_server(memory=False)
    url = base(srv)
    # %ff and an encoded surrogate are not UTF-8: refused, never turned into U+FFFD
    for topic in ("chat/%ff", "chat/%ed%a0%80", "chat/a%c3"):
        error(httpx.post(f"{url}/v1/publish/{topic}", content=b"p"), 400, "bad_topic")
        error(httpx.get(f"{url}/v1/poll/{topic}?since=all"), 400, "bad_topic")
        error(httpx.get(f"{url}/v1/sse/{topic}?since=all"), 400, "bad_topic")
    error(httpx.post(f"{url}/v1/publish/chat/a?ttl=%ff", content=b"p"), 400, "bad_request")
    error(httpx.get(f"{url}/v1/poll/chat/a?since=%ff"), 400, "bad_request")
    r = httpx.post(f"{url}/v1/publish/chat/%C3%A9", content=b"marker")
    assert r.status_code == 201 and r.json()["topic"] == "chat/\u00e9"
    assert [m["topic"] for m in poll_all(srv)["messages"]] == ["chat/\u00e9"]


@pytest.mark.parametrize(
    "since",
    [
        "99999999999999999999d",  # before 1970: would return everything
        "9999999999999999999999999999999999999999999h",
        "@99999999999999999999",  # after year 9999
        "99999999999999999999.5",
        "1e400",
    ],
)
def test_out_of_range_cursors_are_bad_cursor(http_server: StartServer, since: str) -> None:
    srv = http_server()
    url = base(srv)
    error(httpx.get(f"{url}/v1/poll/a?since={since}"), 400, "bad_cursor")


def test_deeply_nested_json_is_a_400_not_a_500(http_server: StartServer) -> None:
    srv = http_server(memory=False)
    url = base(srv)
    headers = {"Content-Type": "application/json"}
    error(
        httpx.post(f"{url}/v1/publish", content="[" * 100_000, headers=headers), 400, "bad_request"
    )
    error(
        httpx.post(f"{url}/v1/publish", content="[" * 100_000 + "]" * 100_000, headers=headers),
        400,
        "bad_request",
    )
    # the default limit is 32 levels: 40 nested arrays inside a message are too deep
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    error(
        httpx.post(f"{url}/v1/publish", json={"topic": "a", "payload": "p", "x": deep}),
        400,
        "bad_request",
    )
    assert "Traceback" not in srv.output() and "ERROR" not in srv.output()


async def test_out_of_range_websocket_cursor_is_bad_cursor(http_server: StartServer) -> None:
    srv = http_server()
    async with connect(ws_url(srv)) as ws:
        for since in (2**63, 10**30, "99999999999999999999d", "@99999999999999999999"):
            r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "a", "since": since})
            assert (r["type"], r["code"]) == ("error", "bad_cursor"), (since, r)
        r = await request(ws, {"type": "subscribe", "sub": "s", "filter": "a", "since": 2**63 - 1})
        assert r["type"] == "subscribed"


async def test_deeply_nested_websocket_frame_gets_an_error_frame(
    http_server: StartServer,
) -> None:
    srv = http_server(json_max_depth=8)
    async with connect(ws_url(srv)) as ws:
        nested = '{"type": "ping", "ref": ' + "[" * 20 + "]" * 20 + "}"
        r = await request(ws, nested)
        assert (r["type"], r["code"]) == ("error", "bad_request"), r
        r = await request(ws, '{"type": "ping", "ref": ' + "[" * 100_000 + "]" * 100_000 + "}")
        assert (r["type"], r["code"]) == ("error", "bad_request"), r
        r = await request(ws, {"type": "ping", "ref": [[1]]})
        assert r == {"type": "pong", "ref": [[1]]}
    assert "Traceback" not in srv.output()


def test_admin_api_refuses_surrogates_and_deep_json(secured: Secured) -> None:
    url = f"{secured.url}/v1/admin"
    root = {**basic("root"), "Content-Type": "application/json"}
    for body in (
        {"name": f"eve{SURROGATE}", "password": "pw"},
        {"name": "eve", "password": f"pw{SURROGATE}"},
    ):
        r = httpx.post(f"{url}/users", content=json.dumps(body), headers=root)
        assert "not valid UTF-8" in error(r, 400, "bad_request")
    deep = '{"name": "eve", "password": "pw", "roles": ' + "[" * 40 + "]" * 40 + "}"
    r = httpx.post(f"{url}/users", content=deep, headers=root)
    assert "deeper than 32" in error(r, 400, "bad_request")
    r = httpx.get(f"{url}/users", headers=root)
    assert "eve" not in {u["name"] for u in r.json()}
    assert "Traceback" not in secured.srv.output()


async def test_refused_websocket_logs_no_error(secured: Secured) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(secured.ws, additional_headers=basic("alice", "wrong")):
            pass
    assert info.value.response.status_code == 401
    # and a handshake on a path that does not exist
    with pytest.raises(InvalidStatus):
        async with connect(secured.ws.replace("/v1/ws", "/v1/nope")):
            pass
    # a positive marker: a good handshake right after, so the log has caught up with both
    async with connect(secured.ws, additional_headers=basic("root")) as ws:
        r = await request(ws, {"type": "ping", "ref": 1})
        assert r["type"] == "pong"
    out = secured.srv.output()
    assert "without completing handshake" not in out
    assert " ERROR " not in out and "ERROR:" not in out
