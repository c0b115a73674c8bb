"""What an HTTP reader finds in the message log after one read's run of MQTT PUBLISHes
(the run may reach the log in one call: `Hub.hold_observers` + `MessageLog.observe_run`):
the same ids, payloads, gaps and retention as when every packet is taken one by one. Over
real sockets, on two in-process servers side by side: the default (a run of plain QoS 0/1
PUBLISHes goes through `_publish_run`) and one with a publish rate it never reaches, which
takes every packet one by one. The topics are at their count bound and a byte budget
sheds entries in the middle of the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from helpers import raw
from helpers.inproc import InProcessServer
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import PROTOCOL_V311, Publish

pytestmark = pytest.mark.pushwire_only("in-process servers")

ONE_BY_ONE = {"publish_rate_per_client": 1e9}  # a rate: never reached, but no batch
LOG = {"log_max_messages": 200, "log_topic_memory_bytes": 100_000, "connect_rate_per_client_id": 0}


@pytest.fixture
def servers() -> Iterator[tuple[InProcessServer, InProcessServer]]:
    batched = InProcessServer(**LOG).start()
    one_by_one = InProcessServer(**(LOG | ONE_BY_ONE)).start()
    try:
        yield batched, one_by_one
    finally:
        batched.stop()
        one_by_one.stop()


def publishes(first: int, count: int) -> bytes:
    """`count` PUBLISHes (QoS 1 and 0 mixed) in stretches over two topics; payloads grow
    past the topic's byte budget towards the end."""
    out = []
    for n in range(first, first + count):
        topic = "t/a" if n % 40 < 30 else "t/b"
        size = 40 if n < first + count - 40 else 3_000
        qos = 1 if n % 3 else 0
        payload = b"%05d:" % n + b"x" * size
        out.append(
            encode(Publish(topic, payload, qos, False, False, n if qos else None), PROTOCOL_V311)
        )
    return b"".join(out)


def poll(srv: InProcessServer, flt: str, since: str) -> tuple[list[tuple[int, str, str]], bool]:
    """Every message of `flt` after `since`, page by page: (id, topic, payload head), gap."""
    assert srv.server is not None and srv.server.http_address is not None
    host, port = srv.server.http_address
    url = f"http://{host}:{port}/v1/poll/{flt}"
    got: list[tuple[int, str, str]] = []
    gap = False
    while True:
        r = httpx.get(url, params={"since": since, "limit": 50}, timeout=10)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        got += [(m["id"], m["topic"], m["payload"][:6]) for m in body["messages"]]
        gap = gap or r.headers["Pushwire-Gap"] == "true"
        since = body["cursor"]
        if not body["more"]:
            return got, gap


def until_pingresp(client: raw.RawClient) -> None:
    """Read the PUBACKs of a write until the PINGRESP that follows them."""
    while client.recv_packet(timeout=10).type != raw.PINGRESP:
        pass


def run(srv: InProcessServer) -> tuple[Any, ...]:
    with raw.connected_client(srv.host, srv.mqtt_port, "run-pub") as pub:
        # the topics fill up to their count bound first, one write
        pub.send(publishes(1, 600) + raw.PINGREQ_BYTES)
        until_pingresp(pub)
        assert srv.server is not None and srv.server.http_address is not None
        host, port = srv.server.http_address
        before = httpx.get(
            f"http://{host}:{port}/v1/poll/t/%23", params={"since": "latest"}, timeout=10
        ).json()["cursor"]
        middle = before.split(":")[0] + ":650"  # a reader 50 messages into the run
        pub.send(publishes(601, 400) + raw.PINGREQ_BYTES)
        until_pingresp(pub)
    return (
        poll(srv, "t/%23", before),
        poll(srv, "t/%23", middle),
        poll(srv, "t/%23", "all"),
        poll(srv, "t/b", "all"),
    )


def test_a_run_logs_what_one_by_one_logs(servers: tuple[InProcessServer, InProcessServer]) -> None:
    batched, one_by_one = servers
    got = run(batched)
    assert got == run(one_by_one)
    after_before, after_middle, kept, kept_b = got
    # the run's messages got the next ids, in order; what retention dropped is a gap
    ids = [i for i, _, _ in after_before[0]]
    assert ids == sorted(ids) and ids[-1] == 1000
    assert after_middle[1]  # a reader behind what the count bound evicted is told
    assert [p for _, _, p in kept_b[0]][-1] == "00999:"
    assert len([1 for _, t, _ in kept[0] if t == "t/a"]) <= 200
