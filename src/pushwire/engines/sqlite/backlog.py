"""The SQLite engine's write-behind backlog: payload bytes queued for the writer thread and
not applied yet. A publisher faster than the disk grows it, so above `max_pending_bytes`
the engine says `backlogged` and the hub holds publishers until it is half drained."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class WriteBacklog:
    """Mixin of the engine (see engine.py, which sets these attributes up). Each counter has
    one writer thread: the loop queues, the writer applies."""

    max_pending_bytes: int
    _queued_bytes: int
    _applied_bytes: int
    _drained: list[Callable[[], None]]
    _drain_loop: asyncio.AbstractEventLoop | None

    @property
    def pending_bytes(self) -> int:
        """Payload bytes queued for the writer and not applied yet."""
        return self._queued_bytes - self._applied_bytes

    @property
    def backlogged(self) -> bool:
        return 0 < self.max_pending_bytes < self.pending_bytes

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call `callback` on this event loop once the backlog is at most half the bound."""
        self._drain_loop = asyncio.get_running_loop()
        self._drained.append(callback)
        if self._half_drained():
            self._drain_loop.call_soon(self._fire_drained)

    def _half_drained(self) -> bool:
        return self.pending_bytes <= self.max_pending_bytes // 2

    def _fire_drained(self) -> None:
        if not self._half_drained():
            return  # grew again meanwhile: the writer calls back after a later batch
        callbacks, self._drained = self._drained, []
        for callback in callbacks:
            callback()

    def _applied(self, size: int) -> None:
        """Writer thread, after a batch: account for it and wake the drain waiters."""
        self._applied_bytes += size
        loop = self._drain_loop
        if self._drained and loop is not None and self._half_drained():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._fire_drained)
