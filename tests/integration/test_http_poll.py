"""Poll and long-poll: MQTT -> HTTP, cursors, exact resume, gaps, ETag / If-None-Match."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from helpers.clients import PahoClient
from helpers.server import ServerProcess

from .http_util import StartServer, base, curl, http_server

__all__ = ["http_server"]
pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")
PahoFactory = Callable[..., PahoClient]


def test_mqtt_publish_is_polled_with_cursor_and_exact_resume(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server()
    pub = paho_client(srv, "pub")
    for i in range(5):
        pub.publish(f"dev/{i % 2}/temp", b"%d" % i, qos=1)
    url = base(srv)
    r = httpx.get(f"{url}/v1/poll/dev/+/temp", params={"since": "all", "limit": 3})
    body = r.json()
    assert [m["payload"] for m in body["messages"]] == ["0", "1", "2"]
    assert body["more"] is True and r.headers["Pushwire-Gap"] == "false"
    assert r.headers["ETag"] == f'"{body["cursor"]}"'
    # resume from the cursor: exactly the rest, in order, no duplicates
    r = httpx.get(f"{url}/v1/poll/dev/+/temp", params={"since": body["cursor"]})
    body = r.json()
    assert [m["payload"] for m in body["messages"]] == ["3", "4"] and not body["more"]
    # missed while away: publish more, come back with the cursor
    pub.publish("dev/1/temp", b"5", qos=1)
    pub.publish("other", b"nope", qos=1)
    pub.publish("dev/0/temp", b"6", qos=1)
    r = httpx.get(f"{url}/v1/poll/dev/+/temp", params={"since": body["cursor"]})
    assert [m["payload"] for m in r.json()["messages"]] == ["5", "6"]
    assert [m["topic"] for m in r.json()["messages"]] == ["dev/1/temp", "dev/0/temp"]


def test_poll_with_if_none_match_is_304_until_something_new(http_server: StartServer) -> None:
    srv = http_server()
    url = base(srv)
    httpx.post(f"{url}/v1/publish/e", content=b"1")
    r = httpx.get(f"{url}/v1/poll/e")
    etag = r.headers["ETag"]
    r = httpx.get(f"{url}/v1/poll/e", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.headers["ETag"] == etag
    httpx.post(f"{url}/v1/publish/e", content=b"2")
    r = httpx.get(f"{url}/v1/poll/e", headers={"If-None-Match": etag})
    assert r.status_code == 200 and [m["payload"] for m in r.json()["messages"]] == ["2"]


def test_since_duration_and_unix_time(http_server: StartServer) -> None:
    srv = http_server()
    url = base(srv)
    httpx.post(f"{url}/v1/publish/d", content=b"old")
    assert [m["payload"] for m in httpx.get(f"{url}/v1/poll/d?since=10m").json()["messages"]] == [
        "old"
    ]
    future = time.time() + 60
    assert httpx.get(f"{url}/v1/poll/d", params={"since": f"@{future}"}).json()["messages"] == []
    r = httpx.get(f"{url}/v1/poll/d", params={"since": "latest"})
    assert r.json()["messages"] == [] and r.json()["id"] == 1


def test_gap_when_cursor_is_older_than_the_log(http_server: StartServer) -> None:
    srv = http_server(log_max_messages=3)
    url = base(srv)
    for i in range(6):
        httpx.post(f"{url}/v1/publish/g", content=b"%d" % i)
    r = httpx.get(f"{url}/v1/poll/g", params={"since": "1"})
    assert r.headers["Pushwire-Gap"] == "true" and r.json()["gap"] is True
    assert [m["id"] for m in r.json()["messages"]] == [4, 5, 6]
    r = httpx.get(f"{url}/v1/poll/g", params={"since": "3"})
    assert r.headers["Pushwire-Gap"] == "false"
    # long-poll answers a gap at once rather than waiting
    t0 = time.monotonic()
    r = httpx.get(f"{url}/v1/longpoll/g", params={"since": "1", "timeout": "20"})
    assert r.json()["gap"] is True and time.monotonic() - t0 < 5


def test_per_pattern_retention(http_server: StartServer) -> None:
    srv = http_server(log_retention=[{"filter": "tiny/#", "max_messages": 1}])
    url = base(srv)
    for t in ["tiny/a", "tiny/a", "big/a", "big/a"]:
        httpx.post(f"{url}/v1/publish/{t}", content=b"x")
    assert [m["id"] for m in httpx.get(f"{url}/v1/poll/%23").json()["messages"]] == [2, 3, 4]


async def test_longpoll_is_held_until_an_mqtt_publish(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server()
    url = base(srv)
    pub = paho_client(srv, "pub")
    async with httpx.AsyncClient(timeout=10) as client:
        waiters = [
            asyncio.create_task(client.get(f"{url}/v1/longpoll/{flt}", params={"timeout": 8}))
            for flt in ["lp/x", "lp/%23", "lp/+"]
        ]
        await _until_waiting(client, url, 3)
        assert not any(w.done() for w in waiters)
        pub.publish("lp/x", b"wake", qos=1)
        for r in await asyncio.gather(*waiters):
            assert r.status_code == 200
            assert [m["payload"] for m in r.json()["messages"]] == ["wake"]
        # re-ask with the returned cursor: held again, then gets exactly the next one
        again = asyncio.create_task(
            client.get(f"{url}/v1/longpoll/lp/%23", headers={"If-None-Match": r.headers["ETag"]})
        )
        await _until_waiting(client, url, 1)
        pub.publish("lp/y", b"next", qos=1)
        r2 = await again
        assert [m["payload"] for m in r2.json()["messages"]] == ["next"]


async def _until_waiting(client: httpx.AsyncClient, url: str, n: int) -> None:
    for _ in range(500):
        text = (await client.get(f"{url}/metrics")).text
        if f"pushwire_longpoll_waiters {n}.0" in text:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {n} long-poll waiters")


def test_longpoll_timeout_returns_empty_or_304(http_server: StartServer) -> None:
    srv = http_server(longpoll_max_timeout=0.5)
    url = base(srv)
    t0 = time.monotonic()
    r = httpx.get(f"{url}/v1/longpoll/t?timeout=30")  # capped at 0.5 s by the server
    assert time.monotonic() - t0 < 5
    assert r.status_code == 200 and r.json()["messages"] == []
    r = httpx.get(f"{url}/v1/longpoll/t?timeout=0.2", headers={"If-None-Match": r.headers["ETag"]})
    assert r.status_code == 304


def test_curl_longpoll(http_server: StartServer) -> None:
    srv = http_server()
    url = base(srv)
    httpx.post(f"{url}/v1/publish/c/1", content=b"via curl")
    out = curl(f"{url}/v1/longpoll/c/%23?since=all&timeout=5")
    assert b'"payload":"via curl"' in out.stdout


def test_client_gone_frees_its_waiter(http_server: StartServer) -> None:
    srv = http_server()
    url = base(srv)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{url}/v1/longpoll/gone?timeout=30", timeout=0.3)
    for _ in range(300):
        if "pushwire_longpoll_waiters 0.0" in httpx.get(f"{url}/metrics").text:
            return
        time.sleep(0.01)
    raise AssertionError("waiter of a disconnected client is still held")


def _sqlite_roundtrip(srv: ServerProcess) -> tuple[str, list[int]]:
    body = httpx.get(f"{base(srv)}/v1/poll/p/%23").json()
    return body["epoch"], [m["id"] for m in body["messages"]]


def test_sqlite_restart_keeps_log_and_epoch(http_server: StartServer) -> None:
    srv = http_server(memory=False)
    url = base(srv)
    for i in range(3):
        assert httpx.post(f"{url}/v1/publish/p/{i}", content=b"%d" % i).status_code == 201
    epoch, ids = _sqlite_roundtrip(srv)
    srv.restart()
    assert _sqlite_roundtrip(srv) == (epoch, ids)
    # ids go on; an old cursor of the same epoch resumes without a gap
    r = httpx.post(f"{base(srv)}/v1/publish/p/x", content=b"new")
    assert r.json()["id"] == 4 and r.json()["epoch"] == epoch
    r = httpx.get(f"{base(srv)}/v1/poll/p/%23", params={"since": f"{epoch}:3"})
    assert r.headers["Pushwire-Gap"] == "false" and [m["id"] for m in r.json()["messages"]] == [4]


def test_sqlite_kill9_keeps_acknowledged_publishes(http_server: StartServer) -> None:
    srv = http_server(memory=False)
    url = base(srv)
    for i in range(20):
        assert httpx.post(f"{url}/v1/publish/k", content=b"%d" % i).status_code == 201
    srv.kill()  # SIGKILL: only what was durable before the 201 survives
    srv.start()
    msgs = httpx.get(f"{base(srv)}/v1/poll/k").json()["messages"]
    assert [m["payload"] for m in msgs] == [str(i) for i in range(20)]


def test_memory_restart_changes_epoch_so_old_cursors_see_a_gap(http_server: StartServer) -> None:
    srv = http_server(memory=True)
    url = base(srv)
    httpx.post(f"{url}/v1/publish/m", content=b"before")
    cursor = httpx.get(f"{url}/v1/poll/m").json()["cursor"]
    srv.restart()
    url = base(srv)
    httpx.post(f"{url}/v1/publish/m", content=b"after")
    r = httpx.get(f"{url}/v1/poll/m", params={"since": cursor})
    assert r.headers["Pushwire-Gap"] == "true"
    assert r.json()["epoch"] != cursor.split(":")[0]
    assert [m["payload"] for m in r.json()["messages"]] == ["after"]
