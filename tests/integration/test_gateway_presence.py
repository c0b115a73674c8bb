"""Push gateway: presence. A device is online while its connection is up; a missed MQTT
keepalive marks it offline (the broker closes after 1.5 keepalives); removing a device
ends its connection and its tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from helpers.clients import PahoClient
from helpers.gateway import (
    base_url,
    cli,
    create_app,
    device_token,
    push,
    register_device,
    wait_for,
)
from helpers.raw import RawClient, connected_client
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("push gateway")


def _status(srv: ServerProcess, device: tuple[str, str]) -> dict[str, object]:
    r = httpx.get(f"{base_url(srv)}/v1/devices/{device[0]}", auth=device)
    assert r.status_code == 200, r.text
    data: dict[str, object] = r.json()
    return data


def test_missed_keepalive_marks_the_device_offline_with_last_seen(
    server: ServerProcess,
) -> None:
    device = register_device(server)
    assert _status(server, device)["online"] is False
    assert _status(server, device)["last_seen"] is None
    client: RawClient = connected_client(
        server.host,
        server.mqtt_port,
        device[0],
        clean_session=False,
        keepalive=1,
        username=device[0],
        password=device[1].encode(),
    )
    try:
        assert _status(server, device)["online"] is True
        # silent from now on: no PINGREQ; the broker gives up after 1.5 s
        silent_since = time.time()
        client.read_until_closed(timeout=10)
        wait_for(lambda: _status(server, device)["online"] is False, what="offline")
        seen = _status(server, device)["last_seen"]
        assert isinstance(seen, float) and seen >= silent_since
    finally:
        client.close()


def test_other_devices_and_anonymous_callers_cannot_see_a_device(
    server: ServerProcess,
) -> None:
    device, other = register_device(server), register_device(server)
    url = f"{base_url(server)}/v1/devices/{device[0]}"
    assert httpx.get(url, auth=other).status_code == 403
    assert httpx.get(url).status_code == 403
    assert httpx.get(url, auth=(device[0], "pwd_" + "0" * 32)).status_code == 401


def test_removing_a_device_closes_its_connection_and_ends_its_tokens(
    server: ServerProcess, paho_client: Callable[..., PahoClient]
) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    client = paho_client(server, device[0], clean_session=False, auth=device)
    shown = json.loads(cli(server, "device", "show", device[0], "--json").stdout)
    assert shown["device_id"] == device[0]
    assert [t["app"] for t in shown["tokens"]] == [app_id]
    assert "secret" not in json.dumps(shown)
    done = cli(server, "device", "remove", device[0])
    assert done.returncode == 0, done.stderr
    # the server sees the removal on its 1 s store poll, seconds late on a loaded machine
    # (was 5 s; the test does not measure the delay)
    assert client.disconnected.wait(30)
    wait_for(lambda: push(server, key, token, {"alert": "x"}).status_code == 410, what="410")
    listed = cli(server, "device", "list", "--json")
    assert device[0] not in listed.stdout


def test_a_silent_websocket_device_goes_offline(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(extra_args=["--ws-heartbeat", "0.5"])
    device = register_device(srv)
    basic = base64.b64encode(":".join(device).encode()).decode()

    async def run() -> int | None:
        async with connect(
            f"ws://{srv.host}:{srv.http_port}/v1/ws",
            additional_headers={"Authorization": f"Basic {basic}"},
        ) as ws:
            flt = f"devices/{device[0]}/#"
            await ws.send(json.dumps({"type": "subscribe", "sub": "p", "filter": flt}))
            await asyncio.to_thread(
                wait_for, lambda: _status(srv, device)["online"] is True, 5, "online"
            )
            try:  # read, never answer a ping: the server gives up after 1.5 heartbeats
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd is not None else None

    assert asyncio.run(run()) == 4000
    wait_for(lambda: _status(srv, device)["online"] is False, what="offline")
    assert isinstance(_status(srv, device)["last_seen"], float)


def test_guessing_a_device_secret_is_rate_limited(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(extra_args=["--login-failures-burst", "3"])
    device = register_device(srv)
    url = f"{base_url(srv)}/v1/content/pwc_{'a' * 22}"
    wrong = (device[0], "pwd_" + "x" * 32)
    assert [httpx.get(url, auth=wrong).status_code for _ in range(3)] == [401, 401, 401]
    r = httpx.get(url, auth=wrong)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    text = httpx.get(f"{base_url(srv)}/metrics").text
    assert 'pushwire_devices{state="registered"} 1.0' in text
    assert 'pushwire_devices{state="online"} 0.0' in text


def test_last_seen_is_stored_and_survives_a_restart(server: ServerProcess) -> None:
    """last_seen is written to the store in batches (not one commit per connect); a
    graceful stop saves what is pending, so the value outlives the process."""
    device = register_device(server)
    login = {"username": device[0], "password": device[1].encode()}
    client = connected_client(server.host, server.mqtt_port, device[0], **login)
    wait_for(lambda: _status(server, device)["online"] is True, what="online")
    client.close()
    wait_for(lambda: _status(server, device)["online"] is False, what="offline")
    seen = _status(server, device)["last_seen"]
    assert isinstance(seen, float)
    server.restart()
    assert _status(server, device)["last_seen"] == seen
