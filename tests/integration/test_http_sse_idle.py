"""What an idle SSE stream keeps (issue 10: RSS per idle connection): its entry in the
admin API's client list is the stream's own bound `describe` (no closure over the request
per stream), and that entry still describes the stream. Real httpx streams against an
in-process server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import httpx
import pytest

from helpers.inproc import InProcessServer, running
from helpers.registry import entry_owners, listed_clients
from pushwire.http.sse import SseStream

pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")

STREAMS = 5


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


async def next_data(lines: AsyncIterator[str]) -> str:
    async def read() -> str:
        async for line in lines:
            if line.startswith("data: "):
                return line[6:]
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(read(), 10)


async def test_idle_sse_streams_are_listed_through_their_own_describe(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None and srv.server.http_address is not None
    host, port = srv.server.http_address
    url = f"http://{host}:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as http, AsyncExitStack() as stack:
        lines = []
        for _ in range(STREAMS):
            r = await stack.enter_async_context(http.stream("GET", "/v1/sse/idle/%23"))
            assert r.status_code == 200
            it = r.aiter_lines()
            assert (await anext(it)).startswith(": pushwire ")  # the stream is open
            lines.append(it)
        owners = entry_owners(srv)
        assert len(owners) == STREAMS
        assert all(isinstance(o, SseStream) for o in owners), owners
        # what `GET /v1/admin/clients` lists for them
        sse = [c for c in listed_clients(srv) if c.transport == "sse"]
        assert len(sse) == STREAMS
        assert {c.subscriptions for c in sse} == {("idle/#",)}
        assert len({c.id for c in sse}) == STREAMS
        assert {c.address for c in sse} == {"127.0.0.1"}
        assert (await http.post("/v1/publish/idle/x", content=b"marker")).status_code == 201
        for it in lines:
            assert '"payload":"marker"' in await next_data(it)
    # every client went away: its stream ended and its entry left the list
    deadline = time.monotonic() + 10
    while entry_owners(srv):
        assert time.monotonic() < deadline, "closed streams are still listed"
        await asyncio.sleep(0.05)
