"""One routing plane (issue 8): HTTP readers and MQTT sessions are subscribers of one tree.

The log's reader groups (one per filter live SSE/WebSocket/long-poll readers listen to)
are entries of the hub's subscription trie, and a topic's cached route carries the groups
the log wakes once it has given the message its id. A group arriving or leaving changes
the cached routes of the topics it matches in place, an MQTT (un)subscribe rebuilds them:
through all that churn, every subscriber (MQTT sessions, SSE streams on wildcard and exact
filters, one of them on the same filter as an MQTT session) gets every message it matches
exactly once, in order, whether published over HTTP or as a burst of MQTT publishes (the
log's run path), on one node (memory) and across two nodes on Redis (the fan-out reader's
receive side: readers on one node, publishers on the other).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from helpers.clients import PahoClient
from helpers.inproc import InProcessServer, running
from helpers.rawhttp import until
from pushwire.core.topics import matches

from .cluster_util import StartNode, cluster_node

__all__ = ["cluster_node"]
pytestmark = pytest.mark.pushwire_only("HTTP readers and engine=redis are pushwire's")

KEEP = 3  # messages a topic keeps: topics reach their bound, so runs take the steady path
TOPICS = ["pl/a/x", "pl/b/x", "pl/a/y", "pl/b/z", "q/a/x"]
STABLE_SSE = ["pl/+/x", "pl/a/#", "pl/a/x"]
STABLE_MQTT = ["pl/+/x", "pl/#"]
# a transient stream per round: a new group arrives, the last round's leaves (or, for
# "pl/+/x", a member joins and leaves the stable stream's group)
TRANSIENT = ["pl/b/+", "+/a/x", "pl/+/x", "pl/#", "q/#", "pl/a/x"]
SYNC = "pl/sync"  # the last topic of each round (see `run_churn`)
CHURN_MQTT = "pl/b/+"  # subscribed in even rounds, unsubscribed in odd ones
TIMEOUT = 10.0


@dataclass
class Node:
    host: str
    http_port: int
    mqtt_port: int


class SseStream:
    """One SSE stream over a raw socket: the messages it is sent, as they come."""

    def __init__(self, node: Node, flt: str, since: str | None = None) -> None:
        self.filter = flt
        self.sock = socket.create_connection((node.host, node.http_port), timeout=TIMEOUT)
        path = flt.replace("#", "%23").replace("+", "%2B")
        query = f"?since={since}" if since else ""
        self.sock.sendall(f"GET /v1/sse/{path}{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head

    def _more(self) -> None:
        got = self.sock.recv(1 << 16)
        assert got, f"the server closed the stream on {self.filter}"
        self.buf += got

    def message(self) -> tuple[str, str]:
        """The next message's (topic, payload); events other than messages fail."""
        while True:
            while b"\n\n" not in self.buf:
                self._more()
            raw, _, self.buf = self.buf.partition(b"\n\n")
            fields = dict(
                line.decode().split(": ", 1) for line in raw.split(b"\n") if line[:1] != b":"
            )
            if fields:
                assert "event" not in fields, fields  # no gap, no close
                data = json.loads(fields["data"])
                return data["topic"], data["payload"]

    def close(self) -> None:
        self.sock.close()


