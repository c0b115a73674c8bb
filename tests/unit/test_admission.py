"""Per-address connection admission under a reconnect storm, on a hand-driven clock.

Issue 12: thousands of phones behind one carrier-grade NAT address reconnect together after
a network blip. With the DEFAULT settings all 10,000 must be admitted within a minute, as
real clients retry (exponential backoff), while one client id that reconnects in a loop is
refused after its own burst."""

from __future__ import annotations

import heapq

from pushwire.config import Settings
from pushwire.core.admission import Admission

CLIENTS = 10_000
NAT_ADDRESS = "100.64.0.1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def default_admission(clock: FakeClock) -> Admission:
    s = Settings()
    return Admission(
        s.connection_rate_per_ip,
        s.max_connections_per_ip,
        connection_burst_per_ip=s.connection_burst_per_ip,
        connect_rate_per_client_id=s.connect_rate_per_client_id,
        connect_burst_per_client_id=s.connect_burst_per_client_id,
        clock=clock,
    )


def backoff(attempt: int, client: int) -> float:
    """A typical client: 1 s doubling up to 10 s, plus up to 1 s of jitter."""
    return float(min(10, 2**attempt)) + (client % 1000) / 1000


def test_defaults_let_10000_clients_behind_one_address_reconnect_within_a_minute() -> None:
    clock = FakeClock()
    admission = default_admission(clock)
    # the blip ends: every client tries within the same second, then retries on refusal
    attempts = [(i / CLIENTS, i, 0) for i in range(CLIENTS)]
    heapq.heapify(attempts)
    admitted_at: list[float] = []
    while attempts:
        at, client, attempt = heapq.heappop(attempts)
        clock.now = at
        if admission.admit(NAT_ADDRESS) is None:
            admitted_at.append(at)
        else:
            heapq.heappush(attempts, (at + backoff(attempt, client), client, attempt + 1))
    assert len(admitted_at) == CLIENTS
    assert max(admitted_at) <= 60.0, f"the last client got in after {max(admitted_at):.0f} s"
    assert admission.refused > 0  # the storm did exceed the burst: the bucket shaped it


def test_a_client_id_reconnecting_in_a_loop_is_refused_after_its_burst() -> None:
    clock = FakeClock()
    admission = default_admission(clock)
    burst = int(Settings().connect_burst_per_client_id)
    results = [admission.admit_client_id("looping-device") for _ in range(burst + 10)]
    assert results[:burst] == [True] * burst and not any(results[burst:])
    # its neighbours behind the same address are not affected
    assert admission.admit_client_id("quiet-device")
    # and it gets in again at its rate
    clock.now += 1 / Settings().connect_rate_per_client_id
    assert admission.admit_client_id("looping-device")
