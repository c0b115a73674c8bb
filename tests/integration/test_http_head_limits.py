"""The HTTP listener's request-head guard against hostile bytes, over raw sockets: request
lines and heads over their limits get 414/431 with the JSON error model and the connection
is closed (plain HTTP, WebSocket upgrades, HTTPS); malformed requests get 400 with the JSON
error model; connections streaming an endless head do not stall the event loop that HTTP
and MQTT share."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from helpers.certs import make_certs
from helpers.clients import PahoClient
from helpers.server import ServerProcess

from .http_util import StartServer, base, http_server, ws_url

__all__ = ["http_server"]
pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")

HEAD = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def read_reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (the socket timeout bounds a hang)."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One response (head and content-length body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def exchange(address: tuple[str, int], request: bytes) -> bytes:
    """Send `request` (as far as the server reads it) and return the whole reply."""
    with socket.create_connection(address, timeout=10) as sock:
        # refused mid-request: the answer is already on its way
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_reply(sock)


def json_error(reply: bytes, status: int, code: str) -> dict[str, str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), reply[:300]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)  # nothing after it: then closed
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"], error
    return headers


def address(srv: ServerProcess) -> tuple[str, int]:
    assert srv.http_port is not None
    return (srv.host, srv.http_port)


def test_request_line_and_head_over_their_limits(http_server: StartServer) -> None:
    srv = http_server()
    addr = address(srv)
    big = HEAD + b"X-Big: " + b"a" * 300_000 + b"\r\n\r\n"
    json_error(exchange(addr, big), 431, "header_fields_too_large")
    many = HEAD + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 90) for i in range(200)) + b"\r\n"
    json_error(exchange(addr, many), 431, "header_fields_too_large")
    long_url = b"GET /v1/health?x=" + b"u" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    json_error(exchange(addr, long_url), 414, "uri_too_long")
    # an endless request line, never ended, is cut at the limit too
    json_error(exchange(addr, b"GET /" + b"v" * 100_000), 414, "uri_too_long")
    # under the limits: served, also when the body arrives with the head in one write
    ok = exchange(addr, HEAD + b"X-Big: " + b"a" * 15_000 + b"\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 "), ok[:200]
    body = b"p" * 200_000
    publish = (
        b"POST /v1/publish/t HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
        + b"a" * 15_000
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )
    assert exchange(addr, publish).startswith(b"HTTP/1.1 201 ")
    # each request on a kept-alive connection has a budget of its own; bodies do not count
    with socket.create_connection(addr, timeout=10) as sock:
        for _ in range(3):
            sock.sendall(publish.replace(b"Connection: close", b"Connection: keep-alive"))
            assert read_response(sock).startswith(b"HTTP/1.1 201 ")
    metrics = httpx.get(base(srv) + "/metrics").text
    assert 'pushwire_http_heads_refused_total{reason="too_long"} 4.0' in metrics


def test_head_limits_are_settings(http_server: StartServer) -> None:
    srv = http_server(http_max_request_line=100, http_max_head=1000)
    addr = address(srv)
    json_error(
        exchange(addr, b"GET /v1/health?" + b"u" * 100 + b" HTTP/1.1\r\n\r\n"), 414, "uri_too_long"
    )
    json_error(
        exchange(addr, HEAD + b"X: " + b"a" * 1000 + b"\r\n\r\n"), 431, "header_fields_too_large"
    )
    ok = exchange(addr, HEAD + b"X: " + b"a" * 800 + b"\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")


def test_endless_heads_do_not_stall_health_or_mqtt(
    http_server: StartServer, paho_client: Callable[..., PahoClient]
) -> None:
    srv = http_server()
    addr = address(srv)
    floods = [socket.create_connection(addr, timeout=10) for _ in range(4)]
    try:
        for sock in floods:  # each is mid-head: a header value that has not ended
            sock.sendall(HEAD + b"X-Endless: " + b"a" * 8000)
        # while they are open, HTTP and MQTT on the same event loop still answer
        assert httpx.get(base(srv) + "/v1/health", timeout=10).status_code == 200
        sub = paho_client(srv, "head-limit-sub")
        sub.subscribe("hl/t", qos=1)
        pub = paho_client(srv, "head-limit-pub")
        pub.publish("hl/t", b"through", qos=1)
        assert sub.get().payload == b"through"
        # ... and every endless head is refused once over the limit (given 4 MiB to show it)
        chunk = b"a" * 65536
        for sock in floods:
            for _ in range(64):
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
            json_error(read_reply(sock), 431, "header_fields_too_large")
        assert httpx.get(base(srv) + "/v1/health", timeout=10).status_code == 200
    finally:
        for sock in floods:
            sock.close()


@pytest.mark.parametrize("path", ["/v1/ws", "/mqtt"])
async def test_websocket_upgrade_heads_are_limited(http_server: StartServer, path: str) -> None:
    srv = http_server()
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(srv, path), additional_headers={"X-Big": "a" * 20_000}):
            pass
    response = info.value.response
    assert response.status_code == 431
    assert json.loads(response.body or b"")["error"]["code"] == "header_fields_too_large"
    # a normal upgrade still works
    subprotocols = ["mqtt"] if path == "/mqtt" else None
    async with connect(ws_url(srv, path), subprotocols=subprotocols):  # type: ignore[arg-type]
        pass


def test_https_heads_are_limited(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    certs = make_certs(tmp_path / "certs")
    srv = server_factory(
        memory=True,
        sys_interval=0,
        extra_args=[
            *("--tls-cert", certs.server_cert, "--tls-key", certs.server_key),
            *("--mqtt-tls-port", "0", "--http-tls"),
        ],
    )
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    for request, status, code in (
        (HEAD + b"X-Big: " + b"a" * 300_000 + b"\r\n\r\n", 431, "header_fields_too_large"),
        (b"GET /v1/health?" + b"u" * 20_000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
    ):
        with (
            socket.create_connection(address(srv), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
                sock.sendall(request)
            reply = b""
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    reply += data
                    if b"\r\n\r\n" in reply and reply.endswith(b"}}"):
                        break  # the whole JSON answer
            except (ConnectionResetError, ssl.SSLError):
                pass
            json_error(reply, status, code)
    r = httpx.get(f"https://127.0.0.1:{srv.http_port}/v1/health", verify=ctx)
    assert r.status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="garbage-request-line"),
        pytest.param(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", id="http-9.9"),
        pytest.param(b"GET /v1/health HTTP/1.1\r\nBad Header\r\n\r\n", id="header-no-colon"),
        pytest.param(
            b"POST /v1/publish/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nabc\r\n0\r\n\r\n",
            id="bad-chunk-size",
        ),
    ],
)
def test_malformed_requests_get_400_json(http_server: StartServer, request_bytes: bytes) -> None:
    srv = http_server()
    json_error(exchange(address(srv), request_bytes), 400, "bad_request")
    metrics = httpx.get(base(srv) + "/metrics").text
    assert 'pushwire_http_heads_refused_total{reason="malformed"} 1.0' in metrics


def test_refusals_touch_only_their_own_connection(http_server: StartServer) -> None:
    """A keep-alive client next to a refused one keeps its connection."""
    srv = http_server()
    with httpx.Client(base_url=base(srv)) as client:
        assert client.get("/v1/health").status_code == 200
        json_error(exchange(address(srv), b"GARBAGE\r\n\r\n"), 400, "bad_request")
        assert client.get("/v1/health").status_code == 200
