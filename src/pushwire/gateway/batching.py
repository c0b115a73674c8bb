"""Priority batching: hold low-priority pushes to an online device for one wake-up.

Priority 5 and 1 pushes to an online device wait up to `window` seconds; the next priority
10 push to that device, or the end of the window, releases everything waiting at once (one
write to the device, one `pushwire_device_wakeups_total`). Priority 10 is never held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class BatchHolder:
    def __init__(self, window: float, release: Callable[[str], None]) -> None:
        self.window = window
        self.release = release  # flush(device_id)
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def holds(self, priority: int, expiration: int) -> bool:
        """Whether a push of this priority may be held (0 expiration: now or never)."""
        return priority < 10 and self.window > 0 and expiration != 0

    def hold(self, device_id: str) -> None:
        """Start the device's window unless one is open."""
        if device_id in self._timers:
            return
        loop = asyncio.get_running_loop()
        self._timers[device_id] = loop.call_later(self.window, self.release, device_id)

    def released(self, device_id: str) -> None:
        """The device's pushes went out: close its window."""
        handle = self._timers.pop(device_id, None)
        if handle is not None:
            handle.cancel()

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
