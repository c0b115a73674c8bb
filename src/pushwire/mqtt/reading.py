"""When an MQTT connection reads and runs packets: the part of the asyncio glue that feeds
decoded packets to the machine one by one, and pauses and resumes reading a client (its
CONNECT being authenticated, its publish rate, subscribers it publishes to falling behind,
a client not reading what we send, one read per loop turn, the deliveries its publishes
caused in this turn; the loop's read budget, turn_budget.py, spent). Packets that arrive while held
wait in order in `_backlog` (from `_backlog_at` on): an index, not a slice, as a hold
under pressure often lets one packet through at a time, and slicing the rest off each time
was quadratic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from pushwire.core.hub import Hub
from pushwire.core.pressure import MAX_WAIT as PRESSURE_MAX_WAIT
from pushwire.core.ratelimit import TokenBucket
from pushwire.mqtt.connection import MQTTConnection
from pushwire.mqtt.packets import Packet, Publish, ReasonCode
from pushwire.mqtt.violation import ProtocolViolation

if TYPE_CHECKING:
    from pushwire.mqtt.broker import MQTTBroker
    from pushwire.mqtt.events import Event
    from pushwire.mqtt.session import MqttSession

log = logging.getLogger(__name__)


class ReadControl:
    """Mixed into MQTTServerProtocol, which owns these attributes and `_act`."""

    hub: Hub
    conn: MQTTConnection
    _publish_bucket: TokenBucket | None
    transport: asyncio.Transport | None
    _backlog: list[Packet]
    _backlog_at: int
    _closing: bool
    _paused: bool
    _yielding: bool
    _throttled: bool
    _auth_pending: bool
    _pressured: bool
    broker: MQTTBroker
    session: MqttSession | None
    _loop: asyncio.AbstractEventLoop
    # state of this module that is rarely read: class defaults until first set, so the
    # connection object stays under 30 instance attributes (bench/README.md)
    _reading = True  # the transport is not paused
    _pressure_timer: asyncio.TimerHandle | None = None
    _slow_timer: asyncio.TimerHandle | None = None  # a client not reading what we send
    # this turn's fan-out budget is spent: the rest waits for the next turn (`_defer`)
    _deferred = False
    # reads kept undecoded for a later turn by the loop's read budget (turn_budget.py)
    _reads_waiting = 0

    if TYPE_CHECKING:

        @property
        def peer(self) -> str: ...  # "ip:port", formatted when asked
        def _act(self, events: list[Event]) -> None: ...
        def _publish_run(
            self, packets: list[Packet], start: int, spent_at: int, received: float, burst: int
        ) -> int: ...
        def _abort(self, reason: str, level: int = logging.DEBUG) -> None: ...

    def _handle(self, packets: list[Packet]) -> None:
        """Run the packets of one read, or queue them behind what already waits."""
        if self._backlog_at < len(self._backlog) or self._held():
            self._backlog.extend(packets)  # keep order behind what is already waiting
            return
        self._run(packets)

    def _wait(self, packets: list[Packet], start: int) -> None:
        """packets[start:] wait for _release_held (the list is ours: the decoder's or
        the backlog's, never shared)."""
        self._backlog = packets
        self._backlog_at = start

    def _run(self, packets: list[Packet], start: int = 0) -> None:
        """Each packet through the machine and its events acted on, until something
        says wait: the publish rate, a CONNECT being checked, pressure, or this read's
        share of the loop turn spent on fan-out."""
        bucket = self._publish_bucket
        conn = self.conn
        hub = self.hub
        # the deliveries this read's publishes may cause before the rest waits a turn: one
        # 64 KB read is ~700 small PUBLISH, 7 M deliveries to 10,000 subscribers, and their
        # writes only go out once the turn ends
        settings = self.broker.settings
        spent_at = hub.routed + settings.fanout_deliveries_per_turn
        # receipt time of the QoS 1/2 PUBLISHes, for the publish-to-ack histogram: one clock
        # read for all of one read's packets (they arrived together)
        received = -1.0
        # a run of plain QoS 0/1 PUBLISHes goes through `_publish_run` as one batch (not
        # with a publish rate, which counts each packet); whatever it leaves goes one by one
        batch = bucket is None
        i = start
        end = len(packets)
        while i < end:
            if self._closing:
                return
            packet = packets[i]
            is_publish = isinstance(packet, Publish)
            qos = packet.qos if isinstance(packet, Publish) else 0
            if qos and received < 0:
                received = time.monotonic()
            if batch and is_publish and qos < 2:
                if received < 0:
                    received = time.monotonic()  # a QoS 1 PUBLISH may follow in the run
                try:
                    done = self._publish_run(
                        packets, i, spent_at, received, settings.backpressure_publish_burst
                    )
                except Exception:
                    # as for one packet below: a bug costs this connection only
                    log.exception("error handling a PUBLISH run from %s", self.peer)
                    self._act(conn.protocol_error("internal error", ReasonCode.UNSPECIFIED_ERROR))
                    return
                if done > i:
                    # the checks below, after the run's last packet
                    i = done
                    last = packets[done - 1]
                    assert isinstance(last, Publish)
                    if hub.pressure.active and (last.qos or hub.store_held):
                        self._wait(packets, done)
                        self._hold_for_pressure()
                        return
                    if hub.routed >= spent_at:
                        self._defer(packets, done)
                        return
                    continue
            if bucket is not None and is_publish and not bucket.try_acquire():
                # over its publish rate: keep the rest for later and stop reading
                self._wait(packets, i)
                self._throttle(bucket.retry_after())
                return
            try:
                self._act(conn.handle(packet, received if qos else -1.0))
            except ProtocolViolation as exc:
                self._act(conn.protocol_error(str(exc), exc.reason_code))
                return
            except Exception:
                # a bug must cost one connection, never the server
                log.exception("error handling %s from %s", type(packet).__name__, self.peer)
                self._act(conn.protocol_error("internal error", ReasonCode.UNSPECIFIED_ERROR))
                return
            i += 1
            if self._auth_pending:
                self._wait(packets, i)
                return
            if is_publish and hub.pressure.active and (qos or hub.store_held):
                # a subscriber that keeps up is behind, or the store's write backlog is
                # full: wait for it instead of making it drop (or growing memory)
                self._wait(packets, i)
                self._hold_for_pressure()
                return
            if is_publish and hub.routed >= spent_at:
                self._defer(packets, i)
                return

    def _held(self) -> bool:
        """Packets wait while the client is throttled, its CONNECT is being checked, or a
        subscriber it publishes to needs to catch up, or its fan-out had its share of
        this loop turn."""
        return self._throttled or self._auth_pending or self._pressured or self._deferred

    def _defer(self, packets: list[Packet], start: int) -> None:
        """This read's fan-out budget is spent: packets[start:] wait for the next loop
        turn, and reading pauses until then. The subscribers' writes of this turn are
        flushed first (their flushes were queued before `_undefer`), and other clients are
        read in between; nothing is dropped, and order holds (what arrives meanwhile queues
        behind, `_handle`)."""
        self._wait(packets, start)
        self._deferred = True
        self._sync_reading()
        self._loop.call_soon(self._undefer)

    def _undefer(self) -> None:
        self._deferred = False
        self._release_held()  # nothing if closed meanwhile, or held for something else
        if not (self._held() or self._yielding or self._closing):
            # the rest of the read took its part of this turn: the next read waits for the
            # next turn, after the flushes, or one turn could route two budgets
            self._yielding = True
            self._sync_reading()
            self._loop.call_soon(self._end_turn)

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
        want = not (
            self._closing or self._held() or self._paused or self._yielding or self._reads_waiting
        )
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

    # -- the client not reading what we send (asyncio.Protocol) --------------------------

    def pause_writing(self) -> None:
        # the client is not reading: stop reading from it too (its acks and our answers
        # would otherwise pile up), drop QoS 0 for it, and give it a bounded time to recover
        self._paused = True
        self._sync_reading()
        self._slow_timer = self._loop.call_later(
            self.broker.settings.slow_consumer_timeout, self._slow_consumer
        )

    def resume_writing(self) -> None:
        self._paused = False
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        self._sync_reading()
        if self.session is not None:
            self.session.pump()

    def _slow_consumer(self) -> None:
        self._slow_timer = None
        self.hub.stats.slow_consumers_disconnected += 1
        self._abort("slow consumer: send buffer full too long", logging.WARNING)
        if self.transport is not None:
            # close() would wait for the full buffer to drain; this peer is not reading
            self.transport.abort()
