"""The message log: what was published to each topic, with ids a client can resume from.

Every message routed by the hub (MQTT or HTTP, except `$` topics) is appended here by a hub
observer. Ids come from ONE increasing sequence for the whole store, so they increase
within every topic and a cursor over a wildcard filter is a single number. The store has an
`epoch`, a random token made with it: a client that says "I had id N of epoch E" either gets
exactly what came after N, or is told it has a gap (the epoch changed because the log was
lost, or messages after N were evicted by retention). A gap is never silent.

Retention is per topic, by count and by age (defaults from settings, per-pattern rules:
first match wins). Evicted ids are remembered per topic (`evicted_upto`) so a read can tell
"nothing happened" from "you missed something". Messages past their expiry (`ttl`) are not
returned by reads. An entry the engine could not store becomes a hole (`holes`, kept by the
engine too): it leaves the log, and a read whose cursor crosses it reports a gap.

Memory is bounded in bytes too (`MemoryBudget`: per topic and for the whole log, counted
with `approx_size`). Over budget, the oldest entries leave memory: with an engine that
keeps the log on disk (SQLite) they become "cold", a few bytes of id, time and size in
compact arrays, and a read that reaches them loads them back (`fetch`/`load`); that is no
gap. With the memory engine there is nowhere to keep them: they are evicted, and readers
behind them get a gap. At start-up a stored log comes back all cold, or (an engine that
starts lazily, `LazyHistory`: engine=redis) not at all: positions up to `unloaded_upto`
are read from the engine when a read reaches below it (`log_scan`).

Live readers register a `Listener` under a filter. Listeners of the same filter share one
`ReaderGroup` (core/readers.py), and each group is one subscriber in the hub's subscription
trie, next to the MQTT sessions (`ReaderPlane`: `Hub.add_readers`): 10,000 long-polls on
one filter are one trie entry, not 10,000, and the trie changes only when a filter's first
reader arrives or its last one leaves. There is one routing plane: a publish matches its
topic once, in the hub's tree; the hub routes it to the sessions, hands it to this log
(its observer), which gives it its id, then wakes the groups the topic's cached route
lists (`Hub.readers_of`). Every member's `notify(entry)` runs synchronously (it writes
pre-encoded bytes to its connection or keeps the entry in a bounded buffer; nothing polls,
nothing spins, no task wakes per reader). A log made without a hub (tests, benches) keeps
its groups in a hub of its own that routes nothing else.

Transport-agnostic: imports nothing from http/ or mqtt/. Persistence goes through the
engine's `log_*` methods (write-behind, the same group commit as everything else).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import logging
import secrets
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

from pushwire.core.consumers import Consumers
from pushwire.core.hub import Hub
from pushwire.core.message import MESSAGE_OVERHEAD, Message, approx_size, bump_uid_floor
from pushwire.core.readers import Listener, ReaderGroup, ReaderPlane
from pushwire.core.stats import Stats
from pushwire.core.topics import matches
from pushwire.model import WriteFailure
from pushwire.ports import Engine, LazyHistory

log = logging.getLogger(__name__)

T = TypeVar("T")


def new_epoch() -> str:
    """A fresh epoch token (12 hex digits)."""
    return secrets.token_hex(6)


# -- configuration ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of one topic's log is kept. `max_age` in seconds; 0 means no age limit."""

    max_messages: int = 1000
    max_age: float = 12 * 3600.0


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """A per-pattern override: topics matching `filter` keep these limits (None: default)."""

    filter: str
    max_messages: int | None = None
    max_age: float | None = None


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """Bytes of log entries held in memory (`approx_size`), per topic and for the whole
    log; 0: no byte limit. What does not fit goes cold (engine keeps the log) or is
    evicted (memory engine)."""

    topic_bytes: int = 8 * 1024 * 1024
    total_bytes: int = 64 * 1024 * 1024


# -- cursors ----------------------------------------------------------------------------

