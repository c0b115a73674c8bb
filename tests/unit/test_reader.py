"""The one reader (http/reader.py), driven in-process through an in-memory Sink: hand-over
from backlog to live without loss or repeats, gaps, ACL per message, backpressure, and
encode-once for every reader of a wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from pushwire.core.acl import AclRule
from pushwire.core.auth import AuthService
from pushwire.core.auth_settings import AuthSettings
from pushwire.core.hub import Hub
from pushwire.core.identity import Identity
from pushwire.core.log import ALL, LATEST, Cursor, LogEntry, MessageLog, Retention
from pushwire.core.message import Message
from pushwire.core.passwords import Passwords
from pushwire.engines.auth_store import MemoryAuthStore
from pushwire.engines.memory import MemoryEngine
from pushwire.http.auth import Caller, make_caller
from pushwire.http.encode import entry_json
from pushwire.http.reader import OVERFLOW, REVOKED, SHUTDOWN, LongPollWaiter, StreamReader
from pushwire.http.state import HttpStats


class MemorySink:
    """A Sink that keeps what it is sent; `open` says whether it takes more now."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed: str | None = None
        self.open = True

    def send(self, data: bytes) -> None:
        assert self.closed is None, "sent after close"
        self.sent.append(data)

    def close(self, reason: str) -> None:
        assert self.closed is None, "closed twice"
        self.closed = reason

    def writable(self) -> bool:
        return self.open

    def frames(self) -> list[dict[str, object]]:
        return [json.loads(f) for f in self.sent]

    def ids(self) -> list[object]:
        return [f["id"] for f in self.frames() if f["type"] == "msg"]


class JsonFormat:
    """Frames as small JSON objects (the reader does not care what a format looks like)."""

    transport = "sse"

    def message(self, entry: LogEntry, epoch: str) -> bytes:
        return b'{"type":"msg","id":%d,"json":%s}' % (entry.id, entry_json(entry, epoch).encode())

    def gap(self, cursor: str, epoch: str) -> bytes:
        return json.dumps({"type": "gap", "cursor": cursor}).encode()


class RecordingReply:
    def __init__(self) -> None:
        self.answers: list[tuple[str, bytes | None, str]] = []

    def reply(self, body: bytes, cursor: str) -> None:
        self.answers.append(("reply", body, cursor))

    def write_reply(self, body: bytes, cursor: str) -> None:
        self.answers.append(("reply", body, cursor))

    def replied(self) -> None:
        pass

    def not_modified(self, cursor: str) -> None:
        self.answers.append(("304", None, cursor))

    def refuse(self, reason: str) -> None:
        self.answers.append(("401", None, reason))


def make_log(**retention: int) -> MessageLog:
    return MessageLog(MemoryEngine(), Retention(**retention) if retention else None)


def reader_on(
    log: MessageLog, flt: str, sink: MemorySink, caller: Caller | None = None, limit: int = 100
) -> StreamReader:
    return StreamReader(log, flt, sink, JsonFormat(), HttpStats(), caller=caller, limit=limit)


def pub(log: MessageLog, topic: str, payload: bytes = b"x") -> LogEntry:
    entry = log.append(Message(topic, payload))
    assert entry is not None
    return entry


async def test_publishes_racing_the_replay_arrive_once_and_in_order() -> None:
    log = make_log()
    for i in range(5):
        pub(log, "t", b"old%d" % i)
    sink = MemorySink()
    reader = reader_on(log, "t", sink)
    reader.open(ALL)
    pub(log, "t")  # 6: after registering, before the first page: live buffer AND backlog
    assert await reader.replay_page(2)  # 1, 2
    pub(log, "t")  # 7: published between pages
    assert await reader.replay_page(2)  # 3, 4
    pub(log, "t")  # 8
    while await reader.replay_page(2):
        pass
    assert reader.live and reader.pending is None
    pub(log, "t")  # 9: live, straight to the sink
    pub(log, "other")  # 10: not this filter
    assert sink.ids() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert reader.last == 9


async def test_live_messages_wait_for_the_replay_and_are_deduplicated() -> None:
    log = make_log()
    sink = MemorySink()
    reader = reader_on(log, "a/#", sink)
    reader.open(LATEST)
    pub(log, "a/1")
    pub(log, "a/2")
    assert sink.sent == []  # replaying: held, not sent ahead of the backlog
    assert not await reader.replay_page(10)
    assert sink.ids() == [1, 2]  # from the backlog read; the held copies were dropped
    pub(log, "a/3")
    assert sink.ids() == [1, 2, 3]


