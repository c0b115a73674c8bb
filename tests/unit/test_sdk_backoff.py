"""Reconnect backoff: exponential ceilings, full jitter, reset (no sockets, seeded RNG)."""

from __future__ import annotations

import random

import pytest

from pushwire.client.backoff import Backoff


def test_ceilings_grow_exponentially_up_to_the_cap() -> None:
    b = Backoff(base=0.5, cap=8.0, factor=2.0)
    assert [b.ceiling(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.ceiling(10_000) == 8.0  # no float overflow after many failures


def test_delays_are_jittered_within_the_ceiling_and_reset() -> None:
    b = Backoff(base=1.0, cap=30.0, floor=0.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(200)]
    for n, d in enumerate(delays):
        assert 0.0 <= d <= b.ceiling(n)
    late = delays[10:]
    assert len({round(d, 6) for d in late}) > 150  # jitter: not in lock step
    assert max(late) > 15.0
    b.reset()
    assert b.attempt == 0 and b.next_delay() <= 1.0


def test_floor_and_bad_settings() -> None:
    b = Backoff(base=0.1, cap=1.0, floor=0.05, rng=random.Random(3))
    assert all(b.next_delay() >= 0.05 for _ in range(100))
    for kwargs in ({"base": 0.0}, {"base": 2.0, "cap": 1.0}, {"factor": 0.5}, {"floor": -1.0}):
        with pytest.raises(ValueError):
            Backoff(**kwargs)  # type: ignore[arg-type]
