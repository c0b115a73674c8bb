"""One MQTT connection on asyncio: moves bytes between the socket and the protocol
machine (`connection.py`, where every rule lives): bytes in to the machine, the bytes of
its answers out to the transport, one write per loop turn.

The rest of the glue is one module per job, mixed into this one object (no helper objects
per connection, no indirection per packet): `defaults.py` (what a connection starts with),
`reading.py` (packets to the machine, read pausing), `direct.py` (a CONNECT or DISCONNECT
read alone), `dispatch.py` (the machine's events to actions), `timers.py` (the machine's
one timer), `login.py` (CONNECT to auth and hub), `hub_calls.py`, `link.py` (the session's
Link), `farewell.py` (will, session end), `acks.py` (acks in order, some durable);
`turn_budget.py` (the MQTT bytes one loop turn decodes, over all connections) is the
broker's.
docs/mqtt-machine.md maps each rule of the protocol to its module."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, cast

from pushwire.core.logthrottle import ThrottledLog
from pushwire.core.ratelimit import TokenBucket
from pushwire.mqtt.codec.errors import DecodeError
from pushwire.mqtt.connection import MQTTConnection
from pushwire.mqtt.deadlines import ConnectDeadlines
from pushwire.mqtt.defaults import ConnectionDefaults
from pushwire.mqtt.direct import DIRECT_PACKETS, DirectPath
from pushwire.mqtt.dispatch import EventDispatch
from pushwire.mqtt.farewell import Farewell
from pushwire.mqtt.hub_calls import HubCalls
from pushwire.mqtt.link import LinkSide
from pushwire.mqtt.login import Login
from pushwire.mqtt.packets import Packet
from pushwire.mqtt.reading import ReadControl
from pushwire.mqtt.timers import MachineTimer

if TYPE_CHECKING:
    from pushwire.mqtt.broker import MQTTBroker

log = logging.getLogger(__name__)
refusals = ThrottledLog(log)

# the most one read takes from a socket; a read that fills it means more is waiting, so the
# connection yields to the rest of the loop before reading again
READ_CHUNK_BYTES = 64 * 1024
# one read buffer for every connection of the process: the loop reads into it, and
# buffer_updated copies the bytes out at once, so idle connections hold no buffer
_READ_VIEW = memoryview(bytearray(READ_CHUNK_BYTES))
# bytes buffered towards a client before it counts as congested (asyncio's default is 64 KiB)
WRITE_BUFFER_HIGH = 256 * 1024


class MQTTServerProtocol(
    Login,
    HubCalls,
    LinkSide,
    Farewell,
    ReadControl,
    DirectPath,
    EventDispatch,
    MachineTimer,
    ConnectionDefaults,
    asyncio.BufferedProtocol,
):
    """A client connection; also the `Link` its session sends through."""

    def __init__(self, broker: MQTTBroker) -> None:
        # at most 30 instance attributes, or CPython stops sharing the instance dict's keys
        # and each connection builds and resizes a dict of its own (bench/README.md)
        self.broker = broker
        self.hub = broker.hub
        self.conn = MQTTConnection(broker.limits, broker.hub.stats, time.monotonic())
        self.connected_at = time.time()  # wall clock, for the admin API's client list
        # asyncio.get_running_loop() costs a getpid() syscall per call: the listener's loop
        self._loop = broker.loop or asyncio.get_running_loop()
        self._out: list[bytes] = []
        self._sent_at: list[float] = []  # latencies observed at the flush (mqtt/link.py)
        self._acked_at: list[float] = []
        self._backlog: list[Packet] = []  # reading.py: what waits, from _backlog_at on

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        peer = self._peername = self.transport.get_extra_info("peername")
        # an IP address is a str already (a tuple's first item); a Unix socket's name is not
        ip = self.ip = peer[0] if type(peer) is tuple else str(peer)
        broker = self.broker
        admission = broker.admission
        if admission.gates_ip:  # else admit() admits and release() does nothing
            refusal = admission.admit(ip)  # broker.admit, one call less per connect
            if refusal is not None:
                # refused before a byte is read: a flood costs one accept and one close
                self.hub.stats.connections_refused += 1
                self._closing = True
                refusals.log(logging.WARNING, ip, "refused connection from %s: %s", ip, refusal)
                self.transport.abort()
                return
            self.admitted_ip = ip
        settings = broker.settings
        rate = settings.publish_rate_per_client
        if rate > 0:  # else the class's None
            self._publish_bucket = TokenBucket(rate, max(1.0, 2 * rate))
        # a subscriber may fall behind by this much before QoS 0 is dropped for it
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        connections = broker.connections  # broker.register, inlined (one call less)
        connections.add(self)
        if len(connections) > settings.max_connections:
            self.conn.over_capacity = True
        self._registered = True
        # the machine's first deadline, CONNECT's, on a timer shared with the connections
        # opened at about the same time (deadlines.py); its own timer comes when needed
        due = self._timer_due = self.conn.deadline
        deadlines = broker.connect_deadlines
        if deadlines is None:
            deadlines = broker.connect_deadlines = ConnectDeadlines(self._loop)
        self._deadline_slot = deadlines.add(self, due)

    # asyncio.BufferedProtocol: the loop reads into our buffer, so we choose how much one
    # read may take (uvloop would otherwise hand over up to 256 KiB per read)
    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW  # shared: each read is copied out before the next one starts

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_VIEW[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        # the loop's read budget (turn_budget.py): one add and one compare per read; past
        # it, this read is kept undecoded for a later turn and reading pauses
        budget = self.broker.read_budget
        spent = budget.spent = budget.spent + len(data)
        if spent > budget.limit and budget.over(self, data):
            # it arrived: the client met its keepalive, however long the read waits
            self.conn.last_rx = time.monotonic()
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        """Decode one read and run its packets."""
        size = len(data)
        if size >= READ_CHUNK_BYTES and not self._yielding:
            # uvloop keeps reading a busy socket many times per loop iteration; one full
            # buffer per turn lets the writes this data causes reach subscribers before the
            # next read, instead of piling up (fan-in/fan-out under load)
            self._yielding = True
            self._sync_reading()
            self._loop.call_soon(self._end_turn)
        self.hub.stats.bytes_received += size
        try:
            packets = self.conn.receive_data(data, time.monotonic())
        except DecodeError as exc:
            # act on what came complete before the fault, then on the machine's answer
            self._handle(exc.packets)
            self._act(self.conn.decode_failed(exc))
            return
        if (
            len(packets) == 1
            and type(packets[0]) in DIRECT_PACKETS
            and self._backlog_at >= len(self._backlog)
            and not (self._throttled or self._auth_pending or self._pressured)
        ):
            # a CONNECT or DISCONNECT read alone, as a (re)connecting device sends them,
            # with nothing waiting before it (what `_handle` checks, `_held` inlined):
            # straight to the machine's rule and its answer, without the event list
            self._direct(packets[0])
            return
        self._handle(packets)

    def connection_lost(self, exc: Exception | None) -> None:
        acks = self.__dict__.get("_acks")
        if acks is not None:
            acks.detach()  # the one reference cycle of a connection, broken here
        if not self._registered:
            return  # refused in connection_made: nothing to undo
        self._closing = True
        slot = self._deadline_slot
        if slot:
            # _leave_deadline_slot inlined (every connection of a storm passes here)
            self._deadline_slot = 0
            self.broker.connect_deadlines.remove(self, slot)  # type: ignore[union-attr]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        self._end_session()

    # -- output --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is None or self._closing:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= WRITE_BUFFER_HIGH:
            # a burst (fan-out, retained messages on subscribe) goes to the transport now,
            # so its high-water mark (pause_writing -> writable() False) bounds it; else one
            # tick could pile up any number of bytes here
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _write_now(self, data: bytes) -> None:
        """Straight to the transport, with nothing buffered before it (the caller checks
        `_out` is empty, so order holds)."""
        if self.transport is None or self._closing:
            return
        self.hub.stats.bytes_sent += len(data)
        if not self.transport.is_closing():
            self.transport.write(data)

    def _flush(self) -> None:
        # one write per loop tick: a fan-out burst becomes one syscall per subscriber
        self._flush_scheduled = False
        if self._sent_at or self._acked_at:
            self._observe_latencies()
        if not self._out or self.transport is None:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self._out_bytes = 0
        self.hub.stats.bytes_sent += len(data)
        if not self.transport.is_closing():
            self.transport.write(data)