async def test_gap_on_eviction_is_reported_once_before_what_is_kept() -> None:
    log = make_log(max_messages=3)
    for _ in range(6):
        pub(log, "t")
    sink = MemorySink()
    reader = reader_on(log, "t", sink)
    reader.open(Cursor.after(1, log.epoch))
    await reader.replay(10)
    frames = sink.frames()
    assert frames[0] == {"type": "gap", "cursor": f"{log.epoch}:1"}
    assert sink.ids() == [4, 5, 6]
    assert sum(f["type"] == "gap" for f in frames) == 1


async def test_gap_on_another_epoch_replays_from_the_oldest_kept() -> None:
    log = make_log()
    for _ in range(3):
        pub(log, "t")
    sink = MemorySink()
    reader = reader_on(log, "t", sink)
    reader.open(Cursor.after(2, "an0ther3poch"))
    await reader.replay(10)
    assert sink.frames()[0]["type"] == "gap"
    assert sink.ids() == [1, 2, 3]


@pytest.fixture
async def bob() -> AsyncIterator[Caller]:
    cheap = Passwords(time_cost=1, memory_cost_kib=8, parallelism=1)
    service = AuthService(MemoryAuthStore(), AuthSettings(), passwords=cheap)
    await service.start()
    await service.add_user("bob", "pw")
    await service.add_rule(AclRule("all", None, "allow", "read", "t/#"))
    await service.add_rule(AclRule("user", "bob", "deny", "read", "t/secret/#"))
    yield make_caller(service, Identity("bob"), "10.0.0.1")
    await service.stop()


async def test_acl_is_checked_per_message_in_the_backlog_and_live(bob: Caller) -> None:
    log = make_log()
    pub(log, "t/secret/1")
    pub(log, "t/open/2")
    sink = MemorySink()
    reader = reader_on(log, "t/#", sink, caller=bob)
    reader.open(ALL)
    await reader.replay(10)
    pub(log, "t/secret/3")
    pub(log, "t/open/4")
    assert sink.ids() == [2, 4]
    assert reader.last == 4  # the cursor moved past the denied ones


async def test_acl_is_checked_for_long_poll_waiters(bob: Caller) -> None:
    log = make_log()
    answer = RecordingReply()
    waiter = LongPollWaiter(log, "t/#", answer, HttpStats(), caller=bob, after=0)
    waiter.start(1e12)
    pub(log, "t/secret/1")
    assert answer.answers == []  # denied: still waiting
    pub(log, "t/open/2")
    ((kind, body, cursor),) = answer.answers
    assert kind == "reply" and body is not None
    assert [m["topic"] for m in json.loads(body)["messages"]] == ["t/open/2"]
    assert cursor == f"{log.epoch}:2"
    assert log.listener_count == 0


async def test_slow_sink_holds_live_messages_then_resumes_in_order() -> None:
    log = make_log()
    sink = MemorySink()
    reader = reader_on(log, "t", sink, limit=3)
    reader.open(LATEST)
    await reader.replay(10)
    sink.open = False
    for _ in range(3):
        pub(log, "t")
    held = reader.pending  # a local: mypy would keep "not None" for the attribute
    assert sink.sent == [] and held is not None and len(held) == 3
    sink.open = True
    reader.resume()
    assert sink.ids() == [1, 2, 3] and reader.pending is None
    pub(log, "t")
    assert sink.ids() == [1, 2, 3, 4]


async def test_slow_sink_past_its_bound_is_closed_with_overflow() -> None:
    log = make_log()
    sink = MemorySink()
    stats = HttpStats()
    reader = StreamReader(log, "t", sink, JsonFormat(), stats, limit=2)
    reader.open(LATEST)
    await reader.replay(10)
    sink.open = False
    for _ in range(3):
        pub(log, "t")
    assert sink.closed == OVERFLOW and reader.closed
    assert stats.stream_overflows == 1
    assert log.listener_count == 0
    pub(log, "t")  # nothing more reaches a closed reader
    assert sink.sent == []


async def test_overflow_during_the_replay_ends_after_the_backlog() -> None:
    log = make_log()
    sink = MemorySink()
    reader = reader_on(log, "t", sink, limit=2)
    reader.open(ALL)
    for _ in range(4):
        pub(log, "t")  # more than the reader holds while it has not replayed yet
    await reader.replay(10)
    assert sink.ids() == [1, 2, 3, 4]  # what the log had is still delivered
    assert sink.closed == OVERFLOW and reader.cursor == f"{log.epoch}:4"


