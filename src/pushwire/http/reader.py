"""The one reader of the message log, for every streaming door (SSE, long-poll, poll, the
JSON WebSocket).

It does, once for all of them:
- cursor resolution (`open`: register with the log and resolve the cursor in one step, so
  nothing published in between is lost);
- backlog replay, page by page (`replay_page` / `replay`), entries only on disk read back;
- the hand-over to live messages: what is published during the replay waits in a small
  buffer (allocated only then) and is de-duplicated by id when the replay ends, so nothing
  is lost and nothing comes twice;
- gap reporting (another epoch, evicted messages, holes): never silent;
- per-message checks: expired messages and topics the caller's ACL denies are left out
  (the cursor still moves past them).

Readers are log listeners woken by callback (`notify`, synchronously in the publish): a
live message goes straight to the transport as pre-encoded bytes shared by every reader of
that wire format (http/encode.py). No reader has a task or a queue of its own while it is
live and keeping up.

Transports are reached through a `Sink` (streams) or a `ReplySink` (long-poll). The
transport calls back `resume()` when a sink that said it was not `writable()` drains, and
`cancel()` when its client goes away.

Backpressure: while a sink is not writable, live messages wait in the reader (bounded by
`stream_buffer` messages and `stream_buffer_bytes`); past that the stream is closed with
reason "overflow" and the client resumes with its cursor. Nothing is skipped silently.

How HTTP readers sit in the hub's subscription tree: as groups, not one by one. The hub's
tree holds MQTT sessions with QoS grants, no_local, shared groups and a per-topic route
cache; a long-poll registers and leaves per request, so 10,000 per-reader entries would
change the tree 20,000 times per wave. The log puts the readers of one filter in one
`ReaderGroup` (core/readers.py), and the group is the tree's entry: it arrives with the
filter's first reader and leaves with its last (a kept-alive long-poll's waiter stays in
its group between requests), and its arrival or departure changes only the cached routes
of the topics its filter matches, in place, so MQTT publishes do not rebuild their routes
for it. A publish matches its topic once, in that one tree; the log wakes the groups the
route lists once it has given the message its id. `bench/micro_reader.py` measures it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from bisect import bisect_left
from collections import deque
from typing import TYPE_CHECKING, Protocol

from pushwire.core.log import Cursor, LogEntry, MessageLog, ReadResult, format_cursor
from pushwire.http.encode import entry_longpoll, poll_body
from pushwire.http.longpoll_deadlines import SLOT, LongPollDeadlines, deadlines

if TYPE_CHECKING:
    from pushwire.core.permissions import Permissions
    from pushwire.http.auth import Caller
    from pushwire.http.state import HttpStats

log = logging.getLogger(__name__)

# why a stream ends (Sink.close): the client may resume with its cursor after the first
# two; "revoked": not with the same credentials
OVERFLOW = "overflow"
SHUTDOWN = "shutdown"
REVOKED = "revoked"

# the most entries a long-poll looks at when it starts behind the log (see `start`)
_CATCH_UP = 1000

_REPLAYING = 0
_LIVE = 1
_CLOSED = 2


class Sink(Protocol):
    """Where a stream reader writes (an SSE response, a WebSocket connection)."""

    def send(self, data: bytes) -> None:
        """Write pre-encoded bytes; shared with other readers: never mutate them."""

    def close(self, reason: str) -> None:
        """The reader ends the stream (OVERFLOW, SHUTDOWN or REVOKED); called once."""

    def writable(self) -> bool:
        """False while the transport's write buffer is over its high-water mark (then
        the transport calls the reader's `resume()` when it drains)."""


class LongPollWire(Protocol):
    """The connection of a held long-poll, as a wake writes to it (`LongPollWaiter.wire`)."""

    closing: bool  # it closes once the response under way is complete: not kept alive

    @property
    def transport(self) -> asyncio.WriteTransport | None: ...


