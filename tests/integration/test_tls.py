"""TLS on every door: MQTT over TLS (paho), HTTPS (httpx), WSS (websockets) and client
certificates; plain TCP to the TLS port fails cleanly while the server carries on."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.typing import Subprotocol

from helpers.admin import cli
from helpers.certs import CertFiles, make_certs
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("pushwire's TLS flags")


@pytest.fixture
def certs(tmp_path: Path) -> CertFiles:
    return make_certs(tmp_path / "certs")


def tls_server(
    server_factory: Callable[..., ServerProcess], certs: CertFiles, *extra: str
) -> ServerProcess:
    return server_factory(
        memory=True,
        extra_args=[
            "--tls-cert",
            certs.server_cert,
            "--tls-key",
            certs.server_key,
            "--mqtt-tls-port",
            "0",
            "--http-tls",
            *extra,
        ],
    )


def tls_paho(
    port: int, certs: CertFiles, client_cert: tuple[Path, Path] | None = None, cid: str = ""
) -> tuple[mqtt.Client, list[mqtt.MQTTMessage], threading.Event]:
    got: list[mqtt.MQTTMessage] = []
    event = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid)
    certfile, keyfile = client_cert if client_cert else (None, None)
    client.tls_set(
        ca_certs=str(certs.ca),
        certfile=str(certfile) if certfile else None,
        keyfile=str(keyfile) if keyfile else None,
    )

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg)
        event.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, got, event


def test_mqtt_over_tls_roundtrip(
    server_factory: Callable[..., ServerProcess], certs: CertFiles
) -> None:
    srv = tls_server(server_factory, certs)
    assert srv.mqtts_port
    sub, got, event = tls_paho(srv.mqtts_port, certs)
    try:
        subscribed = threading.Event()
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.subscribe("secure/#", qos=1)
        assert subscribed.wait(5)
        pub, _, _ = tls_paho(srv.mqtts_port, certs)
        pub.publish("secure/a", b"over tls", qos=1).wait_for_publish(5)
        assert event.wait(5)
        assert got[0].topic == "secure/a" and got[0].payload == b"over tls"
        pub.loop_stop()
        pub.disconnect()
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_https_health_and_plain_tcp_to_tls_port(
    server_factory: Callable[..., ServerProcess], certs: CertFiles
) -> None:
    srv = tls_server(server_factory, certs)
    assert srv.mqtts_port and srv.http_port
    ca = ssl.create_default_context(cafile=str(certs.ca))
    r = httpx.get(f"https://127.0.0.1:{srv.http_port}/v1/health", verify=ca)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    # a plain MQTT CONNECT to the TLS port is not a TLS handshake: the server drops it
    with socket.create_connection(("127.0.0.1", srv.mqtts_port), timeout=5) as plain:
        plain.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        assert plain.recv(100) == b""  # closed, no CONNACK
    # an unverifiable server certificate is refused by the client
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{srv.http_port}/v1/health")
    # and the server still serves TLS clients
    sub, _, _ = tls_paho(srv.mqtts_port, certs)
    sub.loop_stop()
    sub.disconnect()
    assert srv.alive()


async def test_mqtt_over_wss(
    server_factory: Callable[..., ServerProcess], certs: CertFiles
) -> None:
    import websockets

    srv = tls_server(server_factory, certs)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    async with websockets.connect(
        f"wss://127.0.0.1:{srv.http_port}/mqtt",
        subprotocols=[Subprotocol("mqtt")],
        ssl=ctx,
    ) as ws:
        assert ws.subprotocol == "mqtt"
        await ws.send(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        connack = await ws.recv()
        assert connack == b"\x20\x02\x00\x00"


def test_client_certificate_required(
    server_factory: Callable[..., ServerProcess], certs: CertFiles
) -> None:
    srv = tls_server(
        server_factory, certs, "--tls-ca", str(certs.ca), "--tls-client-auth", "required"
    )
    assert srv.mqtts_port
    # without a client certificate the handshake fails
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    with (
        socket.create_connection(("127.0.0.1", srv.mqtts_port), timeout=5) as raw,
        pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        if tls.recv(4) == b"":
            raise ConnectionResetError("closed")
    # with one it connects
    client, _, _ = tls_paho(srv.mqtts_port, certs, certs.client("alice"))
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.reconnect()
    assert connected.wait(5)
    client.loop_stop()
    client.disconnect()


def cert_identity_server(
    server_factory: Callable[..., ServerProcess], certs: CertFiles
) -> ServerProcess:
    """TLS everywhere, client certificates optional, one user (so anonymous is off) and a
    rule giving every user its own `users/%u/#` tree, set through the CLI."""
    srv = server_factory(
        extra_args=[
            "--tls-cert",
            certs.server_cert,
            "--tls-key",
            certs.server_key,
            "--mqtt-tls-port",
            "0",
            "--http-tls",
            "--tls-ca",
            str(certs.ca),
            "--tls-client-auth",
            "optional",
        ],
    )
    for args in (
        ["user", "add", "someone-else", "--password-stdin"],
        ["acl", "add", "--all", "--allow", "readwrite", "users/%u/#"],
    ):
        cli(srv.data_dir, *args, stdin="pw\n")
    # the running server picks up the CLI's changes on its next reload. Wait until the user
    # is refused outside its own tree: 401 while the user is unknown, and with no rule yet
    # every user may read everything, so a 403 needs both the user and the rule
    deadline = time.monotonic() + 30
    while True:
        r = httpx.get(
            f"https://127.0.0.1:{srv.http_port}/v1/poll/users/nobody/x",
            auth=("someone-else", "pw"),
            verify=ssl.create_default_context(cafile=str(certs.ca)),
        )
        if r.status_code == 403:
            break
        assert time.monotonic() < deadline, f"CLI changes not picked up: {r.status_code} {r.text}"
        time.sleep(0.05)
    return srv


def test_client_certificate_name_is_the_identity_on_tls_and_wss(
    server_factory: Callable[..., ServerProcess], certs: CertFiles
) -> None:
    srv = cert_identity_server(server_factory, certs)
    assert srv.mqtts_port
    # no certificate, no credentials: a user exists, so anonymous is refused
    anon, _, _ = tls_paho(srv.mqtts_port, certs)
    refused = threading.Event()
    anon.on_connect = lambda _c, _u, _f, rc, _p: refused.set() if rc != 0 else None
    anon.reconnect()
    assert refused.wait(5)
    anon.loop_stop()
    # the certificate's CN is the user: alice may use users/alice/# and nothing else
    alice, got, event = tls_paho(srv.mqtts_port, certs, certs.client("alice"), cid="alice-tls")
    granted: list[list[int]] = []
    subacked = threading.Event()

    def on_subscribe(_c: object, _u: object, _m: int, codes: Sequence[object], _p: object) -> None:
        granted.append([int(getattr(c, "value", c)) for c in codes])  # type: ignore[call-overload]
        subacked.set()

    alice.on_subscribe = on_subscribe
    alice.subscribe("users/alice/#", qos=1)
    assert subacked.wait(5)
    subacked.clear()
    alice.subscribe("users/bob/#", qos=1)
    assert subacked.wait(5)
    assert granted == [[1], [0x80]]
    alice.publish("users/alice/x", b"mine", qos=1).wait_for_publish(5)
    assert event.wait(5) and got[0].payload == b"mine"
    alice.loop_stop()
    alice.disconnect()
    # MQTT over WSS: the same certificate identity
    ws = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alice-wss", transport="websockets")
    ws.ws_set_options(path="/mqtt")
    cert, key = certs.client("alice")
    ws.tls_set(ca_certs=str(certs.ca), certfile=str(cert), keyfile=str(key))
    ok = threading.Event()
    ws.on_connect = lambda _c, _u, _f, rc, _p: ok.set() if rc == 0 else None
    ws.connect("127.0.0.1", srv.http_port or 0)
    ws.loop_start()
    assert ok.wait(5)
    ws.loop_stop()
    ws.disconnect()


def test_client_certificate_name_is_the_identity_on_https(
    server_factory: Callable[..., ServerProcess], certs: CertFiles
) -> None:
    srv = cert_identity_server(server_factory, certs)
    base = f"https://127.0.0.1:{srv.http_port}"
    plain = ssl.create_default_context(cafile=str(certs.ca))
    anon = httpx.post(f"{base}/v1/publish/users/alice/x", content=b"x", verify=plain)
    assert anon.status_code == 401  # a user exists: anonymous is off
    with_cert = ssl.create_default_context(cafile=str(certs.ca))
    cert, key = certs.client("alice")
    with_cert.load_cert_chain(str(cert), str(key))
    with httpx.Client(verify=with_cert) as alice:
        assert alice.post(f"{base}/v1/publish/users/alice/x", content=b"x").status_code == 201
        assert alice.post(f"{base}/v1/publish/users/bob/x", content=b"x").status_code == 403


async def test_client_certificate_name_is_the_identity_on_the_json_websocket(
    server_factory: Callable[..., ServerProcess], certs: CertFiles
) -> None:
    """WSS /v1/ws without other credentials: the verified certificate's CN is the user (as
    on HTTPS); without a certificate the connection must log in with its first frame.
    (A stream is tracked for revocation under its user, so alice is a stored user.)"""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    srv = cert_identity_server(server_factory, certs)
    cli(srv.data_dir, "user", "add", "alice", "--password-stdin", stdin="pw\n")
    url = f"wss://127.0.0.1:{srv.http_port}/v1/ws"
    with_cert = ssl.create_default_context(cafile=str(certs.ca))
    cert, key = certs.client("alice")
    with_cert.load_cert_chain(str(cert), str(key))
    deadline = time.monotonic() + 10
    while True:  # until the running server has picked up the CLI's new user
        try:
            ws = await connect(url, ssl=with_cert)
            break
        except InvalidStatus:
            assert time.monotonic() < deadline, "alice was never accepted"
            await asyncio.sleep(0.1)
    async with ws:
        await ws.send(json.dumps({"type": "subscribe", "sub": "a", "filter": "users/alice/#"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
        await ws.send(json.dumps({"type": "subscribe", "sub": "b", "filter": "users/bob/#"}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["type"] == "error" and error["code"] == "forbidden"
    plain = ssl.create_default_context(cafile=str(certs.ca))
    async with connect(url, ssl=plain) as ws:
        await ws.send(json.dumps({"type": "subscribe", "sub": "a", "filter": "users/alice/#"}))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4401
