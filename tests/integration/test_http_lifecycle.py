"""A server stopping with long-polls, SSE streams and WebSockets open ends them all
promptly and cleanly (exit code 0), telling each client how to resume."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .http_util import StartServer, base, http_server, ws_url

__all__ = ["http_server"]
pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")


async def test_stop_with_open_waiters_and_streams(http_server: StartServer) -> None:
    srv = http_server(memory=False)
    url = base(srv)
    async with httpx.AsyncClient(timeout=20) as client:
        longpoll = asyncio.create_task(client.get(f"{url}/v1/longpoll/x?timeout=120"))

        async def sse_events() -> list[tuple[str, str]]:
            got = []
            async with aconnect_sse(client, "GET", f"{url}/v1/sse/x") as source:
                async for event in source.aiter_sse():
                    got.append((event.event, event.data))
            return got

        sse = asyncio.create_task(sse_events())
        async with connect(ws_url(srv)) as ws:
            await ws.send(json.dumps({"type": "subscribe", "sub": "s", "filter": "x"}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            for _ in range(500):
                if "pushwire_log_listeners 3.0" in (await client.get(f"{url}/metrics")).text:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("listeners not registered")
            t0 = time.monotonic()
            stopping = asyncio.create_task(asyncio.to_thread(srv.stop))  # asserts exit 0
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            r = await asyncio.wait_for(longpoll, 10)
            assert r.status_code == 200 and r.json()["messages"] == []
            events = await asyncio.wait_for(sse, 10)
            assert events[-1][0] == "close" and json.loads(events[-1][1])["reason"] == "shutdown"
            await stopping
            assert time.monotonic() - t0 < 8