class ReplySink(Protocol):
    """Where a long-poll waiter answers (exactly one of these, once)."""

    def reply(self, body: bytes, cursor: str) -> None:
        """200 with a JSON poll body (shared bytes: never mutate) and its cursor."""

    def write_reply(self, body: bytes, cursor: str) -> None:
        """`reply` during a publish's wake: only what the client must get now (its
        bytes written); `replied` follows once every woken waiter has written."""

    def replied(self) -> None:
        """The rest of `reply` after `write_reply`. The sink may keep the waiter in its
        group `between` its client's requests (sets `LongPollWaiter.between`)."""

    def not_modified(self, cursor: str) -> None:
        """304: the cursor came as If-None-Match and nothing came after it."""

    def refuse(self, reason: str) -> None:
        """401: the credentials were revoked while the request was held; or, after a
        reply, while the sink kept the waiter `between` requests (nothing to answer)."""


class StreamFormat(Protocol):
    """How one stream encodes what the reader hands it."""

    transport: str  # for the per-transport counters ("sse", "ws")

    def message(self, entry: LogEntry, epoch: str) -> bytes:
        """The message's frame (normally the entry's cached encoding, http/encode.py)."""

    def gap(self, cursor: str, epoch: str) -> bytes:
        """The frame telling the client that messages after `cursor` are gone."""


async def read_visible(
    log: MessageLog,
    flt: str,
    after: int,
    limit: int,
    floor: int,
    caller: Caller | None,
    max_bytes: int = 0,
) -> ReadResult:
    """`log.fetch` (entries only on disk read back), keeping only the messages the caller
    may receive (a wildcard filter can match topics the ACL denies, e.g. allow `#` and deny
    `secret/#`). The cursor still moves past the skipped ones; a page of nothing but
    skipped messages is followed by the next. `max_bytes`: about how much one page holds."""
    while True:
        result = await log.fetch(flt, after, limit, floor, max_bytes)
        if caller is None:
            return result
        visible = [e for e in result.entries if caller.can_receive(e.message.topic)]
        if len(visible) != len(result.entries):
            result.entries = visible
        if visible or not result.more or result.gap:
            return result
        after = result.next_id


def read_visible_now(
    log: MessageLog,
    flt: str,
    after: int,
    limit: int,
    floor: int,
    caller: Caller | None,
    max_bytes: int = 0,
) -> ReadResult | None:
    """`read_visible` without waiting: None when the read reaches messages only on disk
    (then `await read_visible`). Always a result with the memory engine."""
    while True:
        result = log.read(flt, after, limit, floor, max_bytes)
        if result.cold:
            return None
        if caller is None:
            return result
        visible = [e for e in result.entries if caller.can_receive(e.message.topic)]
        if len(visible) != len(result.entries):
            result.entries = visible
        if visible or not result.more or result.gap:
            return result
        after = result.next_id


async def read_from(
    log: MessageLog,
    flt: str,
    cursor: Cursor,
    limit: int,
    caller: Caller | None,
    max_bytes: int = 0,
) -> ReadResult:
    """A poll: resolve the cursor and read one page of what the caller may receive."""
    start = log.resolve(flt, cursor)
    result = await read_visible(log, flt, start.after, limit, start.floor, caller, max_bytes)
    result.gap = result.gap or start.gap
    return result


def entry_longpoll_reply(entry: LogEntry, epoch: str) -> tuple[bytes, str]:
    """The long-poll reply of this message and its cursor, cached on the entry: every
    waiter it wakes gets the same two objects (so a transport can also keep the whole
    response it builds from them, http/streams.py)."""
    wire = entry.wire
    if wire is not None:
        found: tuple[bytes, str] | None = wire.get("lp+cursor")
        if found is not None:
            return found
    reply = (entry_longpoll(entry, epoch), format_cursor(epoch, entry.id))
    wire = entry.wire
    assert wire is not None  # entry_longpoll made it
    wire["lp+cursor"] = reply
    return reply


def _visible(entry: LogEntry, caller: Caller | None) -> bool:
    message = entry.message
    if message.expires_at is not None and message.expired():
        return False
    return caller is None or caller.can_receive(message.topic)


