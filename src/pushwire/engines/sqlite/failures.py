"""The event-loop side of the SQLite engine's failure reports: which messages and sessions
had a write that could not be stored (see the package docstring), and who is told."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from pushwire.core.message import Message
from pushwire.engines.base import FailureListener, WriteFailure

logger = logging.getLogger(__name__)

# how many failed messages `write_failed` remembers (a waiter asks right after its sync)
FAILED_MEMORY: Final = 65536


class FailureReports:
    """Mixin of the engine (see engine.py, which sets these attributes up); the writer
    thread hands its reports over with `loop.call_soon_threadsafe(_record_failures, ...)`."""

    _loop: asyncio.AbstractEventLoop | None
    _failed_uids: dict[int, None]  # insertion-ordered: oldest dropped first
    # client id -> `_failure_reports` when a write of its session last failed
    _failed_clients: dict[str, int]
    _failure_reports: int
    _failure_listeners: list[FailureListener]

    def write_failed(self, message: Message) -> bool:
        """True when a write of `message` could not be stored. Reports reach the loop
        before the `sync()` waiters of the batch, so a waiter asks right after its sync."""
        return message.uid in self._failed_uids

    def failure_mark(self) -> int:
        return self._failure_reports

    def session_failed_since(self, client_id: str, mark: int) -> bool:
        return self._failed_clients.get(client_id, 0) > mark

    def add_failure_listener(self, listener: FailureListener) -> None:
        self._failure_listeners.append(listener)

    def _record_failures(self, failures: list[WriteFailure]) -> None:
        self._failure_reports += 1
        failed = self._failed_uids
        clients = self._failed_clients
        for failure in failures:
            if failure.message is not None:
                failed[failure.message.uid] = None
                while len(failed) > FAILED_MEMORY:
                    del failed[next(iter(failed))]
            if failure.client_id is not None:
                clients.pop(failure.client_id, None)  # re-insert: newest last
                clients[failure.client_id] = self._failure_reports
                while len(clients) > FAILED_MEMORY:
                    del clients[next(iter(clients))]
            for listener in self._failure_listeners:
                try:
                    listener(failure)
                except Exception:
                    logger.exception("sqlite engine: write failure listener failed")
