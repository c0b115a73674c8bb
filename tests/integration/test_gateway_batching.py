"""Push gateway: priority 5 pushes to an online device are held and batched; priority 10
goes at once and takes the held ones with it; wake-ups are counted in /metrics."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from helpers.clients import PahoClient
from helpers.gateway import (
    base_url,
    bearer,
    create_app,
    decode,
    device_token,
    push,
    register_device,
    wait_state,
)
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("push gateway")

Paho = Callable[..., PahoClient]


def _wakeups(srv: ServerProcess) -> int:
    text = httpx.get(f"{base_url(srv)}/metrics").text
    m = re.search(r"^pushwire_device_wakeups_total (\d+)\.0$", text, re.M)
    assert m is not None, text
    return int(m.group(1))


def _online_device(srv: ServerProcess, paho_client: Paho) -> tuple[str, str, PahoClient]:
    app_id, key = create_app(srv)
    device = register_device(srv)
    token = device_token(srv, device, app_id)
    client = paho_client(srv, device[0], clean_session=False, auth=device)
    assert client.subscribe(f"devices/{device[0]}/#", qos=1) == [1]
    return key, token, client


def test_priority_5_waits_for_priority_10_and_saves_wakeups(
    server_factory: Callable[..., ServerProcess], paho_client: Paho
) -> None:
    # a window far longer than the test: only a priority 10 push can release the batch
    srv = server_factory(extra_args=["--push-batch-window", "600"])
    key, token, client = _online_device(srv, paho_client)
    start = _wakeups(srv)

    # without batching every push is a write to the device
    urgent = [push(srv, key, token, {"alert": f"u{i}"}).headers["Pushwire-Id"] for i in range(3)]
    got = [decode(m)["id"] for m in client.get_until(lambda m: decode(m)["id"] == urgent[-1])]
    assert got == urgent
    assert _wakeups(srv) == start + 3

    held = [
        push(srv, key, token, {"data": {"n": i}}, priority="5").headers["Pushwire-Id"]
        for i in range(5)
    ]
    for push_id in held:
        assert wait_state(srv, key, push_id, "queued")
    assert _wakeups(srv) == start + 3  # held: no write to the device yet
    now = push(srv, key, token, {"alert": "now"}).headers["Pushwire-Id"]
    got = [decode(m)["id"] for m in client.get_until(lambda m: decode(m)["id"] == now)]
    assert got == [*held, now]
    for push_id in [*held, now]:
        wait_state(srv, key, push_id, "delivered")
    # six pushes, one wake-up
    assert _wakeups(srv) == start + 4


def test_held_pushes_go_at_the_end_of_the_window(
    server_factory: Callable[..., ServerProcess], paho_client: Paho
) -> None:
    srv = server_factory(extra_args=["--push-batch-window", "0.3"])
    key, token, client = _online_device(srv, paho_client)
    start = _wakeups(srv)
    # one batch request: the three are held together whatever the machine's speed
    items = [{"token": token, "payload": {"data": {"n": i}}, "priority": 5} for i in range(3)]
    r = httpx.post(f"{base_url(srv)}/v1/push", json={"pushes": items}, headers=bearer(key))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 200, 200]
    held = [x["id"] for x in results]
    got = [decode(m)["id"] for m in client.get_until(lambda m: decode(m)["id"] == held[-1])]
    assert got == held
    assert _wakeups(srv) == start + 1