class StreamReader:
    """One filter read from a cursor into a `Sink`: backlog, then live (SSE, a WebSocket
    subscription). A log `Listener`; also what the revocation index tracks (`revoke`)."""

    __slots__ = (
        "_phase",
        "_waiter",
        "caller",
        "ending",
        "filter",
        "floor",
        "fmt",
        "gap",
        "last",
        "limit",
        "log",
        "max_bytes",
        "pending",
        "pending_bytes",
        "sink",
        "stats",
    )

    def __init__(
        self,
        log: MessageLog,
        flt: str,
        sink: Sink,
        fmt: StreamFormat,
        stats: HttpStats,
        *,
        caller: Caller | None = None,
        limit: int = 10_000,
        max_bytes: int = 0,
    ) -> None:
        self.log = log
        self.filter = flt
        self.sink = sink
        self.fmt = fmt
        self.stats = stats
        self.caller = caller  # None: no ACL filtering (embedded use, tests)
        self.limit = limit
        self.max_bytes = max_bytes
        self.last = 0  # highest id handled (sent, or skipped as expired or denied)
        self.floor = 0  # evictions up to this id are no (new) gap for this reader
        self.gap = False  # a gap to report before the next backlog page
        self._phase = _REPLAYING
        # live entries waiting (during the replay, or while the sink is not writable):
        # allocated only then, so an idle reader holds no buffer
        self.pending: deque[LogEntry] | None = None
        self.pending_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self.ending = ""  # overflowed during the replay: end with it once the replay is done

    @property
    def cursor(self) -> str:
        return format_cursor(self.log.epoch, self.last)

    @property
    def live(self) -> bool:
        return self._phase == _LIVE

    @property
    def closed(self) -> bool:
        return self._phase == _CLOSED

    def open(self, cursor: Cursor) -> int:
        """Register with the log, then resolve `cursor`, in one step: whatever is published
        from here on reaches `notify`, and the backlog read covers what came before.
        Returns the id the replay starts after."""
        self.log.listen(self.filter, self)
        start = self.log.resolve(self.filter, cursor)
        self.last, self.gap, self.floor = start.after, start.gap, start.floor
        return start.after

    # -- the backlog ----------------------------------------------------------------------

    async def replay_page(self, page: int, read_max_bytes: int = 0) -> bool:
        """Send one backlog page (and the gap before it, if any); True while more follow.
        After the last page the reader is live: what waited meanwhile is sent, minus what
        the backlog already had."""
        if self._phase != _REPLAYING:
            return False
        result = await read_visible(
            self.log, self.filter, self.last, page, self.floor, self.caller, read_max_bytes
        )
        if self._phase != _REPLAYING:
            return False  # closed while reading
        return self._page(result)

    def replay_now(self, page: int, read_max_bytes: int = 0) -> bool:
        """The replay without waiting, when it can be done so (the backlog fits one page
        and nothing of it is only on disk: always for `latest`): True when the reader is
        live now. False: nothing was sent; `await replay()` (or `replay_page`) instead.
        Spares a new stream the task an async replay needs."""
        if self._phase != _REPLAYING:
            return self._phase == _LIVE
        result = self.log.read(self.filter, self.last, page, self.floor, read_max_bytes)
        if result.cold or result.more:
            return False
        caller = self.caller
        if caller is not None and result.entries:
            result.entries = [e for e in result.entries if caller.can_receive(e.message.topic)]
        self._page(result)
        return self._phase == _LIVE

    def _page(self, result: ReadResult) -> bool:
        log = self.log
        epoch = log.epoch
        if self.gap or result.gap:
            self.gap = False
            self.floor = log.last_id  # reported: those evictions are no news any more
            self.stats.gaps += 1
            self.sink.send(self.fmt.gap(format_cursor(epoch, self.last), epoch))
        entries = result.entries
        if entries:
            self.stats.delivered(self.fmt.transport, entries)
            message, send = self.fmt.message, self.sink.send
            for entry in entries:
                send(message(entry, epoch))
        self.last = result.next_id
        if result.more:
            return True
        self._go_live()
        return False

    async def replay(self, page: int, read_max_bytes: int = 0) -> None:
        """The whole backlog, waiting for the sink to drain between pages."""
        if self.replay_now(page, read_max_bytes):
            return
        while await self.replay_page(page, read_max_bytes):
            if not self.sink.writable():
                await self._writable()

    async def _writable(self) -> None:
        if self._phase == _CLOSED:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _go_live(self) -> None:
        if self.ending:
            self.fail(self.ending)
            return
        self._phase = _LIVE
        self._flush()

    # -- live messages --------------------------------------------------------------------

    def notify(self, entry: LogEntry) -> None:
        """A matching message was appended (synchronously, in the publish)."""
        if self._phase == _LIVE and self.pending is None and self.sink.writable():
            self._deliver(entry)
        elif self._phase != _CLOSED and not self.ending:
            self._hold(entry)

    def _deliver(self, entry: LogEntry) -> None:
        if entry.id <= self.last:
            return  # the backlog had it
        self.last = entry.id
        if _visible(entry, self.caller):
            self.stats.delivered_one(self.fmt.transport, entry)
            self.sink.send(self.fmt.message(entry, self.log.epoch))

    def _hold(self, entry: LogEntry) -> None:
        pending = self.pending
        if pending is None:
            pending = self.pending = deque()
        size = entry.size
        if len(pending) >= self.limit or (
            self.max_bytes and pending and self.pending_bytes + size > self.max_bytes
        ):
            if self._phase == _REPLAYING:
                # the backlog is in the log: finish the replay, then end the stream
                self.ending = OVERFLOW
                self.log.unlisten(self.filter, self)
                self.pending, self.pending_bytes = None, 0
            else:
                self.fail(OVERFLOW)
            return
        pending.append(entry)
        self.pending_bytes += size

    def _flush(self) -> None:
        pending = self.pending
        if pending is None:
            return
        sink = self.sink
        while pending and self._phase == _LIVE and sink.writable():
            entry = pending.popleft()
            self.pending_bytes -= entry.size
            self._deliver(entry)
        if not pending:
            self.pending, self.pending_bytes = None, 0

    def resume(self) -> None:
        """The sink drained (the transport calls this): send what waited."""
        if self._phase == _LIVE:
            self._flush()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the end ----------------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """End the stream and tell the sink why (once)."""
        if self._phase == _CLOSED:
            return
        if reason == OVERFLOW:
            self.stats.stream_overflows += 1
        self._stop()
        self.sink.close(reason)

    def close(self) -> None:
        """The log is shutting down (Listener)."""
        self.fail(SHUTDOWN)

    def revoke(self, reason: str) -> None:
        """The caller's credentials stopped being valid (the revocation index)."""
        self.fail(REVOKED)

    def cancel(self) -> None:
        """The client went away: stop, without a word to the sink."""
        if self._phase != _CLOSED:
            self._stop()

    def _stop(self) -> None:
        self._phase = _CLOSED
        self.log.unlisten(self.filter, self)
        self.pending, self.pending_bytes = None, 0
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Walk:
    """What the long-poll waiters one publish's walk over the log's listeners answers share
    (one per log, `_walk_of`): the entry, its reply body and cursor (encoded once), whether
    it has expired, the last caller permissions checked against its topic and their answer
    (anonymous callers share one `Permissions`: one check per walk, not per waiter; the
    rules cannot change during the walk, which is synchronous); and the waiters answered,
    whose bookkeeping is settled together once the walk is over (`settle`, through
    `MessageLog.settle_later`): leaving the listener groups, the delivery counters (one
    update per walk), each sink's `replied`."""

    __slots__ = ("allowed", "body", "cursor", "entry", "expired", "kept", "log", "perms", "woken")

    def __init__(self, log: MessageLog) -> None:
        self.log = log
        self.entry: LogEntry | None = None
        self.body = b""
        self.cursor = ""
        # the kept-alive response of `body` and `cursor`, once a sink wrote it (b"": not
        # yet): the waiters after it with a `wire` write it straight (`LongPollWaiter.wire`)
        self.kept = b""
        self.expired = False
        self.perms: Permissions | None = None
        self.allowed = False
        self.woken: list[LongPollWaiter] = []

    def begin(self, entry: LogEntry) -> None:
        """The walk of `entry` reaches its first long-poll waiter."""
        self.entry = entry
        message = entry.message
        self.expired = message.expires_at is not None and message.expired()
        self.body, self.cursor = entry_longpoll_reply(entry, self.log.epoch)
        self.kept = b""
        self.perms = None

    def settle(self) -> None:
        """After the walk (`MessageLog.settle_later`)."""
        woken, self.woken = self.woken, []
        entry, self.entry, self.perms = self.entry, None, None
        self.body = self.kept = b""  # a full response held until the next walk otherwise
        if not woken:
            return
        log_ = self.log
        # one pass: runs of one stats object (one per HTTP app) are counted at once; each
        # sink's `replied`; a waiter its sink keeps `between` requests stays in its listener
        # group (its connection's next long-poll re-holds it there), the others leave
        # theirs, runs of one filter at once
        stats = woken[0].stats
        counted = 0
        flt = ""
        run: list[LongPollWaiter] = []
        for waiter in woken:
            if waiter.stats is not stats:
                if entry is not None:
                    _delivered(stats, entry, counted)
                stats, counted = waiter.stats, 0
            counted += 1
            try:
                waiter.sink.replied()
            except Exception:
                # one waiter's failure must not leave the others half answered
                log.exception("settling a woken long-poll failed")
            if waiter.between:
                continue
            if waiter.filter != flt:
                if run:
                    log_.unlisten_all(flt, run)
                flt, run = waiter.filter, []
            run.append(waiter)
        if entry is not None:
            _delivered(stats, entry, counted)
        if run:
            log_.unlisten_all(flt, run)


