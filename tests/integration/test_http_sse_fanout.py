"""A fan-out to many SSE streams on the owned protocol (http/sse_reader.py
`SseLiveReader`): every stream after the first gets the event cached on the log entry in
one call straight to its transport, and that shortcut keeps each stream's own rules: its
ACL per message (an event cached for a stream allowed to read a topic never reaches one
that is not), backpressure (a stream whose client does not read holds its messages and
sends them, all and in order, once it drains), everything delivered, and every delivery
counted (http/delivery_tally.py counts a walk's in bulk) by the time the publish answers."""

from __future__ import annotations

import gc
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import connect, publish, until
from helpers.server import ServerProcess
from pushwire.http.delivery_tally import CLOCK_EVERY
from pushwire.http.sse_reader import SseLiveReader

from .test_http_auth import basic, start_with_fan_acl

pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")

STREAMS = 8  # per user: enough that allowed and denied readers interleave in a fan-out


@pytest.fixture
def inproc() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(sse_heartbeat=600, stream_buffer=10_000))


def fused_readers(srv: InProcessServer) -> list[SseLiveReader]:
    # `type(o) is`, not isinstance: gc.get_objects() may hold a weak proxy whose referent is
    # gone, and isinstance on it raises ReferenceError
    return srv.call(lambda: [o for o in gc.get_objects() if type(o) is SseLiveReader])


class Stream:
    """One SSE stream over a raw socket: its events, read as they come."""

    def __init__(self, sock: socket.socket, flt: str, headers: dict[str, str]) -> None:
        self.sock = sock
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"GET /v1/sse/{flt} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head_bytes, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head_bytes.startswith(b"HTTP/1.1 200"), head_bytes

    def _more(self) -> None:
        got = self.sock.recv(1 << 20)
        assert got, "the server closed the stream"
        self.buf += got

    def event(self) -> dict[str, str]:
        """The next event that is not a comment: its fields."""
        while True:
            while b"\n\n" not in self.buf:
                self._more()
            raw, _, self.buf = self.buf.partition(b"\n\n")
            fields = dict(
                line.decode().split(": ", 1) for line in raw.split(b"\n") if line[:1] != b":"
            )
            if fields:
                return fields

    def message(self) -> dict[str, object]:
        event = self.event()
        assert "event" not in event, event  # a message, not a gap or close event
        data = json.loads(event["data"])
        assert isinstance(data, dict)
        return data


def test_a_fanout_writes_the_same_event_to_every_stream(inproc: InProcessServer) -> None:
    socks = [connect(inproc) for _ in range(STREAMS)]
    try:
        streams = [Stream(s, "fan/%23", {}) for s in socks]
        # the owned protocol's streams are read by the fused reader
        until(lambda: len(fused_readers(inproc)) == STREAMS)
        for n in range(3):
            publish(inproc, f"fan/{n}", b"x%d" % n)
        for stream in streams:
            got = [stream.message() for _ in range(3)]
            assert [(m["topic"], m["id"], m["payload"]) for m in got] == [
                (f"fan/{n}", n + 1, f"x{n}") for n in range(3)
            ]
    finally:
        for s in socks:
            s.close()


def test_a_stream_that_does_not_read_gets_everything_in_order_once_it_drains(
    inproc: InProcessServer,
) -> None:
    """Its transport pauses (the kernel's buffers and the transport's are full): the
    fused reader leaves the message to the general path, which holds it; the drain sends
    what waited, while the other streams kept getting theirs at once."""
    slow_sock = socket.socket()
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert inproc.server is not None and inproc.server.http_address is not None
    slow_sock.settimeout(10)
    slow_sock.connect(inproc.server.http_address)
    fast_socks = [connect(inproc) for _ in range(3)]
    try:
        slow = Stream(slow_sock, "big/%23", {})
        fast = [Stream(s, "big/%23", {}) for s in fast_socks]
        until(lambda: len(fused_readers(inproc)) == 4)
        count, body = 0, b"p" * 65536
        readers = fused_readers(inproc)

        def holding() -> bool:
            return inproc.call(lambda: any(r.pending is not None for r in readers))

        while not holding():
            assert count < 400, "the slow stream's transport never paused"
            publish(inproc, f"big/{count}", body + b"%d" % count)
            count += 1
            for stream in fast:
                assert stream.message()["id"] == count
        publish(inproc, "big/marker", b"marker")  # published while the slow one holds
        for stream in fast:
            assert stream.message()["payload"] == "marker"
        ids = [slow.message()["id"] for _ in range(count + 1)]
        assert ids == list(range(1, count + 2))  # all, in order, nothing twice
    finally:
        slow_sock.close()
        for s in fast_socks:
            s.close()


