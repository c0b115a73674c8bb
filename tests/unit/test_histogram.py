"""The in-process fixed-bucket histogram behind /metrics' histograms."""

from __future__ import annotations

from pushwire.core.histogram import Histogram


def test_le_semantics_cumulative_buckets_and_sum() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    # a value on a bound belongs to that bound's bucket (Prometheus: le = less or equal)
    assert h.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert h.count == 5
    assert h.sum == 0.05 + 0.1 + 0.5 + 1.0 + 7.0


def test_observe_n() -> None:
    h = Histogram((0, 1, 10))
    h.observe_n(5.0, 3)
    h.observe(0)
    assert h.cumulative() == [("0.0", 1), ("1.0", 1), ("10.0", 4), ("+Inf", 4)]
    assert h.sum == 15.0


def test_observe_since_is_one_exact_observation_per_start() -> None:
    """A turn's deliveries timed by one clock read: each lands in its own bucket."""
    h = Histogram((0.1, 1.0))
    h.observe_since(10.0, [9.95, 9.5, 2.0, 9.9])
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert abs(h.sum - (0.05 + 0.5 + 8.0 + 0.1)) < 1e-9
    h.observe_since(10.0, [])
    assert h.count == 4


def test_observe_since_with_runs_of_equal_starts_counts_each() -> None:
    """One read's messages share their start: runs of equal starts (looked up once per
    run) still count once per start, in the bucket of their own value."""
    starts = [-1.0, 9.95, 9.95, 9.95, 9.5, 9.5, 9.95, -1.0, 9.9]
    h = Histogram((0.1, 1.0))
    h.observe_since(10.0, starts)
    one_by_one = Histogram((0.1, 1.0))
    for start in starts:
        one_by_one.observe(10.0 - start)
    assert h.counts == one_by_one.counts == [5, 2, 2]
    assert abs(h.sum - one_by_one.sum) < 1e-9
