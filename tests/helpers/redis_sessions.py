"""Nodes whose persistent sessions live in Redis, for the session handover tests.

The full Redis engine (history, broker, retained: engines/redis/__init__.py) is written by
another branch. Until it is on this one, `SessionsOnRedisEngine` is the memory engine with
every session method (and sync) going to the real `RedisSessionStore` on a real
redis-server: exactly the part the handover tests exercise, nothing stubbed. Messages then
travel between nodes only through the sessions (no cross-node fan-out yet), so the tests
publish on the node that holds the session.

`redis_engine` (a fixture) uses the real `pushwire.engines.redis.RedisEngine` as soon as it
exists, and the stand-in only while it does not.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from collections.abc import Iterator

import pytest
import redis.asyncio

from pushwire.config import Settings
from pushwire.core.message import Message
from pushwire.engines.base import (
    FailureListener,
    QueueState,
    StoredQueueEntry,
    StoredSession,
    StoredSubscription,
)
from pushwire.engines.memory import MemoryEngine
from pushwire.engines.redis.sessions import RedisSessionStore
from pushwire.server import REDIS_ENGINE_MODULE, redis_engine_available


class SessionsOnRedisEngine(MemoryEngine):
    name = "redis"
    durable = True

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.client = redis.asyncio.Redis.from_url(settings.redis_url)
        self.sessions = RedisSessionStore(self.client, node_id=settings.node_id)

    async def close(self) -> None:
        await self.sessions.close()
        await self.client.aclose()

    async def load_sessions(self, queue_window: int = 0) -> list[StoredSession]:
        return await self.sessions.load_sessions(queue_window)

    def session_put(
        self,
        client_id: str,
        protocol_level: int,
        expiry_interval: int | None,
        disconnected_at: float | None,
        owner: str | None = None,
    ) -> None:
        self.sessions.session_put(
            client_id, protocol_level, expiry_interval, disconnected_at, owner
        )

    def session_delete(self, client_id: str) -> None:
        self.sessions.session_delete(client_id)

    def subscription_put(self, client_id: str, sub: StoredSubscription) -> None:
        self.sessions.subscription_put(client_id, sub)

    def subscription_delete(self, client_id: str, flt: str) -> None:
        self.sessions.subscription_delete(client_id, flt)

    def queue_put(self, client_id: str, entry: StoredQueueEntry) -> None:
        self.sessions.queue_put(client_id, entry)

    def queue_update(
        self, client_id: str, seq: int, packet_id: int | None, state: QueueState
    ) -> None:
        self.sessions.queue_update(client_id, seq, packet_id, state)

    def queue_delete(self, client_id: str, seq: int) -> None:
        self.sessions.queue_delete(client_id, seq)

    def inbound_qos2_put(self, client_id: str, packet_id: int) -> None:
        self.sessions.inbound_qos2_put(client_id, packet_id)

    def inbound_qos2_delete(self, client_id: str, packet_id: int) -> None:
        self.sessions.inbound_qos2_delete(client_id, packet_id)

    async def sync(self) -> None:
        await self.sessions.sync()

    def write_failed(self, message: Message) -> bool:
        return self.sessions.write_failed(message)

    def failure_mark(self) -> int:
        return self.sessions.failure_mark()

    def session_failed_since(self, client_id: str, mark: int) -> bool:
        return self.sessions.session_failed_since(client_id, mark)

    def add_failure_listener(self, listener: FailureListener) -> None:
        self.sessions.add_failure_listener(listener)


@pytest.fixture
def redis_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """'real' when pushwire.engines.redis.RedisEngine exists, else installs the stand-in."""
    if redis_engine_available():
        yield "real"
        return
    module = types.ModuleType(REDIS_ENGINE_MODULE)
    module.__spec__ = importlib.machinery.ModuleSpec(REDIS_ENGINE_MODULE, None)
    module.RedisEngine = SessionsOnRedisEngine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, REDIS_ENGINE_MODULE, module)
    yield "stand-in"
