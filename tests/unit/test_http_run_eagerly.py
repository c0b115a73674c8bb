"""http/eager.py `run_eagerly`: a hot handler runs in the protocol's callback and only
becomes a task when it has to wait, also when many handlers wait on one shared future (the
store's group commit) before any of their tasks has run."""

from __future__ import annotations

import asyncio
from typing import Any

from pushwire.http.eager import run_eagerly
from pushwire.http.wire import WireResponse


async def test_a_handler_that_does_not_wait_needs_no_task() -> None:
    async def handler() -> WireResponse:
        return WireResponse(201, b"done")

    result = run_eagerly(asyncio.get_running_loop(), handler())
    assert isinstance(result, WireResponse) and result.body == b"done"


async def test_many_handlers_awaiting_one_shared_future_all_finish() -> None:
    loop = asyncio.get_running_loop()
    shared: dict[str, Any] = {"sync": None}

    async def commit() -> None:
        shared["sync"] = None  # writes from here on belong to the next commit
        await asyncio.sleep(0)

    def sync_future() -> asyncio.Future[None]:
        if shared["sync"] is None:
            shared["sync"] = asyncio.ensure_future(commit())
        future: asyncio.Future[None] = shared["sync"]
        return future

    async def handler(i: int) -> WireResponse:
        await sync_future()
        await sync_future()  # and a second group commit
        return WireResponse(201, str(i).encode())

    started = [run_eagerly(loop, handler(i)) for i in range(20)]
    assert all(isinstance(s, asyncio.Task) for s in started)
    results = await asyncio.gather(*(s for s in started if isinstance(s, asyncio.Task)))
    assert [r.body for r in results] == [str(i).encode() for i in range(20)]


async def test_a_waiting_handler_can_be_cancelled() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler() -> WireResponse:
        try:
            await never
        except asyncio.CancelledError:
            return WireResponse(499, b"cancelled")
        return WireResponse(200, b"")

    task = run_eagerly(asyncio.get_running_loop(), handler())
    assert isinstance(task, asyncio.Task)
    await asyncio.sleep(0)
    task.cancel()
    assert (await task).body == b"cancelled"
