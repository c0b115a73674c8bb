"""The JSON WebSocket served by the owned HTTP protocol (http/websocket.py): RFC 6455 at
the frame level with a hand-built client (helpers/rawws.py), no task per idle connection,
and a client that stops reading closed with 4001 (then resumed whole with its cursor)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from helpers.inproc import InProcessServer
from helpers.rawws import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawWs, client_frame

pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")


@pytest.fixture
def inproc() -> Iterator[InProcessServer]:
    server = InProcessServer(ws_max_message=1000).start()
    try:
        yield server
    finally:
        server.stop()


def http_port(srv: InProcessServer) -> int:
    assert srv.server is not None and srv.server.http_address is not None
    return int(srv.server.http_address[1])


def server_tasks(srv: InProcessServer) -> int:
    return srv.call(lambda: len(asyncio.all_tasks(srv.loop)))


async def test_idle_websockets_hold_no_task_each(inproc: InProcessServer) -> None:
    url = f"ws://127.0.0.1:{http_port(inproc)}/v1/ws"
    async with connect(url) as first:
        await first.send(json.dumps({"type": "subscribe", "sub": "s", "filter": "idle/#"}))
        assert json.loads(await first.recv())["type"] == "subscribed"
        before = server_tasks(inproc)
        clients = [await connect(url) for _ in range(30)]
        try:
            for ws in clients:
                await ws.send(json.dumps({"type": "subscribe", "sub": "s", "filter": "idle/#"}))
                assert json.loads(await ws.recv())["type"] == "subscribed"
            # 31 subscribed, idle connections: no task, timer or future of their own
            assert server_tasks(inproc) - before < 3
            async with httpx.AsyncClient() as http:
                r = await http.post(
                    f"http://127.0.0.1:{http_port(inproc)}/v1/publish/idle/x", content=b"hi"
                )
                assert r.status_code == 201
            for ws in [first, *clients]:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert frame["type"] == "message" and frame["payload"] == "hi"
        finally:
            for ws in clients:
                await ws.close()


async def test_fragments_pings_and_the_close_handshake(inproc: InProcessServer) -> None:
    ws = await RawWs.open("127.0.0.1", http_port(inproc))
    try:
        assert ws.status == 101
        text = json.dumps({"type": "ping", "ref": "fragmented é"}).encode()
        # a text message in three fragments, a ping between two of them
        ws.send(client_frame(TEXT, text[:5], fin=False))
        ws.send(client_frame(CONT, text[5:9], fin=False))
        ws.send(client_frame(PING, b"are you there"))
        ws.send(client_frame(CONT, text[9:]))
        assert await ws.frame() == (PONG, b"are you there")
        assert await ws.json() == {"type": "pong", "ref": "fragmented é"}
        # the client closes: the server answers with the same code and closes TCP
        ws.send(client_frame(CLOSE, struct.pack("!H", 4321) + b"bye"))
        assert await ws.close_code() == 4321
        assert await ws.eof()
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(TEXT, b'{"type":"ping"}', masked=False), 1002),  # unmasked
        (client_frame(TEXT, b'{"type":"ping"}', rsv=0x40), 1002),  # reserved bit
        (client_frame(0x3, b""), 1002),  # unknown opcode
        (client_frame(CONT, b"x"), 1002),  # continuation of nothing
        (client_frame(PING, b"x" * 126), 1002),  # control frame over 125 bytes
        (client_frame(PING, b"x", fin=False), 1002),  # fragmented control frame
        (client_frame(CLOSE, b"\x03"), 1002),  # close payload of one byte
        (client_frame(CLOSE, struct.pack("!H", 1005)), 1002),  # a code never on the wire
        (client_frame(TEXT, b'{"type": "\xff"}'), 1007),  # text that is not UTF-8
        (client_frame(TEXT, b"[" + b" " * 1100 + b"]"), 1009),  # over ws_max_message
        (client_frame(TEXT, b"x" * 600, fin=False) + client_frame(CONT, b"y" * 600), 1009),
        (client_frame(BINARY, b"\x00\x01"), 4400),  # binary: not the JSON protocol
        (client_frame(TEXT, b"not json"), 4400),
    ],
    ids=[
        "unmasked",
        "reserved-bit",
        "unknown-opcode",
        "lone-continuation",
        "long-control",
        "fragmented-control",
        "close-one-byte",
        "close-1005",
        "not-utf8",
        "too-big",
        "too-big-fragmented",
        "binary",
        "not-json",
    ],
)
async def test_broken_frames_close_with_the_rfc_code(
    inproc: InProcessServer, frame: bytes, code: int
) -> None:
    ws = await RawWs.open("127.0.0.1", http_port(inproc))
    try:
        ws.send(frame)
        assert await ws.close_code() == code
        ws.send(client_frame(CLOSE, struct.pack("!H", code)))
        assert await ws.eof()
    finally:
        ws.close()
    # the server goes on serving others
    ws = await RawWs.open("127.0.0.1", http_port(inproc))
    try:
        ws.send_json({"type": "ping", "ref": 1})
        assert await ws.json() == {"type": "pong", "ref": 1}
    finally:
        ws.close()


async def test_bad_handshakes_get_the_json_error(inproc: InProcessServer) -> None:
    ws = await RawWs.open("127.0.0.1", http_port(inproc), headers="Authorization: Bearer nope\r\n")
    try:
        assert ws.status == 401
        length = int(ws.head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = json.loads(await ws.reader.readexactly(length))
        assert body["error"]["code"] == "unauthorized"
    finally:
        ws.close()
