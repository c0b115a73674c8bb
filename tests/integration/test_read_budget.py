"""The MQTT bytes one event-loop turn decodes across all connections are capped
(`mqtt_read_bytes_per_turn`): when many publishers' reads are ready in the same turn, the
reads past the cap are kept undecoded, reading from those clients pauses, and they are
decoded on later turns, first deferred first. Nothing is lost or reordered per publisher,
and the loop's other work (the subscriber's writes) runs before the blast ends.

Real sockets against an in-process server: the server's loop is held while every publisher
writes its blast, so all the reads are ready in one turn, as under a fan-in storm."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from helpers import raw
from helpers.inproc import InProcessServer
from helpers.raw import RawClient, connected_client
from pushwire.core.message import Message
from pushwire.mqtt.packets import ReasonCode

PUBLISHERS = 20
MESSAGES = 50  # per publisher, in one write
DEADLINE = 10.0


def payload(publisher: int, n: int) -> bytes:
    return b"%02d-%05d" % (publisher, n)


def blast(publisher: int) -> bytes:
    return b"".join(
        raw.publish(f"fanin/{publisher}", payload(publisher, n)) for n in range(MESSAGES)
    )


@pytest.fixture(params=[1, 0], ids=["capped", "uncapped"])
def srv(request: pytest.FixtureRequest) -> Iterator[InProcessServer]:
    # 1 byte: every turn decodes one read (the first over the cap); 0: no cap
    server = InProcessServer(mqtt_read_bytes_per_turn=request.param)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def held_loop(srv: InProcessServer) -> threading.Event:
    """Block the server's loop until the returned event is set (what a long turn does)."""
    release = threading.Event()
    entered = threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(DEADLINE)

    srv.loop.call_soon_threadsafe(hold)
    assert entered.wait(DEADLINE)
    return release


def run_blast(srv: InProcessServer) -> dict[str, bool]:
    assert srv.server is not None
    hub = srv.server.hub
    sub = connected_client(srv.host, srv.mqtt_port, "sub", keepalive=60)
    pubs: list[RawClient] = []
    seen: dict[str, bool] = {}
    routed = 0

    def observe(message: Message) -> bool:
        # on the server's loop, between two of its callbacks: no sleep, no wait
        nonlocal routed
        if not message.topic.startswith("fanin/"):
            return False
        routed += 1
        if routed == PUBLISHERS * MESSAGES:
            # the subscriber's writes are flushed by a callback of the loop: its first
            # messages are in its socket only if the loop ran other work in between
            seen["delivered_before_end"] = raw.has_data(sub.sock)
        return False

    try:
        assert sub.subscribe(1, [("fanin/+", 0)]).granted == [0]
        for p in range(PUBLISHERS):
            pubs.append(connected_client(srv.host, srv.mqtt_port, f"pub{p}", keepalive=60))
        srv.call(lambda: hub.add_observer(observe))
        release = held_loop(srv)
        try:
            for p, pub in enumerate(pubs):
                pub.send(blast(p) + raw.PINGREQ_BYTES)
        finally:
            release.set()
        for pub in pubs:
            pub.expect(raw.PINGRESP, timeout=DEADLINE)  # every packet before it was run
        got: dict[int, list[bytes]] = {p: [] for p in range(PUBLISHERS)}
        for _ in range(PUBLISHERS * MESSAGES):
            packet = sub.recv_publish(timeout=DEADLINE)
            got[int(packet.topic.split("/")[1])].append(packet.payload)
        for p in range(PUBLISHERS):
            assert got[p] == [payload(p, n) for n in range(MESSAGES)]
        return seen
    finally:
        for client in [sub, *pubs]:
            client.close()


