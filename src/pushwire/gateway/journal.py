"""Group commit of push state to the gateway store.

Changes to pushes are collected on the event loop and written in one transaction per
round on the store thread; `durable()` resolves once everything recorded before it is on
disk (the push API answers 200 only after that: what pushwire acknowledged survives a kill).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pushwire.gateway.model import Push

log = logging.getLogger("pushwire.gateway")


class StoreUnavailable(RuntimeError):
    """Push state could not be written (the store failed: a full disk, Redis unreachable):
    nothing may be acknowledged."""


Runner = Callable[..., Awaitable[Any]]
Apply = Callable[[Iterable[Push], Iterable[str], bool], None]


class Journal:
    def __init__(self, apply: Apply, run: Runner, durable: bool = True) -> None:
        self._apply = apply
        # fsync the rounds somebody waits for (a 200 to a provider); the others need not
        self._durable = durable
        self._run = run
        self._puts: dict[str, Push] = {}
        self._deletes: set[str] = set()
        # engine=redis: new pushes for devices homed on other nodes, written (and announced
        # to their home) by `forwarder` in the same round (gateway/cluster.py)
        self.forwarder: Callable[[list[Push]], None] | None = None
        self._forwards: list[Push] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self._closed = False

    def put(self, push: Push) -> None:
        # a copy: the loop keeps changing the live object while the thread writes
        self._puts[push.id] = dataclasses.replace(push)
        self._deletes.discard(push.id)
        self._kick()

    def forward(self, push: Push) -> None:
        self._forwards.append(dataclasses.replace(push))
        self._kick()

    def delete(self, push_id: str) -> None:
        self._puts.pop(push_id, None)
        self._deletes.add(push_id)
        self._kick()

    async def durable(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._kick()
        await fut

    def close(self) -> None:
        """No more writes (the store is closing); what comes later is dropped."""
        self._closed = True

    def _kick(self) -> None:
        if self._closed:
            self._puts.clear()
            self._deletes.clear()
            self._forwards.clear()
            for w in self._waiters:
                if not w.done():
                    w.set_exception(RuntimeError("the gateway is shutting down"))
            self._waiters = []
            return
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="pushwire-gateway-journal")

    async def _loop(self) -> None:
        try:
            while self._puts or self._deletes or self._forwards or self._waiters:
                puts, deletes, forwards, waiters = (
                    list(self._puts.values()),
                    list(self._deletes),
                    self._forwards,
                    self._waiters,
                )
                self._puts, self._deletes, self._forwards, self._waiters = {}, set(), [], []
                try:
                    sync = self._durable and bool(waiters)
                    await self._run(self._apply, puts, deletes, sync)
                    if forwards:
                        if self.forwarder is None:
                            raise RuntimeError("a push to forward, but no device homes")
                        await self._run(self.forwarder, forwards)
                    self.commits += 1
                except Exception as exc:
                    log.error("gateway: writing push state failed: %s: %s", type(exc).__name__, exc)
                    for w in waiters:
                        if not w.done():
                            w.set_exception(StoreUnavailable(str(exc)))
                    continue
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
        finally:
            self._task = None

    async def flush(self) -> None:
        if self._task is not None or self._puts or self._deletes or self._forwards:
            await self.durable()
