"""History on Redis Streams: positions from one counter, one stream per topic.

Publishing is one Lua script per batch (`PUBLISH_SCRIPT`, atomic in Redis): for every
message it INCRs the cluster-wide sequence (the message's position), XADDs the message to
its topic's stream under the entry id "<position>-0" (MAXLEN = the topic's retention count
from the same Retention rules the in-memory log applies), keeps the retained hash current,
and XADDs it to the fan-out stream every node reads. Why stream ids are positions and not
Redis' time ids: a cursor "after position N" is then one XRANGE of the topic's stream, on
any node, without a mapping; age retention is applied by the log's sweeper with XTRIM MINID
(`log_trim`), which every node may do (idempotent).

Batches: every message published in one event-loop turn goes into the batch, and while a
batch is in Redis the next one collects (one script in flight keeps publish order across
batches and gives group commit: one round trip for many messages). A message's position is
set (`Message.log_id`) when Redis answered; if Redis did not (down, restarting, timeout) the
whole batch is refused: `write_failed(message)` is True and nobody acknowledges it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from pushwire.core.histogram import Histogram
from pushwire.core.message import MESSAGE_OVERHEAD
from pushwire.engines.redis import keys
from pushwire.engines.redis.client import UNAVAILABLE
from pushwire.engines.redis.codec import decode, decode_header, encode
from pushwire.model import Message, StoredConsumer, StoredLog, StoredLogEntry

log = logging.getLogger(__name__)

# KEYS: seq, log prefix, topics set, retained hash, fan-out stream
# ARGV: fan-out MAXLEN, then 4 per message: topic, keep (0: not logged), retained op
# ("0" none, "1" set, "2" clear), encoded message. The batch takes consecutive positions
# (one INCRBY); returns the first.
# The fan-out gets ONE entry per call (id = the last position), holding every message of
# the batch as "<position> <length> <encoded message>" records: one XADD, and one entry for
# every node to parse, instead of one per message.
PUBLISH_SCRIPT = """
local records = {}
local fanmax = ARGV[1]
local count = (#ARGV - 1) / 4
local first = redis.call('INCRBY', KEYS[1], count) - count + 1
local seq = first - 1
local i = 2
while i <= #ARGV do
  local topic = ARGV[i]
  local keep = tonumber(ARGV[i + 1])
  local op = ARGV[i + 2]
  local blob = ARGV[i + 3]
  seq = seq + 1
  local id = seq .. '-0'
  if keep > 0 then
    redis.call('XADD', KEYS[2] .. topic, 'MAXLEN', keep, id, 'm', blob)
    redis.call('SADD', KEYS[3], topic)
  end
  if op == '1' then
    redis.call('HSET', KEYS[4], topic, seq .. ' ' .. blob)
  elseif op == '2' then
    redis.call('HDEL', KEYS[4], topic)
  end
  records[#records + 1] = seq .. ' ' .. #blob .. ' '
  records[#records + 1] = blob
  i = i + 4
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', fanmax, seq .. '-0', 'b', table.concat(records))
return first
"""

# messages per script call: with appendfsync always every call waits for one fsync, so a
# call carries as many as are waiting, up to this bound on the script's run time (Redis
# serves nobody meanwhile: about 2-5 ms for 2048 messages)
SCRIPT_BATCH = 2048
# script calls sent together in one pipeline: with a slow fsync (a busy disk) a round trip
# carries up to SCRIPT_BATCH * PIPELINE_CALLS messages, while Redis still serves other
# clients between the calls
PIPELINE_CALLS = 4
# how many refused messages `failed` remembers (a waiter asks right after its sync)
FAILED_MEMORY = 65536


class PublishBatcher:
    """Sends published messages to Redis in batches, one script call in flight."""

    def __init__(
        self,
        client: aioredis.Redis,
        node_id: str,
        fanout_max: int,
        timeout: float,
        keep: Callable[[str], int],
        max_pending_bytes: int,
        max_pending: int,
    ) -> None:
        self._client = client
        self._script = client.register_script(PUBLISH_SCRIPT)
        self.commit_seconds = Histogram()  # seconds per publish script call (/metrics)
        self.node_id = node_id
        self.fanout_max = fanout_max
        self.timeout = timeout
        self.keep = keep  # topic -> messages its history keeps (the log's Retention rules)
        self.max_pending_bytes = max_pending_bytes
        self.max_pending = max_pending  # messages not answered yet, before holding publishers
        self._pending: list[Message] = []
        self._running = False
        self.enqueued = 0  # messages handed to `add`, ever
        self.answered = 0  # of those, how many Redis answered or refused
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.failed: OrderedDict[int, None] = OrderedDict()  # uids of refused messages
        self.pending_bytes = 0
        self._drained: list[Callable[[], None]] = []
        self.refused_total = 0
        self._down_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        # called with each message Redis took (its position set): the fan-out reader
        # hands the publishing node's own object to its subscribers
        self.on_accepted: Callable[[Message], None] = lambda m: None
        self.accepted_position = 0  # the highest position Redis gave a message of ours

    def add(self, message: Message) -> None:
        self._pending.append(message)
        self.enqueued += 1
        self.pending_bytes += len(message.payload)
        if not self._running:
            self._running = True
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def waiting(self) -> int:
        """Messages handed over and not answered yet."""
        return self.enqueued - self.answered

    @property
    def backlogged(self) -> bool:
        return self.waiting > self.max_pending or (
            bool(self.max_pending_bytes) and self.pending_bytes > self.max_pending_bytes
        )

    def when_drained(self, callback: Callable[[], None]) -> None:
        if not self.backlogged:
            callback()
        else:
            self._drained.append(callback)

    async def sync(self) -> None:
        """Resolves once Redis answered (or refused) every message added before the call."""
        if self.answered >= self.enqueued:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self.enqueued, future))
        await future

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while self._pending:
                # yield once: everything published in this loop turn joins the batch
                await asyncio.sleep(0)
                take = SCRIPT_BATCH * PIPELINE_CALLS
                batch = self._pending[:take]
                del self._pending[:take]
                await self._send(batch)
                self.answered += len(batch)
                self.pending_bytes -= sum(len(m.payload) for m in batch)
                self._wake()
        finally:
            self._running = False

    def _args(self, chunk: list[Message]) -> list[str | bytes | int]:
        args: list[str | bytes | int] = [self.fanout_max]
        for m in chunk:
            op = 0 if not m.retain else (1 if m.payload else 2)
            args += [m.topic, self.keep(m.topic), op, encode(m, self.node_id)]
        return args

    async def _call(self, chunks: list[list[Message]]) -> list[int]:
        """One script call per chunk; several go in one pipeline (one round trip, and one
        AOF fsync in Redis for all of them), in order on one connection."""
        keys_ = [keys.SEQ, keys.LOG, keys.TOPICS, keys.RETAINED, keys.FANOUT]
        if len(chunks) == 1:
            return [int(await self._script(keys=keys_, args=self._args(chunks[0])))]
        pipe = self._client.pipeline(transaction=False)
        for chunk in chunks:
            await self._script(keys=keys_, args=self._args(chunk), client=pipe)
        return [int(first) for first in await pipe.execute()]

    async def _send(self, batch: list[Message]) -> None:
        chunks = [batch[i : i + SCRIPT_BATCH] for i in range(0, len(batch), SCRIPT_BATCH)]
        started = time.monotonic()
        try:
            firsts = await asyncio.wait_for(self._call(chunks), self.timeout)
        except asyncio.CancelledError:
            raise
        except UNAVAILABLE as exc:
            self._refuse(batch, exc)
            return
        self.commit_seconds.observe(time.monotonic() - started)
        if self._down_since is not None:
            log.warning("redis: publishing again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
        for chunk, first in zip(chunks, firsts, strict=True):
            for position, m in enumerate(chunk, first):
                m.log_id = position
                self.on_accepted(m)
            self.accepted_position = max(self.accepted_position, first + len(chunk) - 1)

    def _refuse(self, batch: list[Message], exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("redis: publish refused (%s: %s)", type(exc).__name__, exc)
        self.refused_total += len(batch)
        for m in batch:
            self.failed[m.uid] = None
        while len(self.failed) > FAILED_MEMORY:
            self.failed.popitem(last=False)

    def _wake(self) -> None:
        done = self.answered
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for target, future in self._waiters:
            if target <= done:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._waiters = keep
        if (
            self._drained
            and self.waiting * 2 <= self.max_pending
            and (not self.max_pending_bytes or self.pending_bytes * 2 <= self.max_pending_bytes)
        ):
            callbacks, self._drained = self._drained, []
            for callback in callbacks:
                callback()


class RedisHistory:
    """Reads of the history (start-up, cold ranges) and its bookkeeping writes."""

    def __init__(self, client: aioredis.Redis, timeout: float) -> None:
        self._client = client
        self.timeout = timeout
        self._writes: set[asyncio.Task[None]] = set()

    async def epoch(self, fresh: str) -> str:
        """The cluster's epoch: `fresh` when this node is the first, else the stored one."""
        await self._client.set(keys.EPOCH, fresh, nx=True)
        stored: Any = await self._client.get(keys.EPOCH)
        return stored.decode() if stored is not None else fresh

    async def load(self, epoch: str, upto: int) -> StoredLog:
        """Every topic's entries up to position `upto` (the fan-out reader starts after
        it), as cold entries: payloads stay in Redis until a reader needs them."""
        client = self._client
        out = StoredLog(epoch=epoch, last_id=upto)
        # redis-py types its answers loosely: bytes here (decode_responses=False)
        members: Any = await client.smembers(keys.TOPICS)
        topics = sorted(t.decode() for t in members)
        entries: list[StoredLogEntry] = []
        for topic in topics:
            found: Any = await client.xrange(keys.LOG + topic, "-", keys.stream_id(upto))
            for entry_id, fields in found:
                blob = fields[b"m"]
                header, start = decode_header(blob)
                size = len(blob) - start + len(topic) + MESSAGE_OVERHEAD
                entries.append(
                    StoredLogEntry(
                        keys.position_of(entry_id), topic, float(header.get("c", 0.0)), size
                    )
                )
        entries.sort(key=lambda e: e.id)
        out.entries = entries
        evicted: Any = await client.hgetall(keys.EVICTED)
        for topic_b, value in evicted.items():
            upto_s, time_s = value.decode().split(" ", 1)
            out.evicted[topic_b.decode()] = (int(upto_s), float(time_s))
        consumers: Any = await client.hgetall(keys.CONSUMERS)
        for key, value in consumers.items():
            owner, name, flt = key.decode().split("\0", 2)
            acked, used = value.decode().split(" ", 1)
            out.consumers.append(StoredConsumer(owner, name, flt, int(acked), float(used)))
        return out

    async def read(self, ranges: list[tuple[str, int, int]]) -> list[Message]:
        out: list[Message] = []
        for topic, first, last in ranges:
            found: Any = await asyncio.wait_for(
                self._client.xrange(keys.LOG + topic, keys.stream_id(first), keys.stream_id(last)),
                self.timeout,
            )
            for entry_id, fields in found:
                message = decode(fields[b"m"])
                message.log_id = keys.position_of(entry_id)
                out.append(message)
        return out

    # -- bookkeeping writes: best effort, in the background -------------------------

    def trim(self, topic: str, upto_id: int, upto_time: float) -> None:
        async def run() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.xtrim(keys.LOG + topic, minid=keys.stream_id(upto_id + 1))
            pipe.hset(keys.EVICTED, topic, f"{upto_id} {upto_time!r}")
            await pipe.execute()

        self._spawn(run(), "trim")

    def consumer_put(self, owner: str, name: str, flt: str, acked: int, used: float) -> None:
        key = f"{owner}\0{name}\0{flt}"
        self._spawn(self._client.hset(keys.CONSUMERS, key, f"{acked} {used!r}"), "consumer")

    def consumer_delete(self, owner: str, name: str, flt: str) -> None:
        self._spawn(self._client.hdel(keys.CONSUMERS, f"{owner}\0{name}\0{flt}"), "consumer")

    def _spawn(self, coro: object, what: str) -> None:
        async def guarded() -> None:
            try:
                await asyncio.wait_for(coro, self.timeout)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                log.warning("redis: %s write lost (%s)", what, exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def drain(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