def delivered(srv: InProcessServer, transport: str) -> tuple[float, float]:
    """/metrics: (messages handed to readers of `transport`, delivery latency observations)."""
    assert srv.server is not None and srv.server.http_address is not None
    host, port = srv.server.http_address
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
    out = latency = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("transport") != transport:
                continue
            if sample.name == "pushwire_messages_out_total":
                out = sample.value
            elif sample.name == "pushwire_delivery_latency_seconds_count":
                latency = sample.value
    assert out is not None and latency is not None, text
    return out, latency


def test_every_sse_delivery_is_counted_when_the_publish_answers(inproc: InProcessServer) -> None:
    n = CLOCK_EVERY + 6  # a walk longer than one clock read's chunk
    socks = [connect(inproc) for _ in range(n)]
    try:
        streams = [Stream(s, "count/%23", {}) for s in socks]
        until(lambda: len(fused_readers(inproc)) == n)
        assert delivered(inproc, "sse") == (0, 0)
        for k in range(1, 4):
            publish(inproc, "count/x", b"%d" % k)  # returns on the 201
            assert delivered(inproc, "sse") == (n * k, n * k)  # no wait: counted already
        for stream in streams:
            assert [stream.message()["payload"] for _ in range(3)] == ["1", "2", "3"]
    finally:
        for s in socks:
            s.close()


async def test_every_websocket_delivery_is_counted_when_the_publish_answers(
    inproc: InProcessServer,
) -> None:
    assert inproc.server is not None and inproc.server.http_address is not None
    host, port = inproc.server.http_address
    n = CLOCK_EVERY + 6
    clients = [await ws_connect(f"ws://{host}:{port}/v1/ws") for _ in range(n)]
    try:
        for ws in clients:
            await ws.send(json.dumps({"type": "subscribe", "sub": "c", "filter": "count/#"}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
        async with httpx.AsyncClient() as http:
            for k in range(1, 4):
                r = await http.post(f"http://{host}:{port}/v1/publish/count/x", content=b"%d" % k)
                assert r.status_code == 201
                assert delivered(inproc, "ws") == (n * k, n * k)
        for ws in clients:
            got = [json.loads(await ws.recv()) for _ in range(3)]
            assert [m["payload"] for m in got if m["type"] == "message"] == ["1", "2", "3"]
    finally:
        for ws in clients:
            await ws.close()


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_with_fan_acl(tmp_path_factory.mktemp("sse-fanout"))
    try:
        yield srv
    finally:
        srv.cleanup()


def test_an_event_cached_for_allowed_streams_never_reaches_a_denied_one(
    acl_server: ServerProcess,
) -> None:
    srv = acl_server
    http = f"http://{srv.host}:{srv.http_port}"
    socks: list[socket.socket] = []
    try:
        streams: list[tuple[str, Stream]] = []
        # interleaved: root's and alice's readers share the entry's cached event
        for _ in range(STREAMS):
            for user in ("root", "alice"):
                sock = socket.create_connection((srv.host, srv.http_port), timeout=10)
                socks.append(sock)
                streams.append((user, Stream(sock, "fan/%23", basic(user))))
        for topic in ("fan/secret/1", "fan/open/1", "fan/secret/2", "fan/open/2"):
            r = httpx.post(f"{http}/v1/publish/{topic}", content=topic, headers=basic("root"))
            assert r.status_code == 201
        for user, stream in streams:
            if user == "root":
                got = [stream.message()["topic"] for _ in range(4)]
                assert got == ["fan/secret/1", "fan/open/1", "fan/secret/2", "fan/open/2"]
            else:
                # the second open message is the marker: the secret ones were left out
                got = [stream.message()["topic"] for _ in range(2)]
                assert got == ["fan/open/1", "fan/open/2"]
    finally:
        for sock in socks:
            sock.close()
