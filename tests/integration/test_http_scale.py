"""A bounded version of the scale scenario (the full 10,000 + 10,000 one is
bench/http_scale.py): 1,000 long-poll waiters and 1,000 SSE streams held by one server at
once, and a single publish reaches every one of them."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from helpers.server import raise_nofile_limit

from .http_util import StartServer, base, http_server

__all__ = ["http_server"]
pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")

N = 1000


async def _open(
    host: str, port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    return reader, writer  # keep the writer: dropping it closes the connection


async def _got(reader: asyncio.StreamReader, marker: bytes) -> bool:
    data = b""
    while marker not in data:
        chunk = await reader.read(65536)
        if not chunk:
            return False
        data += chunk
    return True


async def test_one_publish_reaches_a_thousand_waiters_and_a_thousand_streams(
    http_server: StartServer,
) -> None:
    raise_nofile_limit()
    srv = http_server(sse_heartbeat=600)
    url = base(srv)
    assert srv.http_port is not None
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for path in ("/v1/longpoll/big/t?timeout=60", "/v1/sse/big/%23"):
        for _ in range(N // 250):
            conns += await asyncio.gather(
                *(_open(srv.host, srv.http_port, path) for _ in range(250))
            )
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(1000):
            text = (await client.get(f"{url}/metrics")).text
            m = re.search(r"^pushwire_log_listeners (\d+)\.0$", text, re.M)
            if m and int(m.group(1)) == 2 * N:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"not every client got registered: {m and m.group(0)}")
        assert f"pushwire_longpoll_waiters {N}.0" in text
        assert f'pushwire_open_connections{{transport="sse"}} {N}.0' in text
        waits = [asyncio.ensure_future(_got(r, b'"payload":"to all"')) for r, _ in conns]
        r = await client.post(f"{url}/v1/publish/big/t", content=b"to all")
        assert r.status_code == 201
        done = await asyncio.wait_for(asyncio.gather(*waits), 30)
    for _, writer in conns:
        writer.close()
    assert sum(done) == 2 * N
