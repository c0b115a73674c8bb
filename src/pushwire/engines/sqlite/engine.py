"""The SQLite engine class: composes the writer thread (writer.py) with the stores
(sessions.py, retained.py, log.py) and sets up their state. See the package docstring."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from pushwire.core.histogram import Histogram
from pushwire.engines.base import FailureListener
from pushwire.engines.sqlite.log import LogStore
from pushwire.engines.sqlite.retained import RetainedStore
from pushwire.engines.sqlite.sessions import SessionStore
from pushwire.engines.sqlite.writer import Item


class SQLiteEngine(SessionStore, RetainedStore, LogStore):
    """Engine on one SQLite file in WAL mode, written by a dedicated thread (group commit)."""

    name = "sqlite"
    keeps_queue = True
    keeps_log = True

    def __init__(
        self,
        path: Path,
        durable: bool = True,
        batch_max: int = 1000,
        max_pending_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be >= 1")
        # Payload bytes of writes queued for the writer and not applied yet: a publisher
        # faster than the disk grows this backlog, so above `max_pending_bytes` the engine
        # says `backlogged` and the hub holds publishers until it is half drained (0: never).
        # Each counter has one writer thread: the loop queues, the writer applies.
        self.max_pending_bytes = max_pending_bytes
        self._queued_bytes = 0
        self._applied_bytes = 0
        self._drained: list[Callable[[], None]] = []
        self._drain_loop: asyncio.AbstractEventLoop | None = None
        self.path = Path(path)
        # durable: synchronous=FULL (fsync on every commit) and sync() waits for the commit.
        # Not durable: synchronous=NORMAL, which in WAL mode still survives a process crash
        # once committed (only power loss can roll back the newest commits), and sync()
        # returns at once.
        self.durable = durable
        self.batch_max = batch_max
        # Written by the writer thread only; read for monitoring and by tests.
        self.commits = 0
        # seconds per commit (BEGIN .. COMMIT of one batch, fsync included)
        self.commit_seconds = Histogram()
        self.failed_batches = 0  # batches that had to be retried one write at a time
        self.failed_writes = 0  # writes that could not be stored

        self._ops: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._state = "new"  # new -> open -> closed
        # sync() coalescing: while no write was issued since the last marker, a new sync()
        # can wait on that marker instead of queueing another one.
        self._dirty = False
        self._last_sync: asyncio.Future[None] | None = None
        # A failed batch's error waiting for the next commit point with waiters (writer
        # thread only).
        self._unreported: BaseException | None = None
        # uid -> serialized properties of the last queued message: fan-out queues the same
        # message for many sessions in a row, and only its first queue_put stores a body.
        self._props_cache: tuple[int, str | None] = (0, None)
        # event-loop side of failure reports (see the module docstring)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed_uids: dict[int, None] = {}  # insertion-ordered: oldest dropped first
        # client id -> `_failure_reports` when a write of its session last failed
        self._failed_clients: dict[str, int] = {}
        self._failure_reports = 0
        self._failure_listeners: list[FailureListener] = []
