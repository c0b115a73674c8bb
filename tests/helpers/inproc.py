"""pushwire running inside the test process, on its own event loop in a thread.

For tests that must set up state faster than the wire allows (100,000 retained messages)
or read the server's counters at a chosen moment; clients still talk to it over real
sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pushwire.config import Settings
from pushwire.server import PushwireServer

T = TypeVar("T")
CALL_TIMEOUT = 30.0


class InProcessServer:
    host = "127.0.0.1"

    def __init__(self, **settings: Any) -> None:
        base: dict[str, Any] = {
            "bind": self.host,
            "mqtt_port": 0,
            "http_port": 0,
            "memory": True,
            "sys_interval": 0,
        }
        self.settings = Settings.model_validate(base | settings)
        self.loop = asyncio.new_event_loop()
        self.server: PushwireServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.mqtt_port = 0

    def start(self) -> InProcessServer:
        self._thread.start()

        async def start() -> PushwireServer:
            server = PushwireServer(self.settings)
            await server.start()
            return server

        self.server = self._run(start())
        assert self.server.mqtt_address is not None
        self.mqtt_port = self.server.mqtt_address[1]
        return self

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(CALL_TIMEOUT)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop (between two of its callbacks) and return its result."""

        async def run() -> T:
            return fn()

        result: T = self._run(run())
        return result

    def stop(self) -> None:
        if self.server is not None:
            self._run(self.server.stop())
            self.server = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self.loop.close()


def running(server: InProcessServer) -> Iterator[InProcessServer]:
    """`server` started, stopped when the generator closes: a fixture's
    `yield from running(InProcessServer(...))`."""
    started = server.start()
    try:
        yield started
    finally:
        started.stop()
