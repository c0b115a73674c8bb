"""`pushwire bench mqtt --only qos1lat` on a short window against a real pushwire server:
the publishers drain, the subscriber is told how many were PUBACKed and reads until it has
them, so every acknowledged message is counted as delivered, or as refused for a full queue
(lost is exactly the server's count of refusals)."""

from __future__ import annotations

from collections.abc import Callable

from helpers.server import ServerProcess

ServerFactory = Callable[..., ServerProcess]


def test_qos1lat_subscriber_drains_to_what_publishers_were_acknowledged(
    server_factory: ServerFactory,
) -> None:
    from pushwire.bench import mqtt as bench
    from pushwire.bench.peers import Server

    srv = server_factory(memory=True, extra_args=["--sys-interval", "0"])
    assert srv.http_port is not None
    server = Server("pushwire", srv.pid, srv.mqtt_port, srv.log_path, http_port=srv.http_port)
    outcome = bench.run_qos1lat(server, bench.Settings(duration=0.3, warmup=0.1))
    acked = sum(r.total for r in outcome.clients if r.role == "window-pub")
    delivered = sum(r.total for r in outcome.clients if r.role == "count-sub")
    assert acked > 0, outcome.detail
    # the whole acknowledged set, no more. On a loaded machine the subscriber's first PUBACK
    # can come after its queue filled: until then it does not count as keeping up, so the
    # overflow is refused (counted; an MQTT 3.1.1 publisher still gets a PUBACK, docs/
    # queues.md) instead of holding the publishers. Those, and only those, are missing.
    refused = bench.queue_refusals(server)
    assert refused is not None  # /metrics was read
    assert delivered == acked - refused, outcome.detail
    assert outcome.metrics["qos1lat_lost"] == refused, outcome.detail


def test_qos1lat_lost_is_what_a_full_queue_refused(server_factory: ServerFactory) -> None:
    # a subscriber that never counts as keeping up (a progress window of a nanosecond) and a
    # tiny queue: messages are refused, and MQTT 3.1.1 publishers still get plain PUBACKs
    # (docs/queues.md). The bench's "lost" is exactly the server's count of them, and its
    # detail says so.
    from pushwire.bench import mqtt as bench
    from pushwire.bench.peers import Server

    srv = server_factory(
        memory=True,
        max_inflight=1,
        max_queued_messages=5,
        extra_args=["--sys-interval", "0", "--backpressure-progress-window", "0.000000001"],
    )
    assert srv.http_port is not None
    server = Server("pushwire", srv.pid, srv.mqtt_port, srv.log_path, http_port=srv.http_port)
    outcome = bench.run_qos1lat(server, bench.Settings(duration=0.3, warmup=0.1))
    refused = bench.queue_refusals(server)
    assert refused, outcome.detail
    assert outcome.metrics["qos1lat_lost"] == refused, outcome.detail
    assert f"{refused:,} refused for a full queue" in outcome.detail
