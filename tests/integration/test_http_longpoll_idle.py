"""What a held long-poll keeps (issue 10: RSS per idle connection): its entry in the admin
API's client list is a bound `describe` of the object that holds it (no closure and
lambdas over the request per held poll), on both doors (the owned protocol's `_LongPoller`,
the ASGI app's `HeldLongPoll` for requests with an `Origin`), and that entry still
describes it. Real httpx requests against an in-process server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from helpers.inproc import InProcessServer, running
from helpers.registry import entry_owners, listed_clients
from pushwire.http.poll import HeldLongPoll

pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")

POLLS = 4


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


async def until(check: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("origin", [True, False], ids=["asgi", "owned"])
async def test_held_long_polls_are_listed_through_their_own_describe(
    srv: InProcessServer, origin: bool
) -> None:
    assert srv.server is not None and srv.server.http_address is not None
    host, port = srv.server.http_address
    url = f"http://{host}:{port}"
    headers = {"Origin": url} if origin else {}
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as http:
        polls = [
            asyncio.ensure_future(http.get("/v1/longpoll/idle/%23", params={"timeout": "30"}))
            for _ in range(POLLS)
        ]
        await until(lambda: len(entry_owners(srv)) == POLLS, "the long-polls are not held")
        owners = entry_owners(srv)
        assert None not in owners, owners  # bound methods, no closures
        if origin:
            assert all(isinstance(o, HeldLongPoll) for o in owners), owners
        # what `GET /v1/admin/clients` lists for them
        held = [c for c in listed_clients(srv) if c.transport == "longpoll"]
        assert len(held) == POLLS
        assert {c.subscriptions for c in held} == {("idle/#",)}
        assert len({c.id for c in held}) == POLLS
        assert {c.address for c in held} == {"127.0.0.1"}
        assert {c.user for c in held} == {None}
        # the marker answers every one of them: the holds were real
        assert (await http.post("/v1/publish/idle/x", content=b"marker")).status_code == 201
        for answer in await asyncio.gather(*polls):
            assert answer.status_code == 200
            assert [m["payload"] for m in answer.json()["messages"]] == ["marker"]
    # answered: the entries left the list
    await until(lambda: not entry_owners(srv), "answered long-polls are still listed")
