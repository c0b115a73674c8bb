"""The push gateway on engine=redis: apps, devices and pushes are the same on every node.

Two or three pushwire nodes run as subprocesses on one private redis-server
(tests/helpers/redis.py, AOF with appendfsync always). Apps and keys are made with the
`pushwire app` CLI pointed at Redis (PUSHWIRE_ENGINE=redis), as an operator would.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.asyncio.client import ClientConnection, connect

from helpers.clients import PahoClient
from helpers.gateway import base_url, decode, push, push_state
from helpers.redis import RedisServer
from helpers.server import ServerProcess
from helpers.workers import running_supervisor

from .cluster_util import DEADLINE, StartNode, cluster_node, wait_for

__all__ = ["cluster_node"]
pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")

ROOT = ("root", "root-password")
Paho = Callable[..., PahoClient]
DeviceClient = Callable[[ServerProcess, str, str], PahoClient]
# short heartbeats: a node killed with -9 is seen dead (and its devices and sessions taken
# over) within about two seconds
FAST_FAILOVER = (
    *("--cluster-heartbeat-interval", "0.3"),
    *("--cluster-node-timeout", "1.5"),
    *("--cluster-takeover-timeout", "2.5"),
)


def redis_cli(redis: RedisServer, *args: str, stdin: str | None = None) -> Any:
    """`pushwire ARGS` against the cluster's Redis (PUSHWIRE_ENGINE=redis); JSON output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    env |= {"PUSHWIRE_ENGINE": "redis", "PUSHWIRE_REDIS_URL": redis.url}
    done = subprocess.run(
        [sys.executable, "-m", "pushwire", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=redis.data_dir,  # a CLI that ignored the engine would write its data dir here
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


def knows_key(srv: ServerProcess, key: str) -> bool:
    r = httpx.get(
        f"{base_url(srv)}/v1/push/00000000-0000-4000-8000-000000000000",
        headers={"Authorization": f"Bearer {key}"},
    )
    return r.status_code == 404  # authenticated: the push is unknown, the app is not


def make_app(redis: RedisServer, *nodes: ServerProcess) -> tuple[str, str]:
    """An app made in Redis by the CLI; (app_id, api_key) once every node knows it."""
    made = redis_cli(redis, "app", "create", "demo", "--json")
    for srv in nodes:
        wait_for(functools.partial(knows_key, srv, made["api_key"]), f"{srv} to load the app")
    return made["app_id"], made["api_key"]


def register(srv: ServerProcess, app_id: str, *others: ServerProcess) -> tuple[str, str, str]:
    """(device_id, secret, token) registered on `srv`, once the `others` know them too."""
    r = httpx.post(f"{base_url(srv)}/v1/devices")
    assert r.status_code == 201, r.text
    device = (r.json()["device_id"], r.json()["device_secret"])
    r = httpx.post(
        f"{base_url(srv)}/v1/devices/{device[0]}/tokens", json={"app": app_id}, auth=device
    )
    assert r.status_code == 200, r.text
    for other in others:

        def known(other: ServerProcess = other) -> bool:
            got = httpx.get(f"{base_url(other)}/v1/devices/{device[0]}", auth=device)
            return got.status_code == 200 and got.json()["apps"] == [app_id]

        wait_for(known, f"{other} to load the device")
    return device[0], device[1], r.json()["token"]


@pytest.fixture
def device_client(paho_client: Paho) -> Callable[[ServerProcess, str, str], PahoClient]:
    """`device_client(srv, device_id, secret)`: the device's persistent MQTT session on
    `srv`, subscribed to its pushes (closed when the test ends)."""

    def connect(srv: ServerProcess, device_id: str, secret: str) -> PahoClient:
        client = paho_client(srv, device_id, clean_session=False, auth=(device_id, secret))
        assert client.subscribe(f"devices/{device_id}/#", qos=1) == [1]
        return client

    return connect


def device_status(srv: ServerProcess, device_id: str, secret: str) -> dict[str, Any]:
    """GET /v1/devices/{id} on `srv` with the device's own credential: `srv`'s view."""
    r = httpx.get(f"{base_url(srv)}/v1/devices/{device_id}", auth=(device_id, secret))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_state(srv: ServerProcess, key: str, push_id: str, state: str) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal last
        last = push_state(srv, key, push_id)
        return bool(last["state"] == state)

    try:
        wait_for(reached, f"push {push_id} to be {state} on {srv}")
    except AssertionError:
        raise AssertionError(f"push {push_id} is {last}, not {state}") from None
    return last


def pushed(srv: ServerProcess, key: str, token: str, alert: str, **headers: str) -> str:
    r = push(srv, key, token, {"alert": alert}, **headers)
    assert r.status_code == 200, r.text
    return str(r.headers["Pushwire-Id"])


def test_push_on_one_node_reaches_the_device_connected_to_another(
    cluster_node: StartNode, redis_server: RedisServer, device_client: DeviceClient
) -> None:
    a, b = cluster_node(), cluster_node()
    app_id, key = make_app(redis_server, a, b)
    device_id, secret, token = register(a, app_id, b)
    client = device_client(a, device_id, secret)

    push_id = pushed(b, key, token, "from b")
    msg = client.get(DEADLINE)
    assert msg.topic == f"devices/{device_id}/{app_id}"
    assert decode(msg)["id"] == push_id
    assert decode(msg)["payload"] == {"alert": "from b"}
    # the acknowledgement on A is the record B shows
    record = wait_state(b, key, push_id, "delivered")
    assert record["connection"].startswith(f"mqtt {device_id}")
    assert push_state(a, key, push_id)["state"] == "delivered"
    # and the other way round
    back = pushed(a, key, token, "from a")
    assert decode(client.get(DEADLINE))["id"] == back
    wait_state(b, key, back, "delivered")

    # presence is the same on every node
    def status(srv: ServerProcess) -> dict[str, Any]:
        r = httpx.get(f"{base_url(srv)}/v1/devices/{device_id}", auth=(device_id, secret))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    wait_for(lambda: status(b)["online"] is True, "B to see the device online")
    client.disconnect()
    wait_for(lambda: status(b)["online"] is False, "B to see the device offline")
    assert status(a)["online"] is False
    assert isinstance(status(b)["last_seen"], float)


def test_offline_pushes_wait_and_follow_the_device_to_another_node(
    cluster_node: StartNode, redis_server: RedisServer, device_client: DeviceClient
) -> None:
    a, b = cluster_node(), cluster_node()
    app_id, key = make_app(redis_server, a, b)
    device_id, secret, token = register(a, app_id, b)
    device_client(a, device_id, secret).disconnect()  # a persistent session, now offline

    # pushes accepted on both nodes while the device is away; collapse, expiry and
    # arrival order work across them
    first = pushed(a, key, token, "1")
    old = pushed(b, key, token, "old", collapse_id="score")
    expired = pushed(a, key, token, "x", expiration="1")
    new = pushed(a, key, token, "new", collapse_id="score")
    last = pushed(b, key, token, "2")
    wait_state(b, key, old, "collapsed")
    wait_state(b, key, expired, "expired")
    assert push_state(b, key, first)["state"] == "queued"

    client = device_client(b, device_id, secret)
    got = [decode(m)["id"] for m in client.get_until(lambda m: decode(m)["id"] == last, DEADLINE)]
    assert got == [first, new, last]
    for push_id in (first, new, last):
        wait_state(a, key, push_id, "delivered")


def test_priority_quota_is_kept_for_a_device_whose_pushes_arrive_on_several_nodes(
    cluster_node: StartNode, redis_server: RedisServer, device_client: DeviceClient
) -> None:
    a, b = cluster_node("--push-queue-quota", "2"), cluster_node("--push-queue-quota", "2")
    app_id, key = make_app(redis_server, a, b)
    device_id, secret, token = register(b, app_id, a)
    device_client(b, device_id, secret).disconnect()

    low = pushed(a, key, token, "low", priority="5")
    high1 = pushed(a, key, token, "h1")
    high2 = pushed(b, key, token, "h2")
    # the quota keeps two: the oldest of the lowest priority goes
    wait_state(a, key, low, "dropped")
    client = device_client(a, device_id, secret)
    got = [decode(m)["id"] for m in client.get_until(lambda m: decode(m)["id"] == high2, DEADLINE)]
    assert got == [high1, high2]


def test_the_new_home_of_an_offline_device_keeps_its_quota(
    cluster_node: StartNode, redis_server: RedisServer, device_client: DeviceClient
) -> None:
    # A keeps four pushes for an offline device (its quota is 5) and dies; B, whose quota is
    # 2, adopts the device: the oldest of the lowest priority go, as when they arrive
    a = cluster_node("--push-queue-quota", "5", *FAST_FAILOVER)
    b = cluster_node("--push-queue-quota", "2", *FAST_FAILOVER)
    app_id, key = make_app(redis_server, a, b)
    device_id, secret, token = register(a, app_id, b)
    device_client(a, device_id, secret).disconnect()  # homed on A, offline
    low = pushed(a, key, token, "low", priority="5")
    h1, h2, h3 = (pushed(a, key, token, name) for name in ("h1", "h2", "h3"))
    for push_id in (low, h1, h2, h3):
        assert push_state(a, key, push_id)["state"] == "queued"
    a.kill()
    wait_state(b, key, low, "dropped")
    wait_state(b, key, h1, "dropped")
    client = device_client(b, device_id, secret)
    got = [decode(m)["id"] for m in client.get_until(lambda m: decode(m)["id"] == h3, DEADLINE)]
    assert got == [h2, h3]


def test_key_revoked_and_token_unregistered_on_one_node_are_refused_on_the_other(
    cluster_node: StartNode, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_cli(redis_server, "user", "add", ROOT[0], "--role", "admin", "--password-stdin",
              stdin=ROOT[1] + "\n")  # fmt: skip
    a, b = cluster_node(), cluster_node()
    app_id, key = make_app(redis_server, a, b)
    device_id, secret, token = register(a, app_id, b)
    private = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "k1.pem"
    pem.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    redis_cli(redis_server, "app", "key", "add", app_id, "--public-key", str(pem),
              "--key-id", "k1")  # fmt: skip
    signed = jwt.encode({"iss": app_id, "iat": int(time.time())}, private, "ES256",
                        headers={"kid": "k1"})  # fmt: skip
    wait_for(lambda: push(b, signed, token, {"alert": "k"}).status_code == 200, "B loads k1")

    # revoked through node A's admin API: node B refuses it
    r = httpx.delete(f"{base_url(a)}/v1/admin/apps/{app_id}/keys/k1", auth=ROOT)
    assert r.status_code in (200, 204), r.text
    revoked_at = time.monotonic()
    wait_for(lambda: push(b, signed, token, {"alert": "k"}).status_code == 403, "B refuses k1")
    print(f"key revocation reached node B after {time.monotonic() - revoked_at:.3f} s")
    assert push(b, signed, token, {"alert": "k"}).json()["reason"] == "InvalidProviderToken"
    still = push(b, key, token, {"alert": "api key still good"})
    assert still.status_code == 200
    # node A's admin lists the pushes node B accepted (records are in Redis)
    listed = httpx.get(
        f"{base_url(a)}/v1/admin/pushes", params={"device": device_id}, auth=ROOT
    ).json()["pushes"]
    assert still.json()["id"] in [p["id"] for p in listed]
    one = httpx.get(f"{base_url(a)}/v1/admin/pushes/{still.json()['id']}", auth=ROOT)
    assert one.status_code == 200 and one.json()["state"] == "queued"

    # the device unregisters its token on A: B answers 410 Unregistered
    r = httpx.delete(
        f"{base_url(a)}/v1/devices/{device_id}/tokens/{token}", auth=(device_id, secret)
    )
    assert r.status_code == 204, r.text
    deleted_at = time.monotonic()
    wait_for(lambda: push(b, key, token, {"alert": "t"}).status_code == 410, "B answers 410")
    print(f"token deletion reached node B after {time.monotonic() - deleted_at:.3f} s")


def test_kill9_of_the_accepting_nodes_loses_no_acknowledged_push(
    cluster_node: StartNode, redis_server: RedisServer, device_client: DeviceClient
) -> None:
    a, b, c = (cluster_node(*FAST_FAILOVER) for _ in range(3))
    app_id, key = make_app(redis_server, a, b, c)
    device_id, secret, token = register(a, app_id, b, c)
    device_client(a, device_id, secret).disconnect()  # its pushes are kept by A while it is away

    acked: list[str] = []
    cut = threading.Event()

    def push_until_cut(srv: ServerProcess) -> None:
        """Pushes to `srv` until it dies; only a 200 counts as acknowledged."""
        i = 0
        while not cut.is_set():
            try:
                r = push(srv, key, token, {"alert": f"{srv.http_port}-{i}"})
            except httpx.HTTPError:
                return
            if r.status_code != 200:
                return
            acked.append(r.headers["Pushwire-Id"])
            i += 1

    # A keeps the device's pushes in memory (journaled to Redis); B writes and forwards
    threads = [threading.Thread(target=push_until_cut, args=(srv,)) for srv in (a, b)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 20, "twenty acknowledged pushes")
    a.kill()  # SIGKILL, pushes in flight
    b.kill()
    cut.set()
    for t in threads:
        t.join(DEADLINE)
    assert acked

    client = device_client(c, device_id, secret)
    want = set(acked)
    seen: set[str] = set()

    def all_seen(msg: Any) -> bool:
        seen.add(decode(msg)["id"])
        return want <= seen

    client.get_until(all_seen, DEADLINE * 2)
    for push_id in acked[-3:]:
        wait_state(c, key, push_id, "delivered")


async def _ws_recv(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
        if frame["type"] == kind:
            return frame


def test_websocket_device_on_one_node_gets_and_acks_pushes_accepted_on_another(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    a, b = cluster_node(), cluster_node()
    app_id, key = make_app(redis_server, a, b)
    device_id, secret, token = register(a, app_id, b)
    stored = pushed(b, key, token, "stored")  # before the device ever connected
    basic = base64.b64encode(f"{device_id}:{secret}".encode()).decode()

    async def run() -> None:
        async with connect(
            f"ws://{a.host}:{a.http_port}/v1/ws",
            additional_headers={"Authorization": f"Basic {basic}"},
        ) as ws:
            sub = {
                "type": "subscribe",
                "sub": "push",
                "filter": f"devices/{device_id}/#",
                "ack": True,
                "consumer": "device",
            }
            await ws.send(json.dumps(sub))
            msg = await _ws_recv(ws, "message")
            assert json.loads(msg["payload"])["id"] == stored
            await ws.send(json.dumps({"type": "ack", "sub": "push", "id": msg["id"]}))
            await asyncio.to_thread(wait_state, b, key, stored, "delivered")
            live = await asyncio.to_thread(pushed, b, key, token, "live")
            msg = await _ws_recv(ws, "message")
            assert json.loads(msg["payload"])["id"] == live
            await ws.send(json.dumps({"type": "ack", "sub": "push", "id": msg["id"]}))
            record = await asyncio.to_thread(wait_state, b, key, live, "delivered")
            assert record["connection"] == f"ws {device_id}"

    asyncio.run(run())


def test_a_push_is_refused_with_503_while_redis_is_down_never_acknowledged(
    cluster_node: StartNode, redis_server: RedisServer, device_client: DeviceClient
) -> None:
    a, b = cluster_node(), cluster_node()
    app_id, key = make_app(redis_server, a, b)
    device_id, secret, token = register(a, app_id, b)
    device_client(a, device_id, secret).disconnect()  # A holds its pushes
    redis_server.stop()
    for srv in (a, b):  # the device's home, and another node
        r = push(srv, key, token, {"alert": "lost?"})
        assert r.status_code == 503, r.text
        assert r.json()["reason"] == "ServiceUnavailable"
        assert r.headers["Retry-After"] == "1"
    redis_server.start()
    # back: accepted and delivered, and nothing refused meanwhile shows up
    later = pushed_when_up(b, key, token)
    client = device_client(a, device_id, secret)
    assert [decode(m)["id"] for m in client.get_until(lambda m: True, DEADLINE)] == [later]


def pushed_when_up(srv: ServerProcess, key: str, token: str) -> str:
    got: list[str] = []

    def accepted() -> bool:
        r = push(srv, key, token, {"alert": "after"})
        if r.status_code == 200:
            got.append(r.headers["Pushwire-Id"])
        return bool(got)

    wait_for(accepted, "a push accepted once Redis is back")
    return got[0]


def _client_on_worker(url: str, avoid: str | None) -> tuple[httpx.Client, str]:
    """A keep-alive HTTP client and the worker its connection landed on (the kernel picks
    per connection: try new connections until one is not on `avoid`)."""
    for _ in range(200):
        client = httpx.Client(base_url=url, timeout=20)
        node = str(client.get("/v1/health").json()["node_id"])
        if node != avoid:
            return client, node
        client.close()
    raise AssertionError("every connection landed on the same worker")


def test_workers_share_the_gateway(tmp_path: Path, redis_server: RedisServer) -> None:
    """`serve --workers 2` on Redis: a push posted to either worker reaches the device,
    whichever worker its connection landed on."""
    flags = ("--engine", "redis", "--redis-url", redis_server.url)
    made = redis_cli(redis_server, "app", "create", "demo", "--json")
    app_id, key = made["app_id"], made["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    opened: list[PahoClient] = []
    with running_supervisor(tmp_path / "data", 2, *flags) as sup:
        first, first_node = _client_on_worker(sup.http_url, None)
        second, _ = _client_on_worker(sup.http_url, first_node)
        try:
            r = first.post("/v1/devices")
            assert r.status_code == 201, r.text
            device_id, secret = r.json()["device_id"], r.json()["device_secret"]
            r = first.post(
                f"/v1/devices/{device_id}/tokens", json={"app": app_id}, auth=(device_id, secret)
            )
            assert r.status_code == 200, r.text
            token = r.json()["token"]
            wait_for(
                lambda: second.get(f"/v1/devices/{device_id}", auth=(device_id, secret)).json()
                .get("apps") == [app_id],
                "the other worker to load the device",
            )  # fmt: skip
            device = PahoClient(
                sup.host, sup.ports["mqtt_port"], device_id, clean_session=False,
                auth=(device_id, secret),
            )  # fmt: skip
            opened.append(device)
            device.connect()
            assert device.subscribe(f"devices/{device_id}/#", qos=1) == [1]
            sent = []
            for client in (first, second):
                r = client.post(f"/v1/push/{token}", json={"alert": "w"}, headers=auth)
                assert r.status_code == 200, r.text
                sent.append(r.json()["id"])
            got = [decode(m)["id"] for m in device.get_until(
                lambda m: decode(m)["id"] == sent[-1], DEADLINE)]  # fmt: skip
            assert got == sent

            def delivered(push_id: str) -> bool:
                state = second.get(f"/v1/push/{push_id}", headers=auth).json()["state"]
                return bool(state == "delivered")

            for push_id in sent:
                wait_for(functools.partial(delivered, push_id), f"push {push_id} delivered")
        finally:
            first.close()
            second.close()
            for c in opened:
                c.close()


def test_pushes_posted_one_after_another_to_two_nodes_arrive_in_that_order(
    cluster_node: StartNode, redis_server: RedisServer, device_client: DeviceClient
) -> None:
    """A provider that waits for each 200 before the next push sees them delivered in its
    order, though every other one is accepted by a node that is not the device's home."""
    a, b = cluster_node(), cluster_node()
    app_id, key = make_app(redis_server, a, b)
    device_id, secret, token = register(a, app_id, b)
    client = device_client(a, device_id, secret)
    sent = [pushed(srv, key, token, f"n{i}") for i in range(10) for srv in (b, a)]
    got = [
        decode(m)["id"] for m in client.get_until(lambda m: decode(m)["id"] == sent[-1], DEADLINE)
    ]
    assert got == sent
