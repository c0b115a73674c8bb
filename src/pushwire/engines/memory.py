"""The memory engine: nothing outlives the process (`--memory`, tests, benches)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pushwire.core.histogram import Histogram
from pushwire.core.message import Message
from pushwire.engines.base import (
    FailureListener,
    QueueState,
    StoredLog,
    StoredQueueEntry,
    StoredSession,
    StoredSubscription,
)


class MemoryEngine:
    """Every write is a no-op: the hub's in-memory state is all there is."""

    name = "memory"
    durable = False
    keeps_queue = False  # a session's queue lives in memory only
    keeps_log = False  # the log's memory is all there is: evicting from it is a gap

    def __init__(self) -> None:
        self.commit_seconds = Histogram()  # no commits: exported empty

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load_sessions(self, queue_window: int = 0) -> list[StoredSession]:
        return []

    async def load_retained(self) -> list[Message]:
        return []

    def session_put(
        self,
        client_id: str,
        protocol_level: int,
        expiry_interval: int | None,
        disconnected_at: float | None,
        owner: str | None = None,
    ) -> None:
        return None

    def session_delete(self, client_id: str) -> None:
        return None

    def subscription_put(self, client_id: str, sub: StoredSubscription) -> None:
        return None

    def subscription_delete(self, client_id: str, flt: str) -> None:
        return None

    def queue_put(self, client_id: str, entry: StoredQueueEntry) -> None:
        return None

    def queue_update(
        self, client_id: str, seq: int, wire_id: int | None, state: QueueState
    ) -> None:
        return None

    def queue_delete(self, client_id: str, seq: int) -> None:
        return None

    def queue_load(
        self, client_id: str, from_seq: int, limit: int
    ) -> asyncio.Future[list[StoredQueueEntry]]:
        future: asyncio.Future[list[StoredQueueEntry]] = asyncio.get_running_loop().create_future()
        future.set_result([])
        return future

    def inbound_qos2_put(self, client_id: str, packet_id: int) -> None:
        return None

    def inbound_qos2_delete(self, client_id: str, packet_id: int) -> None:
        return None

    def retained_put(self, message: Message) -> None:
        return None

    def retained_delete(self, topic: str) -> None:
        return None

    async def sync(self) -> None:
        return None

    def write_failed(self, message: Message) -> bool:
        return False  # nothing is written, so nothing fails

    def failure_mark(self) -> int:
        return 0

    def session_failed_since(self, client_id: str, mark: int) -> bool:
        return False

    def add_failure_listener(self, listener: FailureListener) -> None:
        return None

    @property
    def pending_bytes(self) -> int:
        return 0

    @property
    def backlogged(self) -> bool:
        return False  # nothing is ever written

    def when_drained(self, callback: Callable[[], None]) -> None:
        callback()

    # the message log lives in memory only: every start is a new epoch
    async def load_log(self) -> StoredLog:
        return StoredLog()

    def log_reset(self, epoch: str) -> None:
        return None

    def log_append(self, message: Message) -> None:
        return None

    def log_trim(self, topic: str, upto_id: int, upto_time: float) -> None:
        return None

    def log_consumer_put(
        self, owner: str, name: str, flt: str, acked: int, last_used: float
    ) -> None:
        return None

    def log_consumer_delete(self, owner: str, name: str, flt: str) -> None:
        return None

    async def log_read(self, ranges: list[tuple[str, int, int]]) -> list[Message]:
        return []
