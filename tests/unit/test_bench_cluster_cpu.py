"""`pushwire bench cluster` explains where a run's CPU went: a line per run with each
server process (supervisor, workers, redis-server) and each load-generator process, as a
share of a core and as microseconds of CPU per message of the scenario (the fan-in used to
print one figure for all server processes together)."""

from __future__ import annotations

from pushwire.bench.cluster import Result, cpu_breakdown


def test_each_process_and_its_cpu_per_fanin_message() -> None:
    result = Result(
        {"fanin": 50_000.0},
        1.92,
        processes=[
            ("supervisor", 0.01),
            ("worker1", 0.8),
            ("worker2", 0.7),
            ("redis-server", 0.41),
        ],
        loadgen=[("sub", 0.3), ("pub0", 0.1), ("pub1", 0.1)],
    )
    assert cpu_breakdown("fanin", result) == [
        "      per process (% of a core, us of CPU per fan-in message at 50,000/s):",
        "        server: supervisor 1% 0.2 us, worker1 80% 16.0 us, worker2 70% 14.0 us,"
        " redis-server 41% 8.2 us",
        "        load generator: sub 30% 6.0 us, pub0 10% 2.0 us, pub1 10% 2.0 us"
        " (sum 50% 10.0 us)",
    ]


def test_no_message_counted_says_so_and_a_run_without_processes_adds_nothing() -> None:
    idle = Result({"fanin": 0.0}, 0.05, processes=[("pushwire", 0.05)])
    assert cpu_breakdown("fanin", idle) == [
        "      per process (% of a core; no fan-in messages counted):",
        "        server: pushwire 5%",
    ]
    assert cpu_breakdown("sse", Result({"sse_p50": 3.0}, 0.5)) == []
