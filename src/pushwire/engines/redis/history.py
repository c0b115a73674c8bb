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
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from pushwire.core.histogram import Histogram
from pushwire.core.topics import matches
from pushwire.engines.redis import keys
from pushwire.engines.redis.batch import topic_messages
from pushwire.engines.redis.client import UNAVAILABLE
from pushwire.engines.redis.codec import decode, encode
from pushwire.model import LogScan, Message, StoredConsumer, StoredLog

log = logging.getLogger(__name__)

# KEYS: seq, log prefix, topics set, retained hash, fan-out stream
# ARGV: fan-out MAXLEN, message count, node id, batch key, the fan-out records, group
# count; then 4 per topic group: topic, keep (MAXLEN in entries), the topic's last index
# in the batch, its records; then 4 per retained message: topic, index, op ("1" set,
# "2" clear), encoded message. Everything is framed by pushwire (batch.py), with indexes
# relative to the batch: the script only takes the positions (one INCRBY) and writes one
# entry per topic and one fan-out entry, so Redis' work per message is a memcpy, not a
# command. Returns the first position.
PUBLISH_SCRIPT = """
local count = tonumber(ARGV[2])
local first = redis.call('INCRBY', KEYS[1], count) - count + 1
local i = 7
for g = 1, tonumber(ARGV[6]) do
  local topic = ARGV[i]
  redis.call('XADD', KEYS[2] .. topic, 'MAXLEN', ARGV[i + 1],
    (first + tonumber(ARGV[i + 2])) .. '-0', 'f', first, 'm', ARGV[i + 3])
  redis.call('SADD', KEYS[3], topic)
  i = i + 4
end
while i <= #ARGV do
  if ARGV[i + 2] == '1' then
    redis.call('HSET', KEYS[4], ARGV[i], (first + tonumber(ARGV[i + 1])) .. ' ' .. ARGV[i + 3])
  else
    redis.call('HDEL', KEYS[4], ARGV[i])
  end
  i = i + 4
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[1], (first + count - 1) .. '-0',
  'f', first, 'n', ARGV[3], 'k', ARGV[4], 'b', ARGV[5])
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
# seconds trims of the history are collected before they go to Redis together
TRIM_DELAY = 0.1
# topic streams read per round trip by a read below the start-up position (`scan`)
LOAD_TOPICS_PER_TRIP = 256
# topics set members per SSCAN call when a wildcard read below the start lists topics
SCAN_COUNT = 1000
# characters a Redis glob pattern treats specially
_GLOB_SPECIAL = re.compile(r"[\\*?\[\]]")
# chunks sent and not yet seen by this node's fan-out reader, at most
SENT_MEMORY = 1024
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
        # batch key -> the chunk sent under it: the fan-out reader hands the publishing
        # node's own objects to its subscribers (no decoding of its own messages). Keys
        # start at a random point: a restarted worker keeps its node id, and must not take
        # an entry of its previous life for one of its own
        self.sent: dict[int, list[Message]] = {}
        self._key = secrets.randbits(40) << 20
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
        # `waiting` inlined: every routed message asks (Hub.route_along)
        return self.enqueued - self.answered > self.max_pending or (
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

    def _args(self, key: int, chunk: list[Message]) -> list[str | bytes | int]:
        """The script's arguments for one chunk: every message encoded once, its bytes
        framed into the fan-out records and into its topic's records."""
        fan: list[bytes] = []
        groups: dict[str, tuple[list[int], list[bytes]]] = {}
        retained: list[str | bytes | int] = []
        for index, m in enumerate(chunk):
            blob = encode(m)
            fan.append(b"%d " % len(blob))
            fan.append(blob)
            group = groups.get(m.topic)
            if group is None:
                group = groups[m.topic] = ([index], [])
            group[0][0] = index
            group[1].append(b"%d %d " % (index, len(blob)))
            group[1].append(blob)
            if m.retain:
                retained += [m.topic, index, 1, blob] if m.payload else [m.topic, index, 2, b""]
        args: list[str | bytes | int] = [
            self.fanout_max,
            len(chunk),
            self.node_id,
            key,
            b"".join(fan),
            0,
        ]
        logged = 0
        for topic, (last, framed) in groups.items():
            keep = self.keep(topic)
            if keep > 0:
                args += [topic, keep, last[0], b"".join(framed)]
                logged += 1
        args[5] = logged
        return args + retained

    async def _call(self, chunks: list[tuple[int, list[Message]]]) -> list[int]:
        """One script call per chunk; several go in one pipeline (one round trip, and one
        AOF fsync in Redis for all of them), in order on one connection."""
        keys_ = [keys.SEQ, keys.LOG, keys.TOPICS, keys.RETAINED, keys.FANOUT]
        if len(chunks) == 1:
            key, chunk = chunks[0]
            return [int(await self._script(keys=keys_, args=self._args(key, chunk)))]
        pipe = self._client.pipeline(transaction=False)
        for key, chunk in chunks:
            await self._script(keys=keys_, args=self._args(key, chunk), client=pipe)
        return [int(first) for first in await pipe.execute()]

    async def _send(self, batch: list[Message]) -> None:
        chunks: list[tuple[int, list[Message]]] = []
        for i in range(0, len(batch), SCRIPT_BATCH):
            self._key += 1
            chunk = batch[i : i + SCRIPT_BATCH]
            # this node's fan-out reader hands these objects out when their entry comes
            # by (it may come by before the answer below is handled)
            self.sent[self._key] = chunk
            chunks.append((self._key, chunk))
        while len(self.sent) > SENT_MEMORY:
            del self.sent[next(iter(self.sent))]
        started = time.monotonic()
        try:
            firsts = await asyncio.wait_for(self._call(chunks), self.timeout)
        except asyncio.CancelledError:
            raise
        except UNAVAILABLE as exc:
            for key, _ in chunks:
                self.sent.pop(key, None)
            self._refuse(batch, exc)
            return
        self.commit_seconds.observe(time.monotonic() - started)
        if self._down_since is not None:
            log.warning("redis: publishing again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
        for (_, chunk), first in zip(chunks, firsts, strict=True):
            for position, m in enumerate(chunk, first):
                m.log_id = position
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


def _trimmed_below(info: Any) -> int:
    """A bound on the highest position MAXLEN/XTRIM removed from a topic stream: when the
    stream dropped any entry (entries-added > length, XINFO STREAM), everything of the
    topic below its first kept message is gone, so report up to just below it (Redis
    does not record the highest trimmed id). 0: nothing was trimmed, or no stream."""
    if not isinstance(info, dict) or info.get("entries-added", 0) <= info.get("length", 0):
        return 0
    first = info.get("first-entry")
    if not first:  # everything trimmed: up to the last id the stream ever had
        last = info.get("last-generated-id")
        return keys.position_of(last) if last else 0
    entry_id, fields = first
    for position, _blob in topic_messages(entry_id, fields):
        return position - 1
    return 0


class RedisHistory:
    """Reads of the history (start-up, cold ranges) and its bookkeeping writes."""

    def __init__(self, client: aioredis.Redis, timeout: float) -> None:
        self._client = client
        self.timeout = timeout
        self._writes: set[asyncio.Task[None]] = set()
        self._trims: dict[str, tuple[int, float]] = {}  # topic -> (upto, its time), unsent
        self._trim_timer: asyncio.TimerHandle | None = None

    async def epoch(self, fresh: str) -> str:
        """The cluster's epoch: `fresh` when this node is the first, else the stored one."""
        await self._client.set(keys.EPOCH, fresh, nx=True)
        stored: Any = await self._client.get(keys.EPOCH)
        return stored.decode() if stored is not None else fresh

    async def load(self, epoch: str, upto: int) -> StoredLog:
        """The log as a node starts with it: the epoch, the position the fan-out reader
        starts after (`upto`) and the consumer cursors, and no entry: positions up to
        `upto` stay in Redis (`unloaded_upto`) and `scan` reads them when a reader asks.
        A node's start costs the same with ten topics or a million."""
        out = StoredLog(epoch=epoch, last_id=upto, unloaded_upto=upto)
        consumers: Any = await self._client.hgetall(keys.CONSUMERS)
        for key, value in consumers.items():
            owner, name, flt = key.decode().split("\0", 2)
            acked, used = value.decode().split(" ", 1)
            out.consumers.append(StoredConsumer(owner, name, flt, int(acked), float(used)))
        return out

    async def topics(self, flt: str) -> list[str]:
        """The topics with a history stream that `flt` matches: itself when it has no
        wildcard, else one SSCAN of the topics set (narrowed by the filter's literal
        prefix, then matched level by level)."""
        if "+" not in flt and "#" not in flt:
            return [flt]
        prefix = flt[: min(i for i in (flt.find("+"), flt.find("#")) if i >= 0)]
        pattern = _GLOB_SPECIAL.sub(r"\\\g<0>", prefix) + "*"
        found = []
        async for raw in self._client.sscan_iter(keys.TOPICS, match=pattern, count=SCAN_COUNT):
            topic = raw.decode() if isinstance(raw, bytes) else str(raw)
            if matches(flt, topic):
                found.append(topic)
        return sorted(found)

    async def scan(self, flt: str, after: int, upto: int, limit: int) -> LogScan:
        """`_scan` in a task of its own: the HTTP layer runs a handler eagerly, outside
        any task, and redis-py's timeouts need one."""
        return await asyncio.ensure_future(self._scan(flt, after, upto, limit))

    async def _scan(self, flt: str, after: int, upto: int, limit: int) -> LogScan:
        """Up to `limit` messages of the topics matching `flt` at positions after..upto,
        oldest first, and each topic's eviction mark: the higher of `pw:evicted` (the
        logs' trims) and the bound from what the stream's MAXLEN dropped (which no node's
        log may have counted; see `_trimmed_below`), so a gap below the start is always
        reported: where the bound is not exact, a reader between the last trimmed and
        the first kept message of a topic is told of a gap it may not have."""
        out = LogScan()
        if upto <= after:
            return out
        topics = await self.topics(flt)
        found: list[Message] = []
        for at in range(0, len(topics), LOAD_TOPICS_PER_TRIP):
            part = topics[at : at + LOAD_TOPICS_PER_TRIP]
            pipe = self._client.pipeline(transaction=False)
            for topic in part:
                # an entry's id is its last position, so the entry holding `upto` may
                # have a higher id: read the one after `upto` too (as `read` does);
                # `limit` entries hold at least `limit` messages
                stream = keys.LOG + topic
                pipe.xrange(stream, keys.stream_id(after + 1), keys.stream_id(upto), count=limit)
                pipe.xrange(stream, "(" + keys.stream_id(upto), "+", count=1)
                pipe.hget(keys.EVICTED, topic)
                pipe.xinfo_stream(stream)
            answers: Any = await asyncio.wait_for(pipe.execute(raise_on_error=False), self.timeout)
            for n, topic in enumerate(part):
                entries, following, mark, info = answers[4 * n : 4 * n + 4]
                for failed in (entries, following, mark):
                    if isinstance(failed, Exception):
                        raise failed
                for entry_id, fields in entries + following:
                    for position, blob in topic_messages(entry_id, fields):
                        if after < position <= upto:
                            message = decode(blob)
                            message.log_id = position
                            found.append(message)
                evicted = (0, 0.0)
                if mark is not None:
                    upto_s, time_s = mark.decode().split(" ", 1)
                    evicted = (int(upto_s), float(time_s))
                deleted = _trimmed_below(info)
                if deleted > evicted[0]:
                    evicted = (deleted, evicted[1])
                if evicted[0]:
                    out.evicted[topic] = evicted
        found.sort(key=lambda m: m.log_id or 0)
        out.messages = found[:limit]
        return out

    async def read(self, ranges: list[tuple[str, int, int]]) -> list[Message]:
        """The messages at positions first..last of each topic. An entry's id is its last
        position, so the entry holding `last` may have a higher id: read the one after
        `last` too."""
        if not ranges:
            return []
        pipe = self._client.pipeline(transaction=False)
        for topic, first, last in ranges:
            pipe.xrange(keys.LOG + topic, keys.stream_id(first), keys.stream_id(last))
            pipe.xrange(keys.LOG + topic, "(" + keys.stream_id(last), "+", count=1)
        found: Any = await asyncio.wait_for(pipe.execute(), self.timeout)
        out: list[Message] = []
        for n, (_topic, first, last) in enumerate(ranges):
            for entry_id, fields in found[2 * n] + found[2 * n + 1]:
                for position, blob in topic_messages(entry_id, fields):
                    if first <= position <= last:
                        message = decode(blob)
                        message.log_id = position
                        out.append(message)
        return out

    # -- bookkeeping writes: best effort, in the background -------------------------

    def trim(self, topic: str, upto_id: int, upto_time: float) -> None:
        """Collected for TRIM_DELAY and sent as one transaction: with many topics the log
        asks for a trim at nearly every message it evicts (its trim step is counted in
        positions, which all topics share), and one Redis call per message on every node
        was most of what the node spent on history."""
        known = self._trims.get(topic)
        if known is None or upto_id > known[0]:
            self._trims[topic] = (upto_id, upto_time)
        if self._trim_timer is None:
            self._trim_timer = asyncio.get_running_loop().call_later(TRIM_DELAY, self._flush_trims)

    def _flush_trims(self) -> None:
        self._trim_timer = None
        trims, self._trims = self._trims, {}
        if not trims:
            return

        async def run() -> None:
            pipe = self._client.pipeline(transaction=True)
            for topic, (upto_id, upto_time) in trims.items():
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
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._flush_trims()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
