"""A hand-built RFC 6455 client on a raw socket, for the frame-level tests of the JSON
WebSocket: masking, fragmentation, control frames, close codes, and a client that does
not read. Written from the RFC, independent of pushwire's codec (http/websocket_codec.py)
and of the `websockets` library, so the tests check the server rather than share its code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWs:
    """One connection: `open()` does the handshake; `frame()` reads one server frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.head = b""

    @classmethod
    async def open(
        cls, host: str, port: int, path: str = "/v1/ws", *, rcvbuf: int = 0, headers: str = ""
    ) -> RawWs:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 22)
        key = base64.b64encode(os.urandom(16))
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{headers}".encode()
            + b"Sec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        conn = cls(reader, writer)
        conn.head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if conn.head.startswith(b"HTTP/1.1 101"):
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            assert accept in conn.head, conn.head
        return conn

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def send_json(self, obj: dict[str, Any]) -> None:
        self.writer.write(client_frame(TEXT, json.dumps(obj).encode()))

    async def frame(self, timeout: float = 10.0) -> tuple[int, bytes]:
        """The next server frame: (opcode, payload). Server frames are never masked."""
        async with asyncio.timeout(timeout):
            b0, b1 = await self.reader.readexactly(2)
            assert not b1 & 0x80, "a server frame is masked"
            assert b0 & 0x80, "a fragmented server frame"
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(n)

    async def json(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next text frame that is not a server ping, as JSON."""
        while True:
            opcode, payload = await self.frame(timeout)
            assert opcode == TEXT, (opcode, payload)
            obj: dict[str, Any] = json.loads(payload)
            if obj.get("type") != "ping":
                return obj

    async def close_code(self, timeout: float = 10.0) -> int:
        """Skip to the server's close frame; its code."""
        while True:
            opcode, payload = await self.frame(timeout)
            if opcode == CLOSE:
                return int(struct.unpack("!H", payload[:2])[0]) if payload else 1005

    async def eof(self, timeout: float = 10.0) -> bool:
        async with asyncio.timeout(timeout):
            return await self.reader.read(1) == b""

    def close(self) -> None:
        self.writer.close()
