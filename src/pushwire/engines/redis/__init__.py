"""engine=redis: N pushwire processes or nodes on one Redis behave as one server.

Composes the parts: `PublishBatcher` (history.py: positions, topic streams, retained hash
and fan-out in one Lua script per batch), `FanoutReader` (broker.py: every node routes
every message to its local subscribers in position order), `RedisHistory` (start-up
position, cold reads, scans below the start, trims, consumer cursors) and the retained
hash (retained.py).

The hub does not route a message when it is published: `broker_publish` sends it to Redis
and the hub routes it when the fan-out reader hands it back (`start_fanout`), on every node
the same way. `durable` is True: QoS 1/2 acks and HTTP answers wait for `sync()`, i.e. for
Redis' answer, and a message Redis did not take is `write_failed` (refused, never acked).

Persistent MQTT sessions (the SessionStore port) are `self.sessions`, a RedisSessionStore
(engines/redis/sessions.py) on its own connection pool, so session writes never wait behind
a publish script: every session method is delegated to it, `sync()` waits for both, and a
refusal by either is a refusal (`write_failed`, `session_failed_since`). The MQTT handover
(mqtt/handover.py, server.make_handover) finds the store under `engine.sessions`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

from pushwire.config import Settings, generated_node_id
from pushwire.engines.memory import MemoryEngine
from pushwire.engines.redis.broker import FanoutReader
from pushwire.engines.redis.client import connect
from pushwire.engines.redis.history import PublishBatcher, RedisHistory
from pushwire.engines.redis.retained import load_retained
from pushwire.engines.redis.sessions import RedisSessionStore
from pushwire.model import (
    FailureListener,
    LogScan,
    Message,
    QueueState,
    StoredLog,
    StoredQueueEntry,
    StoredSession,
    StoredSubscription,
)

__all__ = ["RedisEngine"]


class RedisEngine(MemoryEngine):
    """The Redis engine: messages (history, fan-out, retained) through the publish
    batcher, persistent sessions through `sessions`; nothing is kept only in memory."""

    name = "redis"
    durable = True
    keeps_queue = False
    keeps_log = True  # entries out of memory are read back from the topic streams
    assigns_positions = True  # Message.log_id comes from Redis (one order for the cluster)

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.node_id = settings.node_id or generated_node_id()
        timeout = settings.redis_timeout
        pool = settings.redis_max_connections
        self._client = connect(settings.redis_url, timeout, max_connections=pool)
        # blocking XREADs get their own connection (and a timeout that covers the block)
        self._reader_client = connect(settings.redis_url, timeout, blocking_reads=1.0)
        self.history = RedisHistory(self._client, timeout)
        self.batcher = PublishBatcher(
            self._client,
            self.node_id,
            settings.redis_fanout_max,
            timeout,
            lambda topic: settings.log_max_messages,
            settings.store_max_pending_bytes,
            settings.redis_max_pending,
        )
        self.commit_seconds = self.batcher.commit_seconds  # per publish script call
        self.reader = FanoutReader(self._reader_client, self.node_id, settings.redis_reconnect_max)
        self.reader.own_batches = self.batcher.sent
        self._epoch = ""
        self._start_position = 0
        # sessions get their own pool: their MULTI/EXEC per tick and the publish scripts
        # do not queue behind each other
        self._sessions_client = connect(settings.redis_url, timeout, max_connections=pool)
        self.sessions = RedisSessionStore(
            self._sessions_client,
            node_id=self.node_id,
            takeover_timeout=settings.cluster_takeover_timeout,
        )
        # session writes record how far this node has routed: a node that takes one of its
        # sessions replays the fan-out from there (mqtt/handover.py)
        self.sessions.position = self.reader.routed_position

    def bind_retention(self, keep: Callable[[str], int]) -> None:
        """Messages each topic's stream keeps: the message log's Retention rules."""
        self.batcher.keep = keep

    async def open(self) -> None:
        # the fan-out position first: what the load below misses comes through the reader
        self._start_position = await self.reader.position()
        self._epoch = await self.history.epoch(secrets.token_hex(6))
        self.reader.epoch = self._epoch

    async def close(self) -> None:
        await self.batcher.close()
        await self.reader.stop()
        await self.history.drain()
        await self.sessions.close()
        await self._client.aclose()
        await self._reader_client.aclose()
        await self._sessions_client.aclose()

    # -- Broker ------------------------------------------------------------------------

    def start_fanout(
        self, deliver: Callable[[Message], None], lost: Callable[[str], None]
    ) -> Awaitable[None]:
        self.reader.on_lost = lost
        self.reader.start(self._start_position, deliver)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def bind_pass_by(self, pass_by: Callable[[str, int, float, int], bool]) -> None:
        """Hub.pass_by: messages no session of this node routes are not decoded."""
        self.reader.pass_by = pass_by

    def broker_publish(self, message: Message) -> None:
        self.batcher.add(message)

    @property
    def missed(self) -> int:
        return self.reader.missed

    # -- SessionStore: delegated to the Redis session store --------------------------------

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
        self, client_id: str, seq: int, wire_id: int | None, state: QueueState
    ) -> None:
        self.sessions.queue_update(client_id, seq, wire_id, state)

    def queue_delete(self, client_id: str, seq: int) -> None:
        self.sessions.queue_delete(client_id, seq)

    def inbound_qos2_put(self, client_id: str, packet_id: int) -> None:
        self.sessions.inbound_qos2_put(client_id, packet_id)

    def inbound_qos2_delete(self, client_id: str, packet_id: int) -> None:
        self.sessions.inbound_qos2_delete(client_id, packet_id)

    # -- RetainedStore: the publish script keeps the hash; nothing to write here ---------

    async def load_retained(self) -> list[Message]:
        return await load_retained(self._client)

    # -- Journal -----------------------------------------------------------------------

    async def sync(self) -> None:
        # a published message is queued for this node's offline sessions when the fan-out
        # reader hands it back, after Redis answered the publish script: an ack covers
        # those queue writes too, so wait for the reader to pass our last position, then
        # for the session writes issued until then
        await self.batcher.sync()
        await self.reader.reached(self.batcher.accepted_position)
        await self.sessions.sync()

    def write_failed(self, message: Message) -> bool:
        # refused by the publish script, or its queue entry in a session was not written
        return message.uid in self.batcher.failed or self.sessions.write_failed(message)

    def failure_mark(self) -> int:
        return self.sessions.failure_mark()

    def session_failed_since(self, client_id: str, mark: int) -> bool:
        return self.sessions.session_failed_since(client_id, mark)

    def add_failure_listener(self, listener: FailureListener) -> None:
        # refused messages were never given a position (no hole in the log to report);
        # failed session writes are reported by the session store
        self.sessions.add_failure_listener(listener)

    @property
    def pending_bytes(self) -> int:
        return self.batcher.pending_bytes

    @property
    def backlogged(self) -> bool:
        return self.batcher.backlogged

    def when_drained(self, callback: Callable[[], None]) -> None:
        self.batcher.when_drained(callback)

    # -- History -----------------------------------------------------------------------

    async def load_log(self) -> StoredLog:
        return await self.history.load(self._epoch, self._start_position)

    def log_reset(self, epoch: str) -> None:
        return None  # the epoch is Redis' (open); it is never reset from a node

    def log_append(self, message: Message) -> None:
        return None  # appended by the publish script

    def log_trim(self, topic: str, upto_id: int, upto_time: float) -> None:
        self.history.trim(topic, upto_id, upto_time)

    def log_consumer_put(
        self, owner: str, name: str, flt: str, acked: int, last_used: float
    ) -> None:
        self.history.consumer_put(owner, name, flt, acked, last_used)

    def log_consumer_delete(self, owner: str, name: str, flt: str) -> None:
        self.history.consumer_delete(owner, name, flt)

    async def log_read(self, ranges: list[tuple[str, int, int]]) -> list[Message]:
        return await self.history.read(ranges)

    async def log_scan(self, flt: str, after: int, upto: int, limit: int) -> LogScan:
        # start-up loads no history (load_log): reads below the start position come here
        return await self.history.scan(flt, after, upto, limit)
