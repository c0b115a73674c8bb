"""Fixed-bucket histograms counted in process, exported by /metrics at scrape time.

The hot path pays one bisect on a short tuple and two additions per observation; the
cumulative buckets Prometheus wants are computed only when /metrics is scraped.
"""

from __future__ import annotations

from bisect import bisect_left

# Latencies in seconds: from well under a millisecond (a live fan-out) to a minute (a
# subscriber that reconnects and gets what was queued for it).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# Session queue lengths in messages.
DEPTH_BUCKETS: tuple[float, ...] = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000)


_NAN = float("nan")


class Histogram:
    """Counts per bucket (le semantics: a value lands in the first bound >= it) and a sum.

    Written by one thread; a scrape from another thread may see a count a few observations
    ahead of the sum, which Prometheus tolerates."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_n(self, value: float, n: int) -> None:
        """`n` observations of the same value (one fan-out's deliveries)."""
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n

    def observe_since(self, now: float, starts: list[float]) -> None:
        """One observation of `now - start` per start (exact counts): a connection's
        deliveries and acks of one loop turn, timed by one clock read when they go to
        the transport, without a function call or a clock read per message."""
        bounds = self.bounds
        counts = self.counts
        total = 0.0
        # the messages of one read share their creation (and their acks the receipt)
        # time: one bucket look-up per run of equal starts, not one per start
        last = _NAN  # equal to no start: the first one is looked up
        at = 0
        value = 0.0
        for start in starts:
            if start != last:
                last = start
                value = now - start
                at = bisect_left(bounds, value)
            counts[at] += 1
            total += value
        self.sum += total

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs ending with +Inf, as HistogramMetricFamily takes."""
        counts = list(self.counts)  # one snapshot: buckets and +Inf agree
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip(self.bounds, counts, strict=False):
            total += n
            out.append((_le(bound), total))
        out.append(("+Inf", total + counts[-1]))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)


def _le(bound: float) -> str:
    # Prometheus spells bucket bounds as floats ("1.0", "0.005")
    return repr(float(bound))
