"""When an MQTT connection reads: the part of the asyncio glue that pauses and resumes
reading a client (its CONNECT being authenticated, its publish rate, subscribers it
publishes to falling behind, a client not reading what we send, one read per loop turn).
Packets that arrive while held wait in order in `_backlog` (from `_backlog_at` on).
"""

from __future__ import annotations

import asyncio

from pushwire.core.hub import Hub
from pushwire.core.pressure import MAX_WAIT as PRESSURE_MAX_WAIT
from pushwire.mqtt.packets import Packet


class ReadControl:
    """Mixed into MQTTServerProtocol, which owns these attributes and `_run`."""

    hub: Hub
    transport: asyncio.Transport | None
    _backlog: list[Packet]
    _backlog_at: int
    _closing: bool
    _paused: bool
    _yielding: bool
    _reading: bool
    _throttled: bool
    _auth_pending: bool
    _pressured: bool
    _pressure_timer: asyncio.TimerHandle | None
    _loop: asyncio.AbstractEventLoop

    def _run(self, packets: list[Packet], start: int = 0) -> None:
        raise NotImplementedError

    def _held(self) -> bool:
        """Packets wait while the client is throttled, its CONNECT is being checked, or a
        subscriber it publishes to needs to catch up."""
        return self._throttled or self._auth_pending or self._pressured

    def _hold_for_pressure(self) -> None:
        self._pressured = True
        self.hub.stats.publishers_held += 1
        self._sync_reading()
        self.hub.pressure.wait(self._pressure_gone)
        # never longer than MAX_WAIT: a subscriber may stop keeping up while we wait
        self._pressure_timer = self._loop.call_later(PRESSURE_MAX_WAIT, self._pressure_gone)

    def _pressure_gone(self) -> None:
        if not self._pressured:
            return
        self._pressured = False
        if self._pressure_timer is not None:
            self._pressure_timer.cancel()
            self._pressure_timer = None
        # run on the next turn: the release may come from inside another connection's ack
        self._loop.call_soon(self._release_held)

    def _throttle(self, delay: float) -> None:
        """Over its publish rate: stop reading from this client for a while. TCP pushes
        back on it; nothing it sent is dropped, and other clients are not slowed."""
        self._throttled = True
        self.hub.stats.publish_throttled += 1
        self._sync_reading()
        self._loop.call_later(max(delay, 0.001), self._unthrottle)

    def _unthrottle(self) -> None:
        self._throttled = False
        self._release_held()

    def _sync_reading(self) -> None:
        """Read from the client unless something says wait: its CONNECT is being checked,
        it is over its publish rate, it is not reading what we send (symmetric
        backpressure), or it already had its turn in this loop iteration."""
        want = not (self._closing or self._held() or self._paused or self._yielding)
        if want != self._reading and self.transport is not None:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _end_turn(self) -> None:
        self._yielding = False
        self._sync_reading()

    def _release_held(self) -> None:
        """Run what waited (throttle over, or CONNECT answered), then read again."""
        if self._closing or self._held():
            return
        backlog, start = self._backlog, self._backlog_at
        self._backlog, self._backlog_at = [], 0
        self._run(backlog, start)  # may hold again
        self._sync_reading()
