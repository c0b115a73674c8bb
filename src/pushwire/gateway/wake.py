"""The offline wake-up (the SMS fallback): a signed webhook when an urgent push has waited
too long for an offline device.

When a priority 10 push has waited the app's `after_seconds` for an offline device, the
app's wake webhook is called (webhooks.py signs it), at most once per device per
`wake_min_interval`. Whether the device is still offline is asked again right before every
attempt, so a device that came online meanwhile is never woken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pushwire.gateway.model import Push
from pushwire.gateway.registry import RegistryView
from pushwire.gateway.webhooks import WebhookSender


class WakeScheduler:
    def __init__(
        self,
        registry: RegistryView,
        webhooks: WebhookSender,
        min_interval: float,
        *,
        find: Callable[[str], Push | None],
        online: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.webhooks = webhooks
        self.min_interval = min_interval
        self.find = find
        self.online = online
        self.clock = clock
        self.last_wake: dict[str, float] = {}  # device -> time of its last wake
        self.fired = 0
        self._timers: set[asyncio.TimerHandle] = set()

    def schedule(self, p: Push) -> None:
        """Arm the wake check of a priority 10 push waiting for an offline device."""
        app = self.registry.app(p.app_id)
        if app is None or app.wake is None or p.priority < 10:
            return
        delay = max(0.0, app.wake.after_seconds - (self.clock() - p.created))
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self._check(p.id)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def _check(self, push_id: str) -> None:
        p = self.find(push_id)
        if p is None or p.state != "queued" or self.online(p.device_id):
            return
        app = self.registry.app(p.app_id)
        if app is None or app.wake is None:
            return
        now = self.clock()
        last = self.last_wake.get(p.device_id)
        if last is not None and now - last < self.min_interval:
            return
        self.last_wake[p.device_id] = now
        self.fired += 1
        device_id = p.device_id
        notice = {
            "type": "wake",
            "device_id": device_id,
            "app": p.app_id,
            "push_id": p.id,
            "waiting_since": p.created,
            "timestamp": int(now),
        }
        self.webhooks.send(
            "wake",
            app.wake.url,
            notice,
            secret=app.wake.secret,
            still_wanted=lambda: not self.online(device_id),
        )