def test_other_clients_are_served_before_a_fan_in_blast_ends(
    srv: InProcessServer, request: pytest.FixtureRequest
) -> None:
    """The marker: when the blast's last message is routed, the subscriber already has its
    first ones in its socket (written by a later callback of the loop, as the Redis publish
    batcher is one). Without the cap every publisher's read is decoded in the turn they
    were all ready, and the subscriber gets nothing until then (the uncapped case shows it)."""
    seen = run_blast(srv)
    capped = srv.settings.mqtt_read_bytes_per_turn > 0
    assert seen == {"delivered_before_end": capped}


def test_publisher_closed_while_its_read_waits_is_cleaned_up() -> None:
    """The server closes a publisher (revoked rights) while its read waits for a later
    turn: its kept bytes go with it, everyone else's blast arrives whole and in order, and
    the connection is gone (nothing of it left in the budget's queue)."""
    srv = InProcessServer(mqtt_read_bytes_per_turn=1)
    srv.start()
    assert srv.server is not None
    hub, mqtt = srv.server.hub, srv.server.mqtt
    sub = connected_client(srv.host, srv.mqtt_port, "sub", keepalive=60)
    pubs: list[RawClient] = []
    closed: list[str] = []
    topics: set[str] = set()

    def observe(message: Message) -> bool:
        # the second publisher's first message is routed on a later turn than the first's,
        # when the reads of that first turn past the cap wait
        if message.topic.startswith("fanin/"):
            topics.add(message.topic)
        if len(topics) == 2 and not closed:
            waiting = [c for c in mqtt.connections if c._reads_waiting]
            assert waiting, "no read was kept for a later turn"
            closed.append(waiting[-1].client_id)
            waiting[-1].close(ReasonCode.NOT_AUTHORIZED)
        return False

    try:
        assert sub.subscribe(1, [("fanin/+", 0)]).granted == [0]
        for p in range(PUBLISHERS):
            pubs.append(connected_client(srv.host, srv.mqtt_port, f"pub{p}", keepalive=60))
        srv.call(lambda: hub.add_observer(observe))
        release = held_loop(srv)
        try:
            for p, pub in enumerate(pubs):
                pub.send(blast(p))
        finally:
            release.set()
        gone = int(closed_id(closed).removeprefix("pub"))
        sub.send(raw.PINGREQ_BYTES)  # after the rest: the marker that all was routed
        got: dict[int, list[bytes]] = {p: [] for p in range(PUBLISHERS)}
        while sum(len(v) for p, v in got.items() if p != gone) < (PUBLISHERS - 1) * MESSAGES:
            packet = sub.recv_publish(timeout=DEADLINE)
            got[int(packet.topic.split("/")[1])].append(packet.payload)
        for p in range(PUBLISHERS):
            expected = [payload(p, n) for n in range(MESSAGES)]
            assert got[p] == (expected[: len(got[p])] if p == gone else expected)
        deadline = time.monotonic() + DEADLINE
        while srv.call(lambda: (len(mqtt.connections), len(mqtt.read_budget.waiting))) != (
            PUBLISHERS,
            0,
        ):
            assert time.monotonic() < deadline, "the closed publisher is still held"
            time.sleep(0.01)
    finally:
        for client in [sub, *pubs]:
            client.close()
        srv.stop()


def closed_id(closed: list[str]) -> str:
    deadline = time.monotonic() + DEADLINE
    while not closed:
        assert time.monotonic() < deadline, "no publisher was closed"
        time.sleep(0.01)
    return closed[0]


STORM_PUBLISHERS = 8
STORM_BLAST = b"".join(raw.publish("storm/x", b"s" * 200) for _ in range(150))  # ~31 KB
PINGER_KEEPALIVE = 1  # seconds: the server closes it after 1.5 s without a byte
PINGS = 4  # one every PING_PERIOD: the storm outlasts a keepalive window (1.5 s)
PING_PERIOD = 0.5  # the client's own schedule, well inside its keepalive


