"""A kept-alive long-poll client on the owned protocol (http/streams.py `_LongPoller`): its
re-asks reuse one waiter and one deadline timer (nothing allocated per request for holding
it), and what the connection keeps between requests (the anonymous caller, the checked
filter and ACL answer) never outlives a change: an ACL rule or a user added applies to the
very next re-ask of the same connection. Real sockets against an in-process server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import (
    Reader,
    connect,
    longpoll_request,
    publish,
    publish_request,
    until,
    waiters,
)
from pushwire.core.acl import AclRule

pytestmark = pytest.mark.pushwire_only("the HTTP listener is pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def test_re_asks_on_one_connection_reuse_one_waiter_and_one_deadline_entry(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("re/a"))
        until(lambda: len(waiters(srv, "re/a")) == 1)
        (first,) = waiters(srv, "re/a")
        # its deadline: an entry in the loop's shared buckets (http/longpoll_deadlines.py)
        slot, timers = first.slot, first.timers
        assert slot and timers is not None and first in timers.buckets[slot]
        cursor = None
        for n in range(3):
            publish(srv, "re/a", b"m%d" % n)
            status, headers, body = reader.response()
            assert status == 200
            assert [m["payload"] for m in json.loads(body)["messages"]] == [f"m{n}"]
            cursor = headers["pushwire-cursor"]
            sock.sendall(longpoll_request("re/a", cursor))
            until(lambda: len(waiters(srv, "re/a")) == 1)
            (held,) = waiters(srv, "re/a")
            # held again: the same waiter, its deadline entry not filed anew
            assert held is first
            assert held.slot == slot
        # the connection's client (GET /v1/admin/clients) is listed while it is held,
        # with its filter
        clients = srv.call(first.sink.state.clients.list)
        assert [(c.transport, c.subscriptions) for c in clients] == [("longpoll", ("re/a",))]
        reader.file.close()  # with the socket: the client goes away
    until(lambda: not waiters(srv, "re/a"))
    # the client left: its deadline entry is gone with it
    assert first.slot == 0
    assert srv.call(lambda: first not in timers.buckets.get(slot, {}))


def test_a_later_deadline_reuses_the_timer_and_still_answers_in_time(
    srv: InProcessServer,
) -> None:
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("re/t", timeout="0.2"))
        status, headers, body = reader.response()  # the deadline: the empty answer
        assert status == 200 and json.loads(body)["messages"] == []
        sock.sendall(longpoll_request("re/t", headers["pushwire-cursor"], timeout="0.3"))
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["messages"] == []
        # and a message still wakes the same connection's next hold
        sock.sendall(longpoll_request("re/t", headers["pushwire-cursor"]))
        until(lambda: len(waiters(srv, "re/t")) == 1)
        publish(srv, "re/t", b"late")
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["messages"][0]["payload"] == "late"


def test_an_acl_rule_added_applies_to_the_next_re_ask(srv: InProcessServer) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("re/acl"))
        until(lambda: len(waiters(srv, "re/acl")) == 1)
        publish(srv, "re/acl", b"one")
        status, headers, _ = reader.response()
        assert status == 200
        rule = srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "read", "re/#")))
        sock.sendall(longpoll_request("re/acl", headers["pushwire-cursor"]))
        status, _, body = reader.response()
        assert status == 403, body
        assert json.loads(body)["error"]["code"] == "forbidden"
        assert rule.id is not None
        srv._run(auth.remove_rule(rule.id))
        sock.sendall(longpoll_request("re/acl", headers["pushwire-cursor"]))
        until(lambda: len(waiters(srv, "re/acl")) == 1)  # allowed again: held
        publish(srv, "re/acl", b"two")
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["messages"][0]["payload"] == "two"


def test_a_user_created_makes_the_next_anonymous_re_ask_unauthorized(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    server = srv.server
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("re/u", timeout="0"))
        status, headers, _ = reader.response()
        assert status == 200
        # anonymous is "auto": allowed from loopback only while there are no users
        srv._run(server.auth.add_user("dave", "a long enough password"))
        sock.sendall(longpoll_request("re/u", headers["pushwire-cursor"]))
        status, _, body = reader.response()
        assert status == 401, body


def test_a_long_poll_held_while_the_next_head_is_half_read_keeps_that_head(
    srv: InProcessServer,
) -> None:
    """Pipelined: long-poll A (held), long-poll B (waits its turn), then half of a publish's
    head. A's answer starts B, which is held while the parser is inside C's head: C's
    headers (its Content-Length) must survive B dropping what its own request left."""
    third = publish_request("re/p", b"third")
    cut = third.index(b"Content-Length")
    with connect(srv) as sock:
        reader = Reader(sock)
        held = longpoll_request("re/p")
        sock.sendall(held + held + third[:cut] + b"Content-")
        until(lambda: len(waiters(srv, "re/p")) == 1)
        publish(srv, "re/p", b"first")  # answers A; B is held with C's head half read
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["messages"][0]["payload"] == "first"
        until(lambda: len(waiters(srv, "re/p")) == 1)
        sock.sendall(third[cut + len(b"Content-") :])
        publish(srv, "re/p", b"second")  # answers B; then C is served
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["messages"][0]["payload"] == "second"
        status, _, body = reader.response()
        assert status == 201, body
        assert json.loads(body)["topic"] == "re/p"
        reader.file.close()


def test_kept_options_never_stand_in_for_an_if_none_match_header(srv: InProcessServer) -> None:
    """Options parsed from a query string are kept for the next request with the same
    query string; a request that also carries If-None-Match is parsed on its own."""
    with connect(srv) as sock:
        reader = Reader(sock)
        sock.sendall(longpoll_request("re/e", timeout="0"))
        status, headers, body = reader.response()
        assert status == 200 and json.loads(body)["messages"] == []
        tag = headers["etag"].encode()
        sock.sendall(longpoll_request("re/e", timeout="0"))  # the same query string: kept options
        assert reader.response()[0] == 200
        request = longpoll_request("re/e", timeout="0")
        sock.sendall(request[:-2] + b"If-None-Match: " + tag + b"\r\n\r\n")
        status, headers, body = reader.response()
        assert status == 304, body
        assert headers["etag"] == tag.decode()
        reader.file.close()
