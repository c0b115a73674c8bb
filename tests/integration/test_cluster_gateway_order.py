"""Push order across nodes (engine=redis), with the race that broke it forced every time.

A provider posts push B to node b (not the device's home) and, after b's 200, push L to
node a (the home). Node a takes the pushes other nodes accepted by reading the device's
pending set in Redis before it sends (gateway/cluster.py `catch_up`); a flush started by
an earlier push's catch-up, whose read was taken before B existed, must not send L
ahead of B. The test holds that earlier read on a's store thread (after it read, before
it answers) until L has been admitted on a: on a loaded machine that is what a slow store
thread does (the CI failure of
test_cluster_gateway.py::test_pushes_posted_one_after_another_to_two_nodes_arrive_in_that_order).

Two pushwire nodes run in this process (helpers/inproc.py) on a private redis-server; the
provider and the device talk to them over HTTP and MQTT on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.clients import PahoClient
from helpers.inproc import InProcessServer
from helpers.redis import RedisServer
from pushwire.gateway.cluster import DeviceHomes
from pushwire.gateway.delivery import PushGateway

from .cluster_util import DEADLINE, wait_for
from .test_cluster_gateway import redis_cli

pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")


def http_base(node: InProcessServer) -> str:
    assert node.server is not None and node.server.http_address is not None
    host, port = node.server.http_address
    return f"http://{host}:{port}"


@pytest.fixture
def start_node(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    started: list[InProcessServer] = []

    def start(name: str) -> InProcessServer:
        node = InProcessServer(
            memory=False,
            engine="redis",
            redis_url=redis_server.url,
            data_dir=tmp_path / name,
            node_id=f"node-{name}",
        )
        started.append(node.start())
        return node

    yield start
    for node in reversed(started):
        node.stop()


def push(node: InProcessServer, key: str, token: str, collapse_id: str | None = None) -> str:
    """Post a push (its id made by the node: an id given in `Pushwire-Id` would be looked
    up in Redis first, on the store thread this test holds); its id, after the 200."""
    r = httpx.post(
        f"{http_base(node)}/v1/push/{token}",
        content=b'{"alert": "hello"}',
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            **({"Pushwire-Collapse-Id": collapse_id} if collapse_id is not None else {}),
        },
        timeout=DEADLINE,
    )
    assert r.status_code == 200, r.text
    return str(r.headers["Pushwire-Id"])


def app_and_device(redis: RedisServer, *nodes: InProcessServer) -> tuple[str, str, str, str]:
    """(api key, device id, device secret, token), once every node knows them."""
    app = redis_cli(redis, "app", "create", "demo", "--json")
    key, app_id = app["api_key"], app["app_id"]
    first = http_base(nodes[0])
    r = httpx.post(f"{first}/v1/devices")
    assert r.status_code == 201, r.text
    device = (r.json()["device_id"], r.json()["device_secret"])
    r = httpx.post(f"{first}/v1/devices/{device[0]}/tokens", json={"app": app_id}, auth=device)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    for node in nodes:

        def known(node: InProcessServer = node) -> bool:
            got = httpx.get(f"{http_base(node)}/v1/devices/{device[0]}", auth=device)
            unknown_push = httpx.get(
                f"{http_base(node)}/v1/push/{uuid.uuid4()}",
                headers={"Authorization": f"Bearer {key}"},
            )
            return (
                got.status_code == 200
                and got.json()["apps"] == [app_id]
                and unknown_push.status_code == 404  # the key is known, the push is not
            )

        wait_for(known, f"{node} to load the app and the device")
    return key, device[0], device[1], token


@dataclasses.dataclass
class Homed:
    """Two nodes; a device homed on `a`, its MQTT session there subscribed to its pushes,
    and the pipe proven open (`first`, posted to `b`, reached the device)."""

    a: InProcessServer
    b: InProcessServer
    key: str
    token: str
    client: PahoClient
    delivery: PushGateway
    homes: DeviceHomes
    first: str


@pytest.fixture
def homed(
    start_node: Callable[[str], InProcessServer], redis_server: RedisServer
) -> Iterator[Homed]:
    a, b = start_node("a"), start_node("b")
    key, device_id, secret, token = app_and_device(redis_server, a, b)
    client = PahoClient(
        a.host, a.mqtt_port, device_id, clean_session=False, auth=(device_id, secret)
    )
    client.connect()
    try:
        assert client.subscribe(f"devices/{device_id}/#", qos=1) == [1]
        assert a.server is not None
        delivery = a.server.gateway.delivery
        assert delivery.homes is not None
        wait_for(lambda: a.call(lambda: delivery.here(device_id)), "node a to be the home")
        # the pipe is open: a push through b reaches the device on a
        first = push(b, key, token)
        assert json.loads(client.get(DEADLINE).payload)["id"] == first
        yield Homed(a, b, key, token, client, delivery, delivery.homes, first)
    finally:
        client.close()


class HeldRead:
    """Holds node a's next read of a device's pending set on a's store thread, after the
    read and before its answer, until `release`: the catch-up that asked keeps the stale
    answer while later requests go on being served by the event loop."""

    def __init__(self, node: InProcessServer) -> None:
        assert node.server is not None
        link = node.server.gateway.delivery.homes
        assert link is not None
        self.link = link.link
        self.read = self.link.pending_ids
        self.holding = threading.Event()
        self._release = threading.Event()
        self._armed = True
        self.link.pending_ids = self._held  # type: ignore[method-assign]

    def _held(self, device_id: str) -> list[str]:
        ids = self.read(device_id)
        if self._armed:
            self._armed = False
            self.holding.set()
            self._release.wait(DEADLINE)
        return ids

    def release(self) -> None:
        self._release.set()


def test_a_push_acknowledged_on_another_node_goes_before_one_posted_to_the_home_after_it(
    homed: Homed,
) -> None:
    a, b, key, token, client = homed.a, homed.b, homed.key, homed.token, homed.client
    delivery = homed.delivery
    first = homed.first

    held = HeldRead(a)
    x = push(a, key, token)  # its catch-up reads the pending set, and is held
    assert held.holding.wait(DEADLINE)
    pushed_b = push(b, key, token)  # acknowledged by b: in Redis before the next post
    known = {first, x}
    with ThreadPoolExecutor(1) as pool:
        # a admits it at once, and answers once its store thread is free again
        answered: Future[str] = pool.submit(push, a, key, token)

        def admitted() -> bool:
            return a.call(lambda: any(i not in known for i in delivery.pushes))

        wait_for(admitted, "node a to admit the push posted after b's")
        held.release()
        later = answered.result(DEADLINE)
    got = [
        json.loads(m.payload)["id"]
        for m in client.get_until(lambda m: json.loads(m.payload)["id"] == later, DEADLINE)
    ]
    assert got == [x, pushed_b, later]


class HeldInbox:
    """Holds node a's handling of `push` notices from its inbox until `release` (a loaded
    node reads its inbox late): a push another node accepted reaches a only through the
    catch-up of a push accepted on a."""

    def __init__(self, node: InProcessServer) -> None:
        assert node.server is not None
        homes = node.server.gateway.delivery.homes
        assert homes is not None
        self.handle = homes._handle
        self._release = asyncio.Event()
        homes._handle = self._held  # type: ignore[method-assign]

    async def _held(self, kind: str, device_id: str, arg: str) -> None:
        if kind == "push":
            await asyncio.wait_for(self._release.wait(), DEADLINE)
        await self.handle(kind, device_id, arg)

    def release(self) -> None:
        self._release.set()


def push_state(node: InProcessServer, key: str, push_id: str) -> dict[str, Any]:
    r = httpx.get(
        f"{http_base(node)}/v1/push/{push_id}", headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_an_older_push_taken_late_is_the_one_collapsed_and_the_newer_one_is_sent(
    homed: Homed,
) -> None:
    """B (collapse id "score") is acknowledged by b; then L (same collapse id) is posted to
    the home a, whose inbox is late. L's catch-up takes B: the newer L must stay and go
    out, B be the one collapsed. Before: B collapsed L, and B then waited unsent, since
    the catch-up sent only for L and B's own notice found B known already."""
    a, b, key, token, client = homed.a, homed.b, homed.key, homed.token, homed.client

    inbox = a.call(lambda: HeldInbox(a))
    older = push(b, key, token, collapse_id="score")
    newer = push(a, key, token, collapse_id="score")
    msg = json.loads(client.get(DEADLINE).payload)
    assert msg["id"] == newer
    state = push_state(a, key, older)
    assert state["state"] == "collapsed", state
    a.call(inbox.release)
    # a marker after the held notice is handled: nothing else came before it
    marker = push(b, key, token)
    assert json.loads(client.get(DEADLINE).payload)["id"] == marker


def test_an_older_push_that_comes_after_a_newer_one_went_out_is_collapsed_not_sent(
    homed: Homed,
) -> None:
    """As above, but L's catch-up read fails (Redis hiccup): L goes out at once, and B
    arrives later through the inbox. B must not follow L to the device (stale content
    over fresh): it is collapsed against L, which was sent."""
    a, b, key, token, client = homed.a, homed.b, homed.key, homed.token, homed.client
    homes = homed.homes

    inbox = a.call(lambda: HeldInbox(a))
    read = homes.link.pending_ids

    def failing_once(device: str) -> list[str]:
        homes.link.pending_ids = read  # type: ignore[method-assign]
        raise ConnectionError("a Redis hiccup")

    homes.link.pending_ids = failing_once  # type: ignore[method-assign,assignment]
    older = push(b, key, token, collapse_id="score")
    newer = push(a, key, token, collapse_id="score")
    assert json.loads(client.get(DEADLINE).payload)["id"] == newer
    a.call(inbox.release)
    wait_for(lambda: push_state(a, key, older)["state"] == "collapsed", "B collapsed")
    # a marker: nothing came between L and it
    marker = push(b, key, token)
    assert json.loads(client.get(DEADLINE).payload)["id"] == marker