CursorKind = Literal["id", "all", "latest", "time"]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a reader starts. `id`: after message `id` (of `epoch`, when known); `all`: from
    the oldest message kept; `latest`: only what comes next; `time`: messages created at or
    after `time` (Unix seconds)."""

    kind: CursorKind
    id: int = 0
    epoch: str | None = None
    time: float = 0.0

    @staticmethod
    def after(id_: int, epoch: str | None = None) -> Cursor:
        return Cursor("id", id_, epoch)


ALL = Cursor("all")
LATEST = Cursor("latest")


def format_cursor(epoch: str, id_: int) -> str:
    """The opaque-looking cursor token handed to clients: `EPOCH:ID`."""
    return f"{epoch}:{id_}"


# -- entries and listeners --------------------------------------------------------------


class LogEntry:
    """One logged message. `wire` caches encodings (keyed by format) so a message is
    encoded once however many readers of that format it reaches. `size`: its memory cost
    (`approx_size`), what the byte budgets count."""

    __slots__ = ("id", "message", "size", "wire")

    def __init__(self, id_: int, message: Message, size: int | None = None) -> None:
        self.id = id_
        self.message = message
        self.size = approx_size(message) if size is None else size
        self.wire: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"LogEntry({self.id}, {self.message.topic!r})"


class Settling(Protocol):
    """A listener that wrote its answer during a wake and settles the rest after it."""

    def settle(self) -> None:
        """The bookkeeping of an answer already written (see `MessageLog._wake`)."""


@dataclass(slots=True)
class ReadResult:
    entries: list[LogEntry]
    # the id to resume after (the last entry returned, or the log's last id)
    next_id: int
    # True when messages the reader asked for are gone (evicted, or another epoch)
    gap: bool
    # True when `limit` cut the reply: more messages follow `next_id`
    more: bool
    epoch: str
    # entries only on disk, as (topic, first_id, last_id) ranges, and how many: `entries`
    # is complete once `MessageLog.load` has read them back (empty: nothing to load)
    cold: list[tuple[str, int, int]] = field(default_factory=list)
    cold_count: int = 0
    # a read below `MessageLog.unloaded_upto` (filter, limit, floor, max_bytes): `load`
    # asks the engine. `cold` names the range too, so every reader that checks `cold`
    # goes through `load`
    unloaded: tuple[str, int, int, int] | None = None

    @property
    def cursor(self) -> str:
        return format_cursor(self.epoch, self.next_id)


@dataclass(frozen=True, slots=True)
class Start:
    """Where a reader starts (`MessageLog.resolve`)."""

    after: int  # read messages with ids above this
    gap: bool  # the cursor itself says messages are gone (another epoch, reset log)
    floor: int = 0  # evictions up to this id are not a gap for this reader


# -- per-topic storage ------------------------------------------------------------------


class _ColdRun:
    """The oldest entries of a topic that live on disk only: id, creation time and size in
    compact arrays (24 bytes each), oldest first. `head` skips popped ones; the arrays are
    compacted when more than half of them is dead."""

    __slots__ = ("head", "ids", "sizes", "times")

    def __init__(self) -> None:
        self.ids = array("q")
        self.times = array("d")
        self.sizes = array("q")
        self.head = 0

    def __len__(self) -> int:
        return len(self.ids) - self.head

    def append(self, id_: int, created_at: float, size: int) -> None:
        self.ids.append(id_)
        self.times.append(created_at)
        self.sizes.append(size)

    def popleft(self) -> tuple[int, float]:
        i = self.head
        out = (self.ids[i], self.times[i])
        self.head = i + 1
        if self.head == len(self.ids):
            self.ids, self.times, self.sizes, self.head = array("q"), array("d"), array("q"), 0
        elif self.head > 64 and self.head * 2 > len(self.ids):
            del self.ids[: self.head], self.times[: self.head], self.sizes[: self.head]
            self.head = 0
        return out

    def first_time(self) -> float:
        return self.times[self.head]

    def index_after(self, after_id: int) -> int:
        return bisect.bisect_right(self.ids, after_id, self.head)

    def remove(self, id_: int) -> bool:
        """Delete the entry `id_` wherever it is in the run (rare: a refused write)."""
        i = bisect.bisect_left(self.ids, id_, self.head)
        if i == len(self.ids) or self.ids[i] != id_:
            return False
        del self.ids[i], self.times[i], self.sizes[i]
        return True


# the cold run of every topic that has none (never appended to)
_NO_COLD = _ColdRun()

# an item of a read plan: (id, the entry when in memory else None, its topic log, size)
_Planned = tuple[int, "LogEntry | None", "_TopicLog", int]


class _TopicLog:
    __slots__ = (
        "cold",
        "entries",
        "evicted_time",
        "evicted_upto",
        "holes",
        "hot_bytes",
        "in_heap",
        "retention",
        "topic",
        "trim_step",
        "trimmed_upto",
    )

    def __init__(self, topic: str, retention: Retention) -> None:
        self.topic = topic
        self.retention = retention
        # in memory, newest last; `cold` holds the older ones that are on disk only
        self.entries: deque[LogEntry] = deque()
        self.cold = _NO_COLD  # a run of its own once something goes cold (see `go_cold`)
        self.hot_bytes = 0
        self.in_heap = False  # has an item in MessageLog._oldest
        # highest id evicted from this topic (0: none) and its creation time
        self.evicted_upto = 0
        self.evicted_time = 0.0
        # highest evicted id the engine has been told to delete, and how far evictions run
        # ahead of it before the engine is told (a tenth of the count bound)
        self.trimmed_upto = 0
        self.trim_step = max(1, retention.max_messages // 10)
        # ids issued to this topic that the engine could not store (sorted; rare)
        self.holes: list[int] = []

    def hole_within(self, low: int, high: int) -> bool:
        """A hole with low < id <= high."""
        holes = self.holes
        if not holes:
            return False
        i = bisect.bisect_right(holes, low)
        return i < len(holes) and holes[i] <= high

    def __len__(self) -> int:
        return len(self.entries) + len(self.cold)

    def go_cold(self, id_: int, created_at: float, size: int) -> None:
        """Keep an entry on disk only (oldest first)."""
        if self.cold is _NO_COLD:
            self.cold = _ColdRun()
        self.cold.append(id_, created_at, size)

    def drop_cold(self, id_: int) -> bool:
        """Forget one cold entry (the store refused it); True when it was there."""
        cold = self.cold
        if not cold.remove(id_):
            return False
        if not len(cold):
            self.cold = _NO_COLD
        return True

    def pop_cold(self) -> tuple[int, float]:
        out = self.cold.popleft()
        if not len(self.cold):
            self.cold = _NO_COLD  # most topics never go cold: no arrays for them
        return out

    def after(self, after_id: int) -> Iterator[_Planned]:
        """Entries with id > after_id, oldest first, cold ones with entry None."""
        cold = self.cold
        if len(cold):
            ids, sizes = cold.ids, cold.sizes
            for i in range(cold.index_after(after_id), len(ids)):
                yield ids[i], None, self, sizes[i]
        entries = self.entries
        if not entries or entries[-1].id <= after_id:
            return
        start = 0
        if entries[0].id <= after_id:
            start = bisect.bisect_right(entries, after_id, key=_entry_id)
        for j in range(start, len(entries)):
            e = entries[j]
            yield e.id, e, self, e.size

    def first_at_or_after(self, t: float) -> int | None:
        cold = self.cold
        for i in range(cold.head, len(cold.ids)):
            if cold.times[i] >= t:
                return cold.ids[i]
        for entry in self.entries:
            if entry.message.created_at >= t:
                return entry.id
        return None


def _size_of(message: Message) -> int:
    """`approx_size`, with the common properties (text values: an HTTP publish's content
    type) counted inline instead of by the recursive walk."""
    props = message.properties
    size = len(message.payload) + len(message.topic) + MESSAGE_OVERHEAD
    if props:
        for key, value in props.items():
            if type(value) is str:
                size += len(key) + len(value)
            else:
                return approx_size(message)
    return size


# a byte room no budget gives (a budget of 0 bytes is no limit)
_UNBOUNDED = 1 << 62

# a LogEntry without its __init__'s frame (the observer sets its four slots itself)
_new_entry = cast("Callable[[type[LogEntry]], LogEntry]", object.__new__)


def _entry_id(entry: LogEntry) -> int:
    return entry.id


def _planned_id(item: _Planned) -> int:
    return item[0]


class _Node:
    __slots__ = ("children", "topic_log")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.topic_log: _TopicLog | None = None


class _TopicTree:
    """Topics by level, so a wildcard filter finds its topics without scanning them all."""

    def __init__(self) -> None:
        self.root = _Node()
        self.by_topic: dict[str, _TopicLog] = {}

    def add(self, tlog: _TopicLog) -> None:
        node = self.root
        for level in tlog.topic.split("/"):
            node = node.children.setdefault(level, _Node())
        node.topic_log = tlog
        self.by_topic[tlog.topic] = tlog

    def find(self, flt: str) -> list[_TopicLog]:
        if "+" not in flt and "#" not in flt:
            t = self.by_topic.get(flt)
            return [t] if t is not None else []
        out: list[_TopicLog] = []
        self._walk(self.root, flt.split("/"), 0, out)
        return out

    def _walk(self, node: _Node, levels: list[str], i: int, out: list[_TopicLog]) -> None:
        # a loop over an explicit stack, not recursion: topic depth costs time, not a
        # RecursionError (whatever max_topic_levels allows)
        stack: list[tuple[_Node, int]] = [(node, i)]
        n = len(levels)
        while stack:
            node, i = stack.pop()
            if i == n:
                if node.topic_log is not None:
                    out.append(node.topic_log)
                continue
            level = levels[i]
            if level == "#":
                # '#' matches the parent level itself and everything below it
                if node.topic_log is not None and i > 0:
                    out.append(node.topic_log)
                self._collect(node, out)
            elif level == "+":
                stack.extend((child, i + 1) for child in reversed(node.children.values()))
            else:
                nxt = node.children.get(level)
                if nxt is not None:
                    stack.append((nxt, i + 1))

    def _collect(self, node: _Node, out: list[_TopicLog]) -> None:
        stack = list(reversed(node.children.values()))
        while stack:
            child = stack.pop()
            if child.topic_log is not None:
                out.append(child.topic_log)
            stack.extend(reversed(child.children.values()))


# -- the log ----------------------------------------------------------------------------


class MessageLog:
    """Per-topic message history with one id sequence, an epoch, retention, a memory
    budget and listeners."""

    def __init__(
        self,
        engine: Engine,
        default: Retention | None = None,
        rules: list[RetentionRule] | None = None,
        clock: Any = time.time,
        budget: MemoryBudget | None = None,
        stats: Stats | None = None,
        *,
        max_consumers_per_owner: int = 100,
        consumer_idle_timeout: float = 7 * 24 * 3600.0,
        plane: ReaderPlane | None = None,
    ) -> None:
        # 29 attributes: CPython 3.11 shares an instance dict's keys (the fast attribute
        # reads every append makes) up to 29; a 30th made `observer` ~8% slower
        # (bench/micro_log_append.py, bench/README.md "One routing plane")
        self.engine = engine
        self.default = default or Retention()
        self.rules = list(rules or [])
        self.clock = clock
        self.budget = budget or MemoryBudget()
        # counters shared with $SYS and /metrics (the hub's, when the server builds the log)
        self.stats = stats or Stats()
        # over budget, entries go cold (read back from the engine) instead of being evicted
        self.spills = bool(getattr(engine, "keeps_log", False))
        # engine=redis: positions come with the messages (given by Redis, one order for
        # every node) instead of from `last_id += 1` here
        self.assigned = bool(getattr(engine, "assigns_positions", False))
        self.epoch = new_epoch()
        self.last_id = 0
        # positions up to this were not loaded at start (an engine that starts lazily:
        # engine=redis): nothing of them is indexed here, reads below it ask the engine
        self.unloaded_upto = 0
        self._topics = _TopicTree()
        self._by_topic = self._topics.by_topic  # topic -> its log, asked once per message
        # the subscription tree the reader groups live in (the hub's: `plane=hub`), one
        # group per distinct filter, and how many listeners in all
        self._plane = plane if plane is not None else _own_plane(engine)
        self._groups: dict[str, ReaderGroup] = {}
        self._listener_count = 0
        # True while `_wake` walks the listeners; those that wrote and put off the rest
        # of their answer wait in `_woken` (`settle_later`)
        self.waking = False
        self._woken: list[Settling] = []
        # named cursors of at-least-once readers, per identity (core/consumers.py)
        self.consumers = Consumers(
            engine,
            max_per_owner=max_consumers_per_owner,
            idle_timeout=consumer_idle_timeout,
            clock=clock,
        )
        # (oldest in-memory id, topic log) per topic with entries in memory, lazily updated:
        # a key is never above its topic's real oldest id (see `_fit_total`)
        self._oldest: list[tuple[int, _TopicLog]] = []
        self.size = 0  # entries held, all topics, in memory or cold
        self.memory_bytes = 0  # `approx_size` of the entries in memory
        self.cold_count = 0  # entries on disk only
        self.evicted_total = 0
        self.appended_total = 0
        self.holes_total = 0
        # reads `quiet_after` spared (a filter's own topic said "nothing newer")
        self.reads_spared = 0
        self._journaled = False  # the last `append` went to the engine (see `observer`)
        # engine=redis with redis_log_memory "listened": a routed message no live reader
        # listens for is logged cold too (`append_cold`; its bytes are in Redis)
        self.cold_unless_listened = False
        engine.add_failure_listener(self._write_failed)

    # -- start-up and shutdown --------------------------------------------------------

    async def restore(self) -> None:
        """Load the stored log (or start a new epoch when there is none). Entries come
        back cold: their payloads are read from the engine when a reader needs them."""
        stored = await self.engine.load_log()
        if stored.epoch is None:
            self.engine.log_reset(self.epoch)
            log.info("message log: new epoch %s", self.epoch)
            return
        self.epoch = stored.epoch
        self.last_id = stored.last_id
        if isinstance(self.engine, LazyHistory):
            self.unloaded_upto = stored.unloaded_upto
        for topic, (upto, upto_time) in stored.evicted.items():
            tlog = self._topic(topic)
            tlog.evicted_upto = tlog.trimmed_upto = upto
            tlog.evicted_time = upto_time
        for e in stored.entries:
            tlog = self._topic(e.topic)
            tlog.go_cold(e.id, e.created_at, e.size)
            self.size += 1
            self.cold_count += 1
            self.last_id = max(self.last_id, e.id)
        for topic, holes in stored.holes.items():
            tlog = self._topic(topic)
            tlog.holes = sorted(h for h in holes if h > tlog.evicted_upto)
        self.consumers.restore(stored.consumers, self.last_id)
        bump_uid_floor(stored.max_uid)
        self.sweep()
        log.info(
            "message log: epoch %s, %d messages in %d topics, last id %d",
            self.epoch,
            self.size,
            len(self._topics.by_topic),
            self.last_id,
        )

    def close_listeners(self) -> None:
        """Tell every live reader the server is stopping (they answer or close)."""
        for group in list(self._groups.values()):
            for listener in list(group.members):
                listener.close()

    # -- writing ----------------------------------------------------------------------

    def retention_for(self, topic: str) -> Retention:
        for rule in self.rules:
            if matches(rule.filter, topic):
                return Retention(
                    rule.max_messages
                    if rule.max_messages is not None
                    else self.default.max_messages,
                    rule.max_age if rule.max_age is not None else self.default.max_age,
                )
        return self.default

    def _topic(self, topic: str) -> _TopicLog:
        tlog = self._topics.by_topic.get(topic)
        if tlog is None:
            tlog = _TopicLog(topic, self.retention_for(topic))
            self._topics.add(tlog)
        return tlog

    def append(self, message: Message) -> LogEntry | None:
        """Log a routed message (the hub observer). Sets `message.log_id`; returns the entry,
        or None for topics that are not logged (`$SYS/...` and every other `$` topic)."""
        if message.topic.startswith("$"):
            return None
        if self.assigned:
            lid = message.log_id
            if lid is None or lid <= self.last_id:
                return None  # not positioned, or had already (the broker hands over once)
            self.last_id = lid
        else:
            self.last_id += 1
            message.log_id = self.last_id
        topic = message.topic
        now = message.created_at
        entry = LogEntry(
            self.last_id,
            message,
            # _size_of inlined for the common message without properties
            _size_of(message)
            if message.properties
            else len(message.payload) + len(topic) + MESSAGE_OVERHEAD,
        )
        tlog = self._topics.by_topic.get(topic)
        if tlog is None:
            tlog = self._topic(topic)
        retention = tlog.retention
        entries = tlog.entries
        cold = tlog.cold
        self.appended_total += 1
        max_messages = retention.max_messages
        self._journaled = journaled = max_messages > 0
        if not journaled:
            # a topic configured to keep nothing: live readers only, and it counts as evicted
            tlog.evicted_upto = entry.id
            tlog.evicted_time = now
            self._retain(tlog, retention, entries, cold, now)
        elif cold is _NO_COLD and len(entries) == max_messages and tlog.in_heap:
            # the steady state of a busy topic: one in, the oldest out (O(1), one length);
            # the count stays at its bound, so only the age can ask for more eviction
            if self.spills:  # an engine that keeps no log (memory) has nothing to write
                self.engine.log_append(message)
            entries.append(entry)
            old = entries.popleft()
            delta = entry.size - old.size
            tlog.hot_bytes += delta
            self.memory_bytes += delta
            tlog.evicted_upto = old_id = old.id
            tlog.evicted_time = old.message.created_at
            self.evicted_total += 1
            if old_id - tlog.trimmed_upto >= tlog.trim_step:
                self._trim(tlog)
            max_age = retention.max_age
            if max_age > 0 and entries[0].message.created_at < now - max_age:
                self._evict(tlog, now)
        else:
            if self.spills:  # an engine that keeps no log (memory) has nothing to write
                self.engine.log_append(message)
            entries.append(entry)
            size = entry.size
            tlog.hot_bytes += size
            self.memory_bytes += size
            self.size += 1
            if not tlog.in_heap:
                tlog.in_heap = True
                heapq.heappush(self._oldest, (entry.id, tlog))
            self._retain(tlog, retention, entries, cold, now)
        budget = self.budget
        if budget.topic_bytes and tlog.hot_bytes > budget.topic_bytes:
            self._fit_topic(tlog)
        if budget.total_bytes and self.memory_bytes > budget.total_bytes:
            self._fit_total()
        if self._listener_count:
            self._wake(topic, entry)
        return entry

    def append_cold(self, topic: str, position: int, created_at: float, size: int) -> bool:
        """engine=redis: log a message nobody on this node listens to as a cold entry (id,
        time, size; its bytes stay in Redis, which wrote them before handing the message
        out), so the fan-out reader need not decode it. A read that reaches it loads it
        back (`load`), exactly as an entry spilled for the memory budget. False: the log
        needs the message itself (not a lazy engine, or a live reader matches `topic`)."""
        if not (self.spills and self.assigned) or topic.startswith("$"):
            return False
        if self._listener_count and self._plane.readers_of(topic):
            return False
        if position <= self.last_id:
            return True  # had it already (the broker hands a position over once)
        self.last_id = position
        tlog = self._topics.by_topic.get(topic)
        if tlog is None:
            tlog = self._topic(topic)
        self.appended_total += 1
        retention = tlog.retention
        if retention.max_messages <= 0:
            tlog.evicted_upto = position  # a topic that keeps nothing (as in `append`)
            tlog.evicted_time = created_at
            return True
        while tlog.entries:
            self._shed(tlog)  # cold entries are the oldest of a topic: older hot ones first
        cold = tlog.cold
        if cold is _NO_COLD:
            cold = tlog.cold = _ColdRun()
        cold.ids.append(position)  # `go_cold` and `_retain` inlined: once per message
        cold.times.append(created_at)
        cold.sizes.append(size)
        self.size += 1
        self.cold_count += 1
        max_age = retention.max_age
        if len(cold.ids) - cold.head > retention.max_messages or (
            max_age > 0 and cold.times[cold.head] < created_at - max_age
        ):
            self._evict(tlog, created_at)
        return True

    def _retain(
        self,
        tlog: _TopicLog,
        retention: Retention,
        entries: deque[LogEntry],
        cold: _ColdRun,
        now: float,
    ) -> None:
        """The rest of retention, with one length per append: over the count (a rule
        changed, entries came back cold), or the oldest entry past the age horizon."""
        if cold is _NO_COLD:
            count = len(entries)
            oldest = entries[0].message.created_at if count else now
        else:
            count = len(entries) + len(cold)
            oldest = cold.first_time()
        if count > retention.max_messages or (
            retention.max_age > 0 and oldest < now - retention.max_age
        ):
            self._evict(tlog, now)

    def observer(self, message: Message) -> bool:
        """`hub.add_observer(log.observer)`; True when the message went to the engine, so
        whoever acknowledges it must wait for the engine's sync first.

        The steady state of a busy topic (in memory, nothing cold, at its count bound) is
        `append`'s steady branch inlined here: every routed message pays this call, and
        `append`'s own call, its `$` test (a topic that has a log is never a `$` one) and
        the `LogEntry` constructor's frame were a third of it. The same state comes out
        (tests/unit/test_log_observer.py runs both side by side)."""
        tlog = self._by_topic.get(message.topic)
        if (
            tlog is None
            or self.assigned  # positions from the broker (and maybe `append_cold`)
            or tlog.cold is not _NO_COLD
            # at its bound (> 0: a topic that keeps nothing is never `in_heap`)
            or len(entries := tlog.entries) != tlog.retention.max_messages
            or not tlog.in_heap
        ):
            return self._observe(message)
        self.last_id = lid = self.last_id + 1
        message.log_id = lid
        entry = _new_entry(LogEntry)
        entry.id = lid
        entry.message = message
        entry.size = size = (
            _size_of(message)
            if message.properties
            else len(message.payload) + len(message.topic) + MESSAGE_OVERHEAD
        )
        entry.wire = None
        if self.spills:
            self.engine.log_append(message)
        entries.append(entry)
        old = entries.popleft()
        delta = size - old.size
        tlog.hot_bytes += delta
        self.memory_bytes += delta
        tlog.evicted_upto = old_id = old.id
        tlog.evicted_time = old.message.created_at
        self.appended_total += 1
        self.evicted_total += 1
        if old_id - tlog.trimmed_upto >= tlog.trim_step:
            self._trim(tlog)
        max_age = tlog.retention.max_age
        if max_age > 0:
            now = message.created_at
            if entries[0].message.created_at < now - max_age:
                self._evict(tlog, now)
        budget = self.budget
        if budget.topic_bytes and tlog.hot_bytes > budget.topic_bytes:
            self._fit_topic(tlog)
        if budget.total_bytes and self.memory_bytes > budget.total_bytes:
            self._fit_total()
        if self._listener_count:
            self._wake(tlog.topic, entry)
        return True

    def observe_run(self, messages: Sequence[Message]) -> None:
        """`observer` for each of `messages`, in order: the run of one read's publishes that
        `Hub.hold_observers` kept back. Stretches of one topic in its steady state that no
        live reader listens to are appended in one pass (`_steady_stretch`): the topic's log,
        bounds and listeners looked up once, the counters and eviction marks written once.
        Every other message goes through `observer`. The same state comes out as from one
        `observer` call per message (tests/unit/test_log_observer.py)."""
        if self.assigned:
            self._observe_assigned_run(messages)
            return
        i = 0
        n = len(messages)
        while i < n:
            done = self._steady_stretch(messages, i)
            if done == i:
                self.observer(messages[i])
                i += 1
            else:
                i = done

    def _observe_assigned_run(self, messages: Sequence[Message]) -> None:
        """`observe_run` with the broker's positions (engine=redis: the fan-out reader's
        run of one publish batch, `Hub.hold_observers(received=True)`): `_observe` per
        message, its calls and tests made once for the run."""
        cold = self.cold_unless_listened
        append_cold = self.append_cold
        append = self.append
        for m in messages:
            lid = m.log_id
            if not (
                cold and lid is not None and append_cold(m.topic, lid, m.created_at, _size_of(m))
            ):
                append(m)

    def _steady_stretch(self, messages: Sequence[Message], start: int) -> int:
        """Append messages[start:] while they go to the topic of messages[start] and each
        would take `observer`'s steady branch without eviction by age, a trim or a budget
        to fit (the message that asks for a trim or an eviction by age is the last one; its
        eviction runs once the marks are written, as after `observer`). Returns the index
        of the first message not appended (`start`: none was)."""
        topic = messages[start].topic
        tlog = self._by_topic.get(topic)
        if tlog is None or tlog.cold is not _NO_COLD or not tlog.in_heap:
            return start
        entries = tlog.entries
        retention = tlog.retention
        if len(entries) != retention.max_messages or (
            self._listener_count and self._plane.readers_of(topic)
        ):
            return start  # not at its bound, or a live reader must be told of each message
        budget = self.budget
        # how far the topic's and the log's bytes may grow before the budget sheds entries
        topic_room = budget.topic_bytes - tlog.hot_bytes if budget.topic_bytes else _UNBOUNDED
        total_room = budget.total_bytes - self.memory_bytes if budget.total_bytes else _UNBOUNDED
        room = topic_room if topic_room < total_room else total_room
        max_age = retention.max_age
        trim_at = tlog.trimmed_upto + tlog.trim_step
        log_append = self.engine.log_append if self.spills else None
        lid = self.last_id
        grown = 0
        i = start
        n = len(messages)
        old: LogEntry | None = None
        while i < n:
            message = messages[i]
            if message.topic != topic:
                break
            size = (
                _size_of(message)
                if message.properties
                else len(message.payload) + len(topic) + MESSAGE_OVERHEAD
            )
            delta = size - entries[0].size
            if grown + delta > room:
                break  # `observer` fits the budget after it
            lid += 1
            message.log_id = lid
            entry = _new_entry(LogEntry)
            entry.id = lid
            entry.message = message
            entry.size = size
            entry.wire = None
            if log_append is not None:
                log_append(message)
            entries.append(entry)
            old = entries.popleft()
            grown += delta
            i += 1
            if old.id >= trim_at or (
                max_age > 0 and entries[0].message.created_at < message.created_at - max_age
            ):
                break
        if old is None:
            return start
        count = i - start
        self.last_id = lid
        tlog.hot_bytes += grown
        self.memory_bytes += grown
        tlog.evicted_upto = old.id
        tlog.evicted_time = old.message.created_at
        self.appended_total += count
        self.evicted_total += count
        # what `observer` does after the last one
        if old.id - tlog.trimmed_upto >= tlog.trim_step:
            self._trim(tlog)
        if max_age > 0:
            now = messages[i - 1].created_at
            if entries[0].message.created_at < now - max_age:
                self._evict(tlog, now)
        return i

    def _observe(self, message: Message) -> bool:
        """`observer` for every other case: the broker's positions, a new topic, one
        filling up, going cold or keeping nothing."""
        if (
            self.cold_unless_listened
            and message.log_id is not None
            and self.append_cold(
                message.topic, message.log_id, message.created_at, _size_of(message)
            )
        ):
            return False  # nothing to wait for: the broker's answer covers it
        return self.append(message) is not None and self._journaled

    def _write_failed(self, failure: WriteFailure) -> None:
        """The engine could not store a log entry: it leaves the log and becomes a hole,
        so the log holds what a restart would find, and a reader crossing it has a gap
        (live readers may have had it already)."""
        message = failure.message
        if failure.op != "log_append" or message is None or message.log_id is None:
            return
        tlog = self._topics.by_topic.get(message.topic)
        if tlog is None:
            return
        lid = message.log_id
        entries = tlog.entries
        i = bisect.bisect_left(entries, lid, key=_entry_id)
        if i < len(entries) and entries[i].id == lid:
            size = entries[i].size
            del entries[i]
            tlog.hot_bytes -= size
            self.memory_bytes -= size
            self.size -= 1
        elif tlog.drop_cold(lid):
            # it went out of memory (budget) before the store refused it
            self.cold_count -= 1
            self.size -= 1
        if lid > tlog.evicted_upto:
            bisect.insort(tlog.holes, lid)
            self.holes_total += 1

    def _evict(self, tlog: _TopicLog, now: float) -> None:
        ret = tlog.retention
        evicted = 0
        excess = len(tlog) - ret.max_messages
        while excess > 0:  # each pop removes exactly one entry (hot or cold)
            self._pop(tlog)
            evicted += 1
            excess -= 1
        if ret.max_age > 0:
            horizon = now - ret.max_age
            while len(tlog) and self._oldest_time(tlog) < horizon:
                self._pop(tlog)
                evicted += 1
        if evicted:
            self._maybe_trim(tlog)

    def _maybe_trim(self, tlog: _TopicLog) -> None:
        if tlog.evicted_upto - tlog.trimmed_upto >= tlog.trim_step:
            self._trim(tlog)

    @staticmethod
    def _oldest_time(tlog: _TopicLog) -> float:
        if len(tlog.cold):
            return tlog.cold.first_time()
        return tlog.entries[0].message.created_at

    def _pop(self, tlog: _TopicLog) -> None:
        """Evict the oldest entry of a topic (cold ones first: they are the oldest)."""
        if len(tlog.cold):
            tlog.evicted_upto, tlog.evicted_time = tlog.pop_cold()
            self.cold_count -= 1
        else:
            old = tlog.entries.popleft()
            tlog.hot_bytes -= old.size
            self.memory_bytes -= old.size
            tlog.evicted_upto = old.id
            tlog.evicted_time = old.message.created_at
        self.size -= 1
        self.evicted_total += 1

    # -- the memory budget ------------------------------------------------------------

    def _fit_topic(self, tlog: _TopicLog) -> None:
        limit = self.budget.topic_bytes
        while limit and tlog.hot_bytes > limit and tlog.entries:
            self._shed(tlog)

    def _fit_total(self) -> None:
        """Shed the oldest in-memory entries of the whole log until it fits."""
        limit = self.budget.total_bytes
        heap = self._oldest
        while limit and self.memory_bytes > limit and heap:
            key, tlog = heap[0]
            if not tlog.entries:
                heapq.heappop(heap)
                tlog.in_heap = False
                continue
            oldest = tlog.entries[0].id
            if key != oldest:
                # stale key (the topic shed or evicted on its own since): re-key it
                heapq.heapreplace(heap, (oldest, tlog))
                continue
            self._shed(tlog)
            if tlog.entries:
                heapq.heapreplace(heap, (tlog.entries[0].id, tlog))
            else:
                heapq.heappop(heap)
                tlog.in_heap = False

    def _shed(self, tlog: _TopicLog) -> None:
        """The oldest in-memory entry of a topic leaves memory: to the cold run when the
        engine keeps the log (no gap), else evicted (readers behind it get a gap)."""
        if not self.spills:
            self._pop(tlog)
            self.stats.log_memory_evicted += 1
            self._maybe_trim(tlog)
            return
        old = tlog.entries.popleft()
        tlog.hot_bytes -= old.size
        self.memory_bytes -= old.size
        tlog.go_cold(old.id, old.message.created_at, old.size)
        self.cold_count += 1
        self.stats.log_spilled += 1

    def _trim(self, tlog: _TopicLog) -> None:
        self.engine.log_trim(tlog.topic, tlog.evicted_upto, tlog.evicted_time)
        tlog.trimmed_upto = tlog.evicted_upto
        if tlog.holes and tlog.holes[0] <= tlog.evicted_upto:
            # older than what was evicted: the eviction mark reports them now
            del tlog.holes[: bisect.bisect_right(tlog.holes, tlog.evicted_upto)]

    def sweep(self) -> None:
        """Evict by age everywhere, hand pending trims to the engine and forget idle
        consumers (periodic)."""
        now = self.clock()
        for tlog in self._topics.by_topic.values():
            self._evict(tlog, now)
            if tlog.evicted_upto > tlog.trimmed_upto:
                self._trim(tlog)
        self.consumers.expire()

    # -- reading ----------------------------------------------------------------------

    def resolve(self, flt: str, cursor: Cursor) -> Start:
        """Where a reader with `cursor` starts: after which id, whether it already has a
        gap, and the gap floor for the reads that follow (see `read`)."""
        if cursor.kind == "all":
            # whatever is kept, and what was evicted before this moment is no gap
            return Start(0, False, self.last_id)
        if cursor.kind == "latest":
            return Start(self.last_id, False)
        if cursor.kind == "time":
            if self.unloaded_upto:
                # the times of messages before the start are in the engine only: start
                # from what is kept there (more than asked for, never less)
                return Start(0, False, self.last_id)
            topics = self._topics.find(flt)
            now = self.clock()
            firsts = []
            gap = False
            for tlog in topics:
                self._evict(tlog, now)
                if tlog.evicted_upto and tlog.evicted_time >= cursor.time:
                    gap = True
                first = tlog.first_at_or_after(cursor.time)
                if first is not None:
                    firsts.append(first)
            after = min(firsts) - 1 if firsts else self.last_id
            # ids increase with time: a hole past `after` is a message of the asked-for time
            gap = gap or any(t.hole_within(after, self.last_id) for t in topics)
            # evictions up to here were older than the asked-for time, or were reported
            return Start(after, gap, self.last_id)
        # an id: from another epoch, or beyond anything this log issued -> start over
        if cursor.epoch is not None and cursor.epoch != self.epoch:
            return Start(0, True, self.last_id)
        if cursor.id > self.last_id:
            if self.assigned and cursor.epoch is not None:
                # a position another node gave out that this node has not read yet: what
                # follows it is on its way here through the broker
                return Start(cursor.id, False)
            return Start(0, True, self.last_id)
        return Start(cursor.id, False)

    def quiet_after(self, flt: str, after_id: int, floor: int = 0) -> bool:
        """True when `read(flt, after_id, ..., floor)` certainly finds nothing and no gap,
        known from the filter's own topic alone: a filter without wildcards whose topic
        has no entry, eviction or hole above the cursor (a long-poll re-ask on a quiet
        per-user topic, whose cursor is not the log's last id: other topics moved it).
        False means "read to know". Age eviction is not applied here: it only removes
        entries at or below the topic's newest, so it cannot change this answer."""
        if after_id < self.unloaded_upto or "+" in flt or "#" in flt:
            return False
        tlog = self._topics.by_topic.get(flt)
        if tlog is not None:
            horizon = after_id if after_id > floor else floor
            if tlog.evicted_upto > horizon:
                return False
            holes = tlog.holes
            if holes and holes[-1] > horizon:
                return False
            entries = tlog.entries
            if entries:
                if entries[-1].id > after_id:
                    return False
            else:
                cold = tlog.cold
                if len(cold) and cold.ids[-1] > after_id:
                    return False
        self.reads_spared += 1
        return True

    def only_after(self, flt: str, after_id: int) -> LogEntry | None:
        """The entry `read(flt, after_id, limit >= 1)` would return alone, with no gap and
        the log's last id as its next id, found without the read: a filter without
        wildcards whose topic holds exactly one entry above `after_id`, in memory, not
        expired, the log's newest, and no eviction or hole above the cursor (a long-poll
        client one message behind: http/streams.py `_ReaskLane`). None: read to know.
        Applies the topic's age eviction first, as `read` does. (f-lp hook)"""
        if after_id < self.unloaded_upto or "+" in flt or "#" in flt:
            return None
        tlog = self._topics.by_topic.get(flt)
        if tlog is None or len(tlog.cold):
            return None
        entries = tlog.entries
        if not entries or entries[-1].id != self.last_id:
            return None
        now = self.clock()
        self._evict(tlog, now)
        if tlog.evicted_upto > after_id or (tlog.holes and tlog.holes[-1] > after_id):
            return None
        entries = tlog.entries
        if not entries or entries[-1].id != self.last_id:
            return None
        entry = entries[-1]
        if entry.id <= after_id or (len(entries) > 1 and entries[-2].id > after_id):
            return None
        if entry.message.expired(now):
            return None
        return entry

    def read(
        self, flt: str, after_id: int, limit: int, floor: int = 0, max_bytes: int = 0
    ) -> ReadResult:
        """Messages of topics matching `flt` with id > after_id, oldest first, at most
        `limit` and (when max_bytes > 0) about max_bytes (at least one message), expired
        ones skipped. gap=True when any of them was evicted; evictions of ids up to `floor`
        are not counted (the reader was told, or asked for `all`).

        Entries only on disk are listed in `cold`, not in `entries`: `await load(result)`
        reads them (or use `fetch`). With the memory engine nothing is ever cold."""
        if after_id < self.unloaded_upto:
            return self._unloaded(flt, after_id, limit, floor, max_bytes)
        now = self.clock()
        gap = False
        horizon = max(after_id, floor)
        sources: list[Iterator[_Planned]] = []
        holed: list[_TopicLog] = []
        for tlog in self._topics.find(flt):
            self._evict(tlog, now)
            if tlog.evicted_upto > horizon:
                gap = True
            if tlog.holes:
                holed.append(tlog)
            sources.append(tlog.after(after_id))
        out: list[LogEntry] = []
        cold: dict[str, list[int]] = {}
        taken = 0
        taken_bytes = 0
        more = False
        merged = sources[0] if len(sources) == 1 else heapq.merge(*sources, key=_planned_id)
        last = after_id
        for id_, entry, tlog, size in merged:
            if taken >= limit or (max_bytes and taken and taken_bytes + size > max_bytes):
                more = True
                break
            last = id_
            if entry is None:
                span = cold.get(tlog.topic)
                if span is None:
                    cold[tlog.topic] = [id_, id_]
                else:
                    span[1] = id_
            elif entry.message.expired(now):
                continue
            else:
                out.append(entry)
            taken += 1
            taken_bytes += size
        next_id = last if more else max(last, self.last_id)
        # an id that was issued but not stored, between the cursor and where this read ends
        gap = gap or any(t.hole_within(horizon, next_id) for t in holed)
        result = ReadResult(out, next_id, gap, more, self.epoch)
        if cold:
            result.cold = [(topic, span[0], span[1]) for topic, span in cold.items()]
            result.cold_count = taken - len(out)
        return result

    def _unloaded(
        self, flt: str, after_id: int, limit: int, floor: int, max_bytes: int
    ) -> ReadResult:
        """A read that starts below the start-up position of a lazy log: nothing known
        here, `load` asks the engine."""
        result = ReadResult([], after_id, False, True, self.epoch)
        result.cold = [(flt, after_id + 1, self.unloaded_upto)]
        result.unloaded = (flt, limit, floor, max_bytes)
        return result

    async def _load_unloaded(self, result: ReadResult) -> ReadResult:
        """The messages below the start-up position from the engine, then (if the page
        has room) what follows from this log, as one answer."""
        assert result.unloaded is not None and isinstance(self.engine, LazyHistory)
        flt, limit, floor, max_bytes = result.unloaded
        after, upto = result.next_id, self.unloaded_upto
        found = await self.engine.log_scan(flt, after, upto, limit)
        self.stats.log_disk_reads += len(found.messages)
        horizon = max(after, floor)
        gap = result.gap or any(mark > horizon for mark, _ in found.evicted.values())
        now = self.clock()
        entries = []
        for m in found.messages:
            if m.log_id is None or m.expired(now):
                continue
            max_age = self.retention_for(m.topic).max_age
            if max_age and m.created_at < now - max_age:
                gap = gap or m.log_id > horizon  # past its age retention: evicted
                continue
            entries.append(LogEntry(m.log_id, m))
        if len(found.messages) >= limit:
            last = found.messages[-1].log_id or upto
            return ReadResult(entries, last, gap, True, self.epoch)
        rest = await self.fetch(flt, upto, limit - len(found.messages), floor, max_bytes)
        rest.entries = entries + rest.entries
        rest.gap = rest.gap or gap
        return rest

    async def load(self, result: ReadResult) -> ReadResult:
        """Read the cold entries of `result` back from the engine and merge them in. An
        entry that is gone meanwhile (evicted and trimmed while we read) makes it a gap."""
        if result.unloaded is not None:
            return await self._load_unloaded(result)
        if not result.cold:
            return result
        ranges, expected = result.cold, result.cold_count
        result.cold, result.cold_count = [], 0
        messages = await self.engine.log_read(ranges)
        self.stats.log_disk_reads += len(messages)
        if len(messages) < expected:
            result.gap = True
        now = self.clock()
        loaded = [
            LogEntry(m.log_id, m) for m in messages if m.log_id is not None and not m.expired(now)
        ]
        if loaded:
            result.entries = sorted(result.entries + loaded, key=_entry_id)
        return result

    async def fetch(
        self, flt: str, after_id: int, limit: int, floor: int = 0, max_bytes: int = 0
    ) -> ReadResult:
        """`read`, with the cold entries loaded: what every reader should call."""
        return await self.load(self.read(flt, after_id, limit, floor, max_bytes))

    def query(self, flt: str, cursor: Cursor, limit: int) -> ReadResult:
        """resolve + read: the whole answer to `?since=` for a poll (memory part)."""
        start = self.resolve(flt, cursor)
        result = self.read(flt, start.after, limit, start.floor)
        result.gap = result.gap or start.gap
        return result

    # -- listeners --------------------------------------------------------------------

    def _wake(self, topic: str, entry: LogEntry) -> None:
        """Tell every listener whose filter matches: the members of the reader groups the
        topic's route lists (matched in the hub's tree, once per topic until the
        subscriptions change; `ReaderPlane.readers_of`). Listeners that answer by writing
        (long-poll waiters) write during the walk and put off their bookkeeping to
        `settle_later`: the i-th client's bytes leave after i writes, not after i writes and
        i - 1 rounds of unregistering, counting and timer work (issue 10: at N = 1,000 that
        work before each write put the median delivery ~2x behind nchan's)."""
        outer = self.waking
        self.waking = True
        try:
            for group in self._plane.readers_of(topic):
                members = group.members
                if len(members) == 1:
                    next(iter(members)).notify(entry)
                else:
                    # a snapshot: a long-poll leaves its group as it is answered
                    for listener in list(members):
                        listener.notify(entry)
        finally:
            if not outer:
                self.waking = False
                if self._woken:
                    self._settle()

    def settle_later(self, listener: Settling) -> None:
        """While `waking`: call `listener.settle()` once the walk is over (still inside
        the append, before anything else runs: no request of the listener's client can
        come in between)."""
        self._woken.append(listener)

    def _settle(self) -> None:
        woken, self._woken = self._woken, []
        for listener in woken:
            try:
                listener.settle()
            except Exception:
                # one listener's failure must not leave the others half answered
                log.exception("settling a woken listener failed")

    def listen(self, flt: str, listener: Listener) -> None:
        group = self._groups.get(flt)
        if group is None:
            group = self._groups[flt] = ReaderGroup(flt)
            self._plane.add_readers(group)
        if listener not in group.members:
            group.members[listener] = None
            self._listener_count += 1

    def unlisten(self, flt: str, listener: Listener) -> None:
        group = self._groups.get(flt)
        if group is None or listener not in group.members:
            return
        del group.members[listener]
        self._listener_count -= 1
        if not group.members:
            del self._groups[flt]
            self._plane.remove_readers(group)

    def unlisten_all(self, flt: str, listeners: Sequence[Listener]) -> None:
        """`unlisten` of many listeners of one filter at once (the long-polls a wake
        answered): one group look-up, and a group left by all its listeners is cleared."""
        group = self._groups.get(flt)
        if group is None:
            return
        members = group.members
        left = len(members)
        if len(listeners) == left and members.keys() == set(listeners):
            members.clear()
        else:
            for listener in listeners:
                members.pop(listener, None)
        self._listener_count -= left - len(members)
        if not members:
            del self._groups[flt]
            self._plane.remove_readers(group)

    @property
    def listener_count(self) -> int:
        return self._listener_count

    # -- introspection ----------------------------------------------------------------

    @property
    def topic_count(self) -> int:
        return len(self._topics.by_topic)

    def topic_size(self, topic: str) -> int:
        """Entries kept for `topic`, in memory or cold."""
        tlog = self._topics.by_topic.get(topic)
        return len(tlog) if tlog is not None else 0

    def topic_memory_bytes(self, topic: str) -> int:
        tlog = self._topics.by_topic.get(topic)
        return tlog.hot_bytes if tlog is not None else 0

    def topic_cold(self, topic: str) -> int:
        tlog = self._topics.by_topic.get(topic)
        return len(tlog.cold) if tlog is not None else 0


async def run_log_sweeper(mlog: MessageLog, interval: float) -> None:
    """Sweep the log every `interval` seconds until cancelled (age eviction, trims)."""
    while True:
        await asyncio.sleep(interval)
        try:
            mlog.sweep()
        except Exception:
            log.exception("message log sweep failed")


# -- bounded buffers for streams --------------------------------------------------------


class StreamBuffer(Generic[T]):
    """A bounded FIFO between synchronous producers (log listeners) and one async sender.

    Bounded in items (`limit`) and in bytes (`max_bytes`, 0: no byte limit; what each
    `push` says its item costs). Overflow policy: when either bound would be passed, the
    buffer closes itself with reason "overflow" and drops what it holds; the sender then
    ends the stream and says so, and the client resumes with its cursor. Nothing is
    skipped silently. Waiting costs one future and, with a timeout, one timer-heap entry:
    nothing polls.
    """

    __slots__ = ("_bytes", "_items", "_waiter", "closed", "limit", "max_bytes", "reason")

    def __init__(self, limit: int, max_bytes: int = 0) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self._items: deque[T] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.reason = ""

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """What the waiting items cost, as their producers said."""
        return self._bytes

    def push(self, item: T, size: int = 0) -> bool:
        if self.closed:
            return False
        items = self._items
        if len(items) >= self.limit or (
            self.max_bytes and items and self._bytes + size > self.max_bytes
        ):
            self.close("overflow")
            return False
        items.append(item)
        self._bytes += size
        self._wake()
        return True

    def close(self, reason: str = "closed") -> None:
        if not self.closed:
            self.closed = True
            self.reason = reason
            self._items.clear()
            self._bytes = 0
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def take(self) -> list[T]:
        """Everything waiting, without waiting ([] when empty or closed)."""
        items = list(self._items)
        self._items.clear()
        self._bytes = 0
        return items

    async def get(self, timeout: float | None) -> list[T] | None:
        """Everything waiting (at least one item); None on timeout; [] once closed."""
        if not self._items and not self.closed:
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            self._waiter = waiter
            handle = (
                loop.call_later(timeout, _resolve_none, waiter) if timeout is not None else None
            )
            try:
                await waiter
            finally:
                self._waiter = None
                if handle is not None:
                    handle.cancel()
            if not self._items and not self.closed:
                return None
        if self.closed:
            return []
        return self.take()


def _resolve_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _own_plane(engine: Engine) -> ReaderPlane:
    """The subscription tree of a log made without a hub (tests, benches): a hub of its
    own, which holds the log's reader groups and nothing else."""
    return Hub(engine)
