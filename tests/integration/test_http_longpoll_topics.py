"""Long-poll with one topic per client (per-user topics, the usual push-service shape).

Each client re-asks with the cursor of its last reply while the log's last id has moved on
with the other users' topics. Such a re-ask holds again without reading the log when the
client's own topic has nothing newer (`MessageLog.quiet_after`, counted in
`reads_spared`), and everything else keeps its answer: the next message of the topic is
delivered once, a reply after the timeout carries a cursor past the other topics, an
eviction past the cursor is a gap, a cursor of another epoch is a gap. Real sockets
against an in-process server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, longpoll_request, message_payloads, publish, until, waiters

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=100))


class _User:
    """A kept-alive long-poll client on its own topic."""

    def __init__(self, srv: InProcessServer, topic: str) -> None:
        assert srv.server is not None and srv.server.http_address is not None
        self.sock = socket.create_connection(srv.server.http_address, timeout=10)
        self.reader = Reader(self.sock)
        self.topic = topic
        self.cursor = "all"
        self.got: list[str] = []

    def ask(self, timeout: str = "30", head: str = "") -> None:
        self.sock.sendall(longpoll_request(self.topic, self.cursor, timeout, head=head))

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = self.reader.response()
        if status == 200:
            self.got += message_payloads(body)
            self.cursor = headers["pushwire-cursor"]
        return status, headers, body

    def close(self) -> None:
        self.sock.close()


def _spared(srv: InProcessServer) -> int:
    assert srv.server is not None
    log = srv.server.log
    return srv.call(lambda: log.reads_spared)


def _last_id(srv: InProcessServer) -> int:
    assert srv.server is not None
    log = srv.server.log
    return srv.call(lambda: log.last_id)


def _first(srv: InProcessServer, users: list[_User]) -> None:
    """Each user's first message, answered at once; then every user re-asks and is held."""
    for user in users:
        publish(srv, user.topic, f"{user.topic} 0".encode())
    for user in users:
        user.ask()
        assert user.answer()[0] == 200
    for user in users:
        user.ask()
    for user in users:
        until(lambda user=user: len(waiters(srv, user.topic)) == 1)  # type: ignore[misc]


def test_per_user_reasks_hold_without_reading_and_get_only_their_own(
    srv: InProcessServer,
) -> None:
    users = [_User(srv, f"user/{i}") for i in range(4)]
    try:
        _first(srv, users)
        for rnd in range(1, 4):
            spared = _spared(srv)
            for user in users:  # one message per user: each wakes its own waiter only
                publish(srv, user.topic, f"{user.topic} {rnd}".encode())
            for user in users:
                status, headers, _ = user.answer()
                assert status == 200 and headers["pushwire-gap"] == "false"
            # every re-ask but the last user's comes with a cursor below the log's last id
            for user in users:
                user.ask()
            for user in users:
                until(lambda user=user: len(waiters(srv, user.topic)) == 1)  # type: ignore[misc]
            assert _spared(srv) - spared >= len(users) - 1
        for user in users:
            assert user.got == [f"{user.topic} {n}" for n in range(4)]
    finally:
        for user in users:
            user.close()


def test_timeout_reply_moves_the_cursor_past_other_topics(srv: InProcessServer) -> None:
    mine, other = _User(srv, "user/a"), _User(srv, "user/b")
    try:
        publish(srv, mine.topic, b"a0")
        mine.ask()
        assert mine.answer()[0] == 200
        publish(srv, other.topic, b"b0")
        spared = _spared(srv)
        mine.ask(timeout="0.2")
        status, headers, body = mine.answer()  # held, then the empty reply
        assert _spared(srv) == spared + 1
        assert status == 200 and json.loads(body)["messages"] == []
        assert headers["pushwire-cursor"].endswith(f":{_last_id(srv)}")
        # the same with If-None-Match: not a 304, the cursor moved on
        cursor = mine.cursor
        publish(srv, other.topic, b"b1")
        mine.sock.sendall(
            longpoll_request(mine.topic, None, "0.2", head=f'If-None-Match: "{cursor}"\r\n')
        )
        status, headers, body = mine.answer()
        assert status == 200 and headers["pushwire-cursor"].endswith(f":{_last_id(srv)}")
        # and the next message of the topic still comes
        mine.ask()
        until(lambda: len(waiters(srv, mine.topic)) == 1)
        publish(srv, mine.topic, b"a1")
        assert mine.answer()[0] == 200 and mine.got == ["a0", "a1"]
    finally:
        mine.close()
        other.close()


def test_newer_message_of_the_topic_is_answered_at_once(srv: InProcessServer) -> None:
    mine = _User(srv, "user/a")
    try:
        publish(srv, mine.topic, b"a0")
        mine.ask()
        assert mine.answer()[0] == 200
        publish(srv, mine.topic, b"a1")
        publish(srv, "user/b", b"b0")
        spared = _spared(srv)
        mine.ask()
        status, headers, _ = mine.answer()
        assert status == 200 and mine.got == ["a0", "a1"]
        assert headers["pushwire-gap"] == "false" and _spared(srv) == spared
    finally:
        mine.close()


def test_topic_eviction_past_the_cursor_is_a_gap() -> None:
    """The topic's byte budget evicts its newer message: nothing is newer, but the reader
    is told of the gap (not held as quiet)."""
    with_budget = InProcessServer(log_max_messages=100, log_topic_memory_bytes=600)
    for srv in running(with_budget):
        mine = _User(srv, "user/a")
        try:
            publish(srv, mine.topic, b"a0")
            mine.ask()
            assert mine.answer()[0] == 200
            publish(srv, mine.topic, b"y" * 2000)  # over the topic's bytes: evicted
            publish(srv, "user/b", b"b0")
            mine.ask()
            status, headers, body = mine.answer()
            assert status == 200 and headers["pushwire-gap"] == "true", body
            assert json.loads(body)["gap"] is True
        finally:
            mine.close()


def test_cursor_of_another_epoch_is_a_gap(srv: InProcessServer) -> None:
    mine = _User(srv, "user/a")
    try:
        publish(srv, mine.topic, b"a0")
        publish(srv, "user/b", b"b0")
        mine.ask()
        assert mine.answer()[0] == 200
        epoch = mine.cursor.rpartition(":")[0]
        mine.cursor = f"x{epoch}:1"
        mine.ask()
        status, headers, body = mine.answer()
        assert status == 200 and headers["pushwire-gap"] == "true", body
        assert message_payloads(body) == ["a0"]
    finally:
        mine.close()