def _delivered(stats: HttpStats, entry: LogEntry, count: int) -> None:
    """`HttpStats.delivered_one` of `count` long-poll deliveries of `entry` at once."""
    stats.messages_out["longpoll"] += count
    latency = stats.delivery_latency["longpoll"]
    value = time.time() - entry.message.created_at
    latency.counts[bisect_left(latency.bounds, value)] += count
    latency.sum += value * count


_walks: weakref.WeakKeyDictionary[MessageLog, _Walk] = weakref.WeakKeyDictionary()


def _walk_of(log_: MessageLog) -> _Walk:
    walk = _walks.get(log_)
    if walk is None:
        walk = _walks[log_] = _Walk(log_)
    return walk


class LongPollWaiter:
    """A held long-poll: answered by the first matching message the caller may receive
    (the one-message body every woken waiter shares, encoded once), by its deadline, by
    shutdown, or refused on revocation. A log `Listener`; no task, no future, no re-read
    of the log when it wakes.

    Reusable: a kept-alive connection that long-polls again holds the same waiter again
    (`restart`), so a re-ask allocates nothing here. Its deadline is an entry in the
    loop's shared buckets (http/longpoll_deadlines.py), not a timer of its own, and moves
    lazily: a later deadline only moves a number, and the waiter is filed again when its
    bucket comes due; an answered waiter stays there until then. `cancel` (the client
    left) takes it out."""

    __slots__ = (
        "after",
        "between",
        "caller",
        "deadline",
        "done",
        "filter",
        "from_etag",
        "log",
        "perms",
        "requested",
        "sink",
        "slot",
        "stats",
        "timers",
        "walk",
        "wire",
        "written",
    )

    def __init__(
        self,
        log: MessageLog,
        flt: str,
        sink: ReplySink,
        stats: HttpStats,
        *,
        caller: Caller | None,
        after: int,
        from_etag: bool = False,
        requested: int | None = None,
    ) -> None:
        self.log = log
        self.filter = flt
        self.sink = sink
        self.stats = stats
        self.caller = caller
        # the caller's permissions (a `Caller` is frozen): read in a publish's walk without
        # the caller object (`given` changes both)
        self.perms = caller.permissions if caller is not None else None
        self.after = after  # the caller has everything matching up to here
        self.from_etag = from_etag
        self.requested = requested  # the id of the cursor it asked with (for 304)
        self.done = False
        # answered by a wake and still in its listener group, until its connection asks
        # again (`restart`) or goes (`leave`, `cancel`): set by the sink (`replied`); a
        # message meanwhile is not for it (`done`), the next request's cursor finds it
        self.between = False
        self.deadline = 0.0
        self.slot = 0  # its deadline bucket in `timers` (0: none)
        self.timers: LongPollDeadlines | None = None
        self.walk = _walk_of(log)  # what a publish's walk shares with the other waiters
        # while held in the usual state (set by the sink, http/streams.py `_LongPoller`):
        # the connection a wake may write the walk's kept-alive response to itself, when it
        # is not closing and its transport is open; the sink's `replied` then does what
        # `write_reply` would have done first. Per woken waiter the walk then reads this
        # object, the connection and its transport, not the sink, the request's cycle and
        # the caller (at N = 10,000 each of those is a cache miss before the write)
        self.wire: LongPollWire | None = None
        self.written: str | None = None  # the cursor of the response written that way

    def given(self, caller: Caller | None, flt: str) -> None:
        """Wait for another caller object or filter from now on (not held now)."""
        self.caller, self.filter = caller, flt
        self.perms = caller.permissions if caller is not None else None

    def start(self, deadline: float) -> None:
        """Wait (call after a read that found nothing: `after` is that read's next id)."""
        log = self.log
        self.done = self.between = False
        log.listen(self.filter, self)  # (a no-op for one still in its group)
        self.arm(deadline)
        if log.last_id > self.after:
            # published while that read waited for the disk: what is that new is still in
            # memory, so one look now hands it over
            for entry in log.read(self.filter, self.after, _CATCH_UP).entries:
                self.notify(entry)
                if self.done:
                    break

    def restart(self, after: int, from_etag: bool, requested: int | None, deadline: float) -> None:
        """Wait again, for the same caller and filter, once the previous wait answered
        (`start` inline: a kept-alive client's every re-ask comes here)."""
        self.after = after
        self.from_etag = from_etag
        self.requested = requested
        log = self.log
        self.done = False
        if self.between:
            self.between = False  # still in its group
        else:
            log.listen(self.filter, self)
        self.deadline = deadline
        slot = self.slot
        if not slot or (slot - 1) * SLOT >= deadline:  # (`arm`)
            self.arm(deadline)
        # else: its bucket comes due first and files it again for the rest (`_arm`)
        if log.last_id > after:
            for entry in log.read(self.filter, after, _CATCH_UP).entries:
                self.notify(entry)
                if self.done:
                    break

    def arm(self, deadline: float) -> None:
        """File its deadline (moved later lazily: see the class)."""
        self.deadline = deadline
        slot = self.slot
        if slot:
            if (slot - 1) * SLOT < deadline:
                # its bucket comes due no later than `deadline`'s own would (first, or
                # the same slot): it files it again for the rest when it is early
                return
            assert self.timers is not None
            self.timers.remove(self)
        timers = self.timers = deadlines()
        timers.add(self, deadline)

    def due(self, now: float) -> None:
        """Its deadline bucket came due (`LongPollDeadlines`)."""
        if self.done:
            return  # answered meanwhile
        if now < self.deadline:
            assert self.timers is not None
            self.timers.add(self, self.deadline)  # held again since: the rest of the wait
            return
        self.expire()

    def notify(self, entry: LogEntry) -> None:
        if self.done or entry.id <= self.after:
            return
        self.after = entry.id
        log = self.log
        if log.waking:
            # a publish's walk over the listeners: check and write now, with what every
            # waiter of the walk shares (`_Walk`); the rest after the walk, so that the next
            # waiters' bytes are not behind this one's bookkeeping; `done` already stops a
            # second answer
            walk = self.walk
            if walk.entry is not entry:
                walk.begin(entry)
            if walk.expired:
                return
            perms = self.perms
            if perms is not None:
                if perms is not walk.perms:
                    walk.perms = perms
                    walk.allowed = perms.can_receive(entry.message.topic)
                if not walk.allowed:
                    return  # not for this caller: wait on
            self.done = True
            woken = walk.woken
            if not woken:
                log.settle_later(walk)
            woken.append(self)
            wire = self.wire
            if wire is not None and walk.kept and not wire.closing:
                transport = wire.transport
                if transport is not None and not transport.is_closing():
                    transport.write(walk.kept)
                    self.written = walk.cursor
                    return
            self.sink.write_reply(walk.body, walk.cursor)
            return
        if not _visible(entry, self.caller):
            return  # not for this caller: wait on
        body, cursor = entry_longpoll_reply(entry, log.epoch)
        self._finish()
        self.stats.delivered("longpoll", (entry,))
        self.sink.reply(body, cursor)

    def expire(self) -> None:
        """The deadline passed (or the server is stopping): the empty reply, whose cursor
        is past everything published meanwhile (none of it was for this caller)."""
        if self.done:
            return
        self._finish()
        log = self.log
        next_id = max(self.after, log.last_id)
        cursor = format_cursor(log.epoch, next_id)
        if self.from_etag and self.requested == next_id:
            self.sink.not_modified(cursor)
        else:
            self.sink.reply(poll_body([], log.epoch, next_id, False, False), cursor)

    def close(self) -> None:
        """The log is shutting down: answer now (and leave the loop's deadlines)."""
        self.expire()
        if self.slot and self.timers is not None:
            self.timers.remove(self)

    def revoke(self, reason: str) -> None:
        if not self.done:
            self._finish()
            self.sink.refuse(reason)
        elif self.between:
            # not held: nothing to answer, but its connection is no longer a client of
            # these credentials (its sink leaves the client list and the group)
            self.sink.refuse(reason)

    def cancel(self) -> None:
        """The client went away (or the waiter is not held again): stop, drop the timer.
        A waiter kept `between` requests has left its group already: its sink (the only
        one that sets `between`, http/streams.py `_LongPoller`) calls its `leave` first."""
        if not self.done:
            self._finish()
        if self.slot and self.timers is not None:
            self.timers.remove(self)

    def leave(self) -> None:
        """No longer `between` requests: leave the listener group."""
        if self.between:
            self.between = False
            self.log.unlisten(self.filter, self)

    def _finish(self) -> None:
        self.done = True
        self.between = False
        self.log.unlisten(self.filter, self)