def mqtt_messages(client: PahoClient, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        m = client.get(TIMEOUT)
        out.append((m.topic, m.payload.decode()))
    return out


def cursor_now(http: httpx.Client, node: Node) -> str:
    r = http.get(
        f"http://{node.host}:{node.http_port}/v1/poll/pl%2F%23",
        params={"since": "latest"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text
    cursor: str = r.json()["cursor"]
    return cursor


def http_publish(http: httpx.Client, node: Node, topic: str, payload: str) -> None:
    r = http.post(
        f"http://{node.host}:{node.http_port}/v1/publish/{topic}",
        content=payload.encode(),
        timeout=TIMEOUT,
    )
    assert r.status_code in (200, 201), r.text


def expected(flt: str, sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(t, p) for t, p in sent if matches(flt, t)]


def run_churn(
    readers: Node,
    publishers: Node,
    rounds: int = 8,
    check: Callable[[set[str]], None] | None = None,
) -> None:
    """Stable MQTT and SSE subscribers on `readers`; messages published on `publishers`
    (HTTP in even rounds, a burst of MQTT publishes in odd ones), with reader groups and an
    MQTT subscription arriving and leaving between rounds. `check`: called with the filters
    read at the end, before anything closes."""
    mqtt = []
    for i, flt in enumerate(STABLE_MQTT):
        client = PahoClient(readers.host, readers.mqtt_port, f"plane-m{i}")
        client.connect()
        client.subscribe(flt, 0)
        mqtt.append((flt, client))
    churn = PahoClient(readers.host, readers.mqtt_port, "plane-churn")
    churn.connect()
    http = httpx.Client(timeout=TIMEOUT)  # one client: no TLS context made per request
    publisher = PahoClient(publishers.host, publishers.mqtt_port, "plane-pub")
    publisher.connect()
    streams = [SseStream(readers, flt, cursor_now(http, readers)) for flt in STABLE_SSE]
    transient: SseStream | None = None
    churning = False  # `churn` holds CHURN_MQTT

    def phase(r: int, part: int) -> None:
        """Publish each topic once (over MQTT, twice in a row: a run of one topic), then
        SYNC, and check what every subscriber got. SYNC is read by the "pl/#" session on
        `readers`: once it has it, that node has them all (one order from one publisher),
        so a cursor taken there next is past them."""
        assert transient is not None
        sent = []
        topics = [t for t in TOPICS for _ in range(1 + r % 2)]
        for k, topic in enumerate([*topics, SYNC]):
            payload = f"{r}-{part}-{k}-{topic}"
            sent.append((topic, payload))
            if r % 2:
                publisher.publish(topic, payload, 0)
            else:
                http_publish(http, publishers, topic, payload)
        for flt, client in mqtt:
            assert mqtt_messages(client, len(expected(flt, sent))) == expected(flt, sent)
        if churning:
            want = expected(CHURN_MQTT, sent)
            assert mqtt_messages(churn, len(want)) == want
        for stream in [*streams, transient]:
            want = expected(stream.filter, sent)
            got = [stream.message() for _ in range(len(want))]
            assert got == want, (r, part, stream.filter)

    try:
        for r in range(rounds):
            since = cursor_now(http, readers)
            if transient is not None:
                transient.close()
            # from a cursor: whatever the moment it joins its group, it misses nothing;
            # the routes cached in the last phase must list its group (or drop the last one)
            transient = SseStream(readers, TRANSIENT[r % len(TRANSIENT)], since)
            phase(r, 0)
            # an MQTT subscription changes: every route is rebuilt from the tree
            churning = not churning
            if churning:
                churn.subscribe(CHURN_MQTT, 0)
            else:
                churn.unsubscribe(CHURN_MQTT)
            phase(r, 1)
        # nothing came twice: the next message each one gets is this marker
        marker = ("pl/a/x", "marker")
        http_publish(http, publishers, *marker)
        for _, client in mqtt:
            assert mqtt_messages(client, 1) == [marker]
        for stream in streams:
            assert stream.message() == marker
        if check is not None and transient is not None:
            check({s.filter for s in [*streams, transient]})
    finally:
        if transient is not None:
            transient.close()
        for stream in streams:
            stream.close()
        for _, client in mqtt:
            client.disconnect()
        churn.disconnect()
        publisher.disconnect()
        http.close()


@pytest.fixture
def inproc() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=KEEP, sse_heartbeat=600))


def test_every_subscriber_gets_every_message_once_through_churn(inproc: InProcessServer) -> None:
    assert inproc.server is not None and inproc.server.http_address is not None
    node = Node(inproc.host, inproc.server.http_address[1], inproc.mqtt_port)
    hub = inproc.server.hub

    def one_group_per_filter_read(filters: set[str]) -> None:
        # the groups that left are gone from the hub's tree
        assert inproc.call(lambda: hub.reader_groups) == len(filters)

    run_churn(node, node, check=one_group_per_filter_read)
    until(lambda: inproc.call(lambda: hub.reader_groups) == 0)


def test_across_two_redis_nodes_readers_get_every_message_once(
    cluster_node: StartNode,
) -> None:
    publishers = cluster_node("--log-max-messages", str(KEEP))
    readers = cluster_node("--log-max-messages", str(KEEP), "--sse-heartbeat", "600")
    assert readers.http_port is not None and publishers.http_port is not None
    run_churn(
        Node(readers.host, readers.http_port, readers.mqtt_port),
        Node(publishers.host, publishers.http_port, publishers.mqtt_port),
    )