def test_a_short_keepalive_client_is_answered_and_kept_through_a_deferred_storm() -> None:
    """While publishers keep the read budget biting (every turn defers reads), a client
    with a keepalive of 1 s pings every half second: each PINGREQ, deferred behind the
    storm's reads (the marker: its read was seen waiting in the budget's queue), gets its
    PINGRESP, and no client is closed for keepalive: a read that waits already counts as
    the client's sign of life. It fails when deferred reads are never decoded or reading
    them never resumes (no PINGRESP: the read waits for ever, and reading stays paused until
    the keepalive closes the client), and when a waiting read does not count for the
    keepalive (which closes the client only once a read waits longer than 1.5 periods, so
    the test looks at the connection's last sign of life while the read waits)."""
    srv = InProcessServer(mqtt_read_bytes_per_turn=1)
    srv.start()
    assert srv.server is not None
    hub, mqtt = srv.server.hub, srv.server.mqtt
    pinger = connected_client(srv.host, srv.mqtt_port, "pinger", keepalive=PINGER_KEEPALIVE)
    pubs: list[RawClient] = []
    stop = threading.Event()
    rounds = [0] * STORM_PUBLISHERS
    failures: list[BaseException] = []
    threads: list[threading.Thread] = []
    pinger_waited = 0
    keepalive_missed = 0  # the pinger's read waited, but its arrival did not count
    ping_sent_at = [0.0]  # time.monotonic() before the last PINGREQ went out

    def storm(p: int, pub: RawClient) -> None:
        # a blast and a PINGREQ, then wait for the PINGRESP: the blast was all decoded;
        # the next one follows at once, so this publisher always has a read ready
        try:
            while not stop.is_set():
                pub.send(STORM_BLAST + raw.PINGREQ_BYTES)
                pub.expect(raw.PINGRESP, timeout=DEADLINE)
                rounds[p] += 1
        except BaseException as exc:
            failures.append(exc)

    try:
        (pinger_conn,) = srv.call(lambda: [c for c in mqtt.connections if c.client_id == "pinger"])

        def observe(message: Message) -> bool:
            # on the server's loop, as a storm message is routed: is the pinger's read
            # kept for a later turn right now?
            nonlocal pinger_waited, keepalive_missed
            if pinger_conn._reads_waiting:
                pinger_waited += 1
                # the waiting read holds the last PINGREQ (the next goes out after its
                # PINGRESP): its arrival is the client's last sign of life
                if pinger_conn.conn.last_rx < ping_sent_at[0]:
                    keepalive_missed += 1
            return False

        for p in range(STORM_PUBLISHERS):
            pubs.append(connected_client(srv.host, srv.mqtt_port, f"storm{p}", keepalive=60))
        srv.call(lambda: hub.add_observer(observe))
        for p, pub in enumerate(pubs):
            threads.append(threading.Thread(target=storm, args=(p, pub), daemon=True))
            threads[-1].start()
        for _ in range(PINGS):
            stop.wait(PING_PERIOD)  # the client's ping schedule (a keepalive is about time)
            ping_sent_at[0] = time.monotonic()
            pinger.send(raw.PINGREQ_BYTES)
            pinger.expect(raw.PINGRESP, timeout=DEADLINE)
            assert not failures, failures
        stop.set()
        for thread in threads:
            thread.join(DEADLINE)
        assert not failures, failures
        # the markers: the storm ran and deferred the pinger's reads, and every client is
        # still connected and answered
        assert all(rounds), rounds
        assert pinger_waited > 0, "the pinger's reads were never deferred: no storm"
        assert keepalive_missed == 0, "a waiting read did not count for the keepalive"
        pinger.send(raw.PINGREQ_BYTES)
        pinger.expect(raw.PINGRESP, timeout=DEADLINE)
        assert srv.call(lambda: len(mqtt.connections)) == STORM_PUBLISHERS + 1
    finally:
        stop.set()
        for client in [pinger, *pubs]:
            client.close()
        for thread in threads:
            thread.join(DEADLINE)
        srv.stop()
