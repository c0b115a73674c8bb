"""Server-Sent Events: MQTT -> SSE, resume with Last-Event-ID, gaps, heartbeats, overflow."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Callable

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from helpers.clients import PahoClient

from .http_util import StartServer, base, http_server

__all__ = ["http_server"]
pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")
PahoFactory = Callable[..., PahoClient]


async def _events(
    client: httpx.AsyncClient, url: str, n: int, headers: dict[str, str] | None = None
) -> list[ServerSentEvent]:
    got: list[ServerSentEvent] = []
    async with aconnect_sse(client, "GET", url, headers=dict(headers or {})) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for event in source.aiter_sse():
            got.append(event)
            if len(got) >= n:
                break
    return got


async def _wait_streams(client: httpx.AsyncClient, url: str, n: int) -> None:
    for _ in range(500):
        if (
            f'pushwire_open_connections{{transport="sse"}} {n}.0'
            in (await client.get(url + "/metrics")).text
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {n} SSE streams")


async def test_mqtt_publish_reaches_sse_and_resume_gets_exactly_the_missed(
    http_server: StartServer, paho_client: PahoFactory
) -> None:
    srv = http_server()
    url = base(srv)
    pub = paho_client(srv, "pub")
    async with httpx.AsyncClient(timeout=10) as client:
        task = asyncio.create_task(_events(client, f"{url}/v1/sse/s/%23", 2))
        await _wait_streams(client, url, 1)
        pub.publish("s/a", b"one", qos=1)
        pub.publish("s/b", b"two", qos=0)
        first = await asyncio.wait_for(task, 10)
        assert [json.loads(e.data)["payload"] for e in first] == ["one", "two"]
        assert all(e.event == "message" for e in first)
        last_id = first[-1].id
        epoch = json.loads(first[-1].data)["epoch"]
        assert last_id == f"{epoch}:2"
        # away: three more are published, one elsewhere
        await _wait_streams(client, url, 0)
        for p in [b"three", b"four"]:
            pub.publish("s/c", p, qos=1)
        pub.publish("elsewhere", b"no", qos=1)
        resumed = await asyncio.wait_for(
            _events(client, f"{url}/v1/sse/s/%23", 2, {"Last-Event-ID": last_id}), 10
        )
        assert [json.loads(e.data)["payload"] for e in resumed] == ["three", "four"]
        assert [e.id for e in resumed] == [f"{epoch}:3", f"{epoch}:4"]


async def test_last_event_id_wins_over_since(http_server: StartServer) -> None:
    srv = http_server()
    url = base(srv)
    for i in range(3):
        httpx.post(f"{url}/v1/publish/w", content=b"%d" % i)
    async with httpx.AsyncClient(timeout=10) as client:
        got = await asyncio.wait_for(
            _events(client, f"{url}/v1/sse/w?since=all", 1, {"Last-Event-ID": "2"}), 10
        )
    assert json.loads(got[0].data)["payload"] == "2"


async def test_gap_event_then_what_is_kept(http_server: StartServer) -> None:
    srv = http_server(log_max_messages=2)
    url = base(srv)
    for i in range(5):
        httpx.post(f"{url}/v1/publish/gap", content=b"%d" % i)
    async with httpx.AsyncClient(timeout=10) as client:
        got = await asyncio.wait_for(_events(client, f"{url}/v1/sse/gap?since=1", 3), 10)
    assert got[0].event == "gap"
    assert json.loads(got[0].data)["requested"] == "1"
    assert [json.loads(e.data)["payload"] for e in got[1:]] == ["3", "4"]


async def test_epoch_change_is_a_gap_event(http_server: StartServer) -> None:
    srv = http_server()
    url = base(srv)
    httpx.post(f"{url}/v1/publish/e", content=b"x")
    async with httpx.AsyncClient(timeout=10) as client:
        got = await asyncio.wait_for(
            _events(client, f"{url}/v1/sse/e", 2, {"Last-Event-ID": "0123456789ab:1"}), 10
        )
    assert got[0].event == "gap"
    assert got[1].event == "message" and json.loads(got[1].data)["payload"] == "x"


async def test_idle_stream_gets_comment_heartbeats(http_server: StartServer) -> None:
    srv = http_server(sse_heartbeat=0.2)
    url = base(srv)
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{url}/v1/sse/quiet") as response,
    ):
        lines: list[str] = []
        async with asyncio.timeout(5):
            async for line in response.aiter_lines():
                lines.append(line)
                if lines.count(": hb") >= 2:
                    break
    assert lines[0].startswith(": pushwire ")
    assert lines.count(": hb") == 2


def test_curl_sse(http_server: StartServer) -> None:
    srv = http_server()
    url = base(srv)
    httpx.post(f"{url}/v1/publish/c", content=b"hello curl")
    proc = subprocess.Popen(["curl", "-sN", f"{url}/v1/sse/c?since=all"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
    finally:
        proc.kill()
        proc.wait()
    assert lines[2].startswith(b"id: ") and lines[2].endswith(b":1\n")
    assert b'"payload":"hello curl"' in lines[3]


async def test_slow_stream_is_closed_with_a_reason_not_skipped(http_server: StartServer) -> None:
    """A client that does not read while more than stream_buffer messages arrive is told
    (event: close, reason overflow) and disconnected; with its cursor it then gets all."""
    srv = http_server(stream_buffer=5)
    url = base(srv)
    # a small receive window: the kernel and the server's transport buffer fill up soon
    # (the stream writes straight to the socket until the transport pauses it)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((srv.host, srv.http_port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /v1/sse/slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    async with httpx.AsyncClient(timeout=10) as client:
        await _wait_streams(client, url, 1)
        # batches until the socket, the transport buffer and then the stream's buffer
        # of 5 messages are full (the client reads nothing meanwhile)
        pad = "x" * 16384
        sent = 0
        for _ in range(100):
            batch = [{"topic": "slow", "payload": f"{sent + i}:{pad}"} for i in range(50)]
            assert (await client.post(f"{url}/v1/publish", json=batch)).status_code == 201
            sent += 50
            metrics = (await client.get(url + "/metrics")).text
            if "pushwire_stream_overflows_total 1.0" in metrics:
                break
        else:
            raise AssertionError("the stream never overflowed")
        data = b""
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                data += chunk
        writer.close()
        events = [e for e in data.split(b"\n\n") if e.startswith((b"id:", b"event:"))]
        assert b"event: close" in events[-1] and b'"reason":"overflow"' in events[-1]
        messages = [json.loads(e.split(b"data: ", 1)[1]) for e in events[:-1]]
        assert [int(m["payload"].split(":")[0]) for m in messages] == list(range(len(messages)))
        close = json.loads(events[-1].split(b"data: ", 1)[1])
        # the client resumes with its cursor and gets the next message, nothing skipped
        got = await _events(client, f"{url}/v1/sse/slow?since={close['cursor']}", 1)
        assert int(json.loads(got[0].data)["payload"].split(":")[0]) == len(messages)