class QueueSink:
    """A `Sink` for a transport that sends from a coroutine (the Starlette/uvicorn path:
    an SSE response body, a WebSocket sender): what readers send waits here until the
    coroutine takes it; `on_drain` (the readers' `resume`) runs when it has."""

    __slots__ = ("_waiter", "chunks", "limit", "max_bytes", "on_drain", "queued_bytes", "reason")

    def __init__(self, limit: int, max_bytes: int = 0) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.chunks: list[bytes] = []
        self.queued_bytes = 0
        self.reason = ""  # set once closed
        self.on_drain: list[StreamReader] = []
        self._waiter: asyncio.Future[None] | None = None

    def send(self, data: bytes) -> None:
        if self.reason:
            return
        self.chunks.append(data)
        self.queued_bytes += len(data)
        self._wake()

    def close(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
            self._wake()

    def writable(self) -> bool:
        return len(self.chunks) < self.limit and (
            not self.max_bytes or self.queued_bytes < self.max_bytes
        )

    def take(self) -> list[bytes]:
        """What waits (then the readers may send what they held back)."""
        chunks = self.chunks
        if not chunks:
            return chunks
        self.chunks, self.queued_bytes = [], 0
        for reader in self.on_drain:
            if reader.pending is not None:
                reader.resume()
        return chunks

    async def wait(self, timeout: float | None) -> bool:
        """Until something waits or the sink is closed (True), or `timeout` passes."""
        if self.chunks or self.reason:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        handle = loop.call_later(timeout, _resolve, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()
        return bool(self.chunks or self.reason)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
