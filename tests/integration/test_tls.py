"""TLS on every door: MQTT over TLS (paho), HTTPS (httpx), WSS (websockets) and client
certificates; plain TCP to the TLS port fails cleanly while the server carries on."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

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
        subprotocols=["mqtt"],
        ssl=ctx,  # type: ignore[list-item]
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