async def test_revocation_and_shutdown_close_the_stream() -> None:
    log = make_log()
    one, two = MemorySink(), MemorySink()
    a, b = reader_on(log, "t", one), reader_on(log, "u", two)
    a.open(LATEST)
    b.open(LATEST)
    a.revoke("token revoked")
    assert one.closed == REVOKED
    log.close_listeners()
    assert two.closed == SHUTDOWN and log.listener_count == 0


async def test_every_reader_of_a_format_gets_the_same_bytes() -> None:
    log = make_log()
    from pushwire.http.sse import SseFormat

    sinks = [MemorySink() for _ in range(3)]
    for sink in sinks:
        r = StreamReader(log, "t", sink, SseFormat("latest"), HttpStats())
        r.open(LATEST)
        await r.replay(10)
    pub(log, "t", b"hello")
    first = sinks[0].sent[0]
    assert b"hello" in first
    assert all(s.sent[0] is first for s in sinks)  # one encoding, shared


async def test_waking_many_long_polls_shares_one_body_and_one_trie_entry() -> None:
    hub = Hub(MemoryEngine())
    log = MessageLog(hub.engine, plane=hub)
    answers = [RecordingReply() for _ in range(1000)]
    for answer in answers:
        LongPollWaiter(log, "t", answer, HttpStats(), caller=None, after=0).start(1e12)
    assert log.listener_count == 1000
    assert len(hub.subscriptions) == 1  # one filter, one entry in the hub's trie
    pub(log, "t", b"wake")
    bodies = {id(a.answers[0][1]) for a in answers}
    assert len(bodies) == 1  # one encoding for every waiter
    assert log.listener_count == 0 and len(hub.subscriptions) == 0


async def test_long_poll_timeout_answers_304_only_for_an_unchanged_etag() -> None:
    log = make_log()
    pub(log, "t")
    same = RecordingReply()
    LongPollWaiter(
        log, "t", same, HttpStats(), caller=None, after=1, from_etag=True, requested=1
    ).expire()
    assert same.answers == [("304", None, f"{log.epoch}:1")]
    moved = RecordingReply()
    waiter = LongPollWaiter(
        log, "t", moved, HttpStats(), caller=None, after=1, from_etag=True, requested=1
    )
    waiter.start(1e12)
    pub(log, "other")  # not for this filter, but the cursor moves past it
    waiter.expire()
    ((kind, body, cursor),) = moved.answers
    assert kind == "reply" and cursor == f"{log.epoch}:2"
    assert body is not None and json.loads(body)["messages"] == []


async def test_a_backlog_that_fits_a_page_is_replayed_without_waiting() -> None:
    log = make_log()
    for _ in range(3):
        pub(log, "t")
    small, big = MemorySink(), MemorySink()
    now = reader_on(log, "t", small)
    now.open(ALL)
    assert now.replay_now(10) and now.live  # no await: no task for a new stream
    assert small.ids() == [1, 2, 3]
    later = reader_on(log, "t", big)
    later.open(ALL)
    assert not later.replay_now(2) and big.sent == []  # more than a page: replay async
    await later.replay(2)
    assert big.ids() == [1, 2, 3] and later.live


async def test_a_long_poll_started_behind_the_log_answers_at_once() -> None:
    """Its first read waited for the disk while a message came: the waiter still gets it."""
    log = make_log()
    pub(log, "t")
    pub(log, "t", b"meanwhile")
    answer = RecordingReply()
    LongPollWaiter(log, "t", answer, HttpStats(), caller=None, after=1).start(1e12)
    ((kind, body, cursor),) = answer.answers
    assert kind == "reply" and body is not None and b"meanwhile" in body
    assert cursor == f"{log.epoch}:2" and log.listener_count == 0


def test_websocket_frames_are_cached_per_subscription_name_up_to_a_bound() -> None:
    from pushwire.http.encode import WS_NAMES_CACHED, entry_ws

    log = make_log()
    entry = pub(log, "t", b"hi")
    first = entry_ws(entry, log.epoch, '"s"', False)
    assert entry_ws(entry, log.epoch, '"s"', False) is first  # shared by every "s" reader
    assert json.loads(first)["sub"] == "s" and json.loads(first)["payload"] == "hi"
    again = entry_ws(entry, log.epoch, '"s"', True)
    assert json.loads(again)["redelivered"] is True and again is not first
    for i in range(WS_NAMES_CACHED + 5):  # a name per client must not grow the entry
        entry_ws(entry, log.epoch, f'"c{i}"', False)
    assert entry.wire is not None
    assert sum(k.startswith(("ws:", "ws!")) for k in entry.wire) == WS_NAMES_CACHED
