"""Frames of pushwire's JSON WebSocket (/v1/ws) through the `websockets` client: read the
next frame past the server's pings, send one and read the answer, collect `message` frames.

The frame-level tests (masking, fragmentation, close codes) use helpers/rawws.py instead."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame that is not a server ping."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        assert isinstance(frame, dict), frame
        if frame["type"] != "ping":
            return frame


async def request(ws: ClientConnection, frame: dict[str, Any] | str) -> dict[str, Any]:
    """Send a frame (a dict as JSON, a str as it is, e.g. malformed on purpose) and read
    the next frame that is not a ping."""
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    return await recv(ws)


async def messages(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    """The next `n` frames, each of which must be a `message`."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        frame = await recv(ws)
        assert frame["type"] == "message", frame
        out.append(frame)
    return out
