from __future__ import annotations

import pytest

from pushwire.core.ratelimit import ConcurrencyLimiter, KeyedLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_burst_then_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.now += 100  # never more than the burst
    assert bucket.tokens() == 3
    assert bucket.full()


def test_bucket_refund_and_multi_token() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=5, clock=clock)
    assert bucket.try_acquire(5)
    assert not bucket.try_acquire()
    bucket.refund()
    assert bucket.try_acquire()
    bucket.refund(10)
    assert bucket.tokens() == 5
    assert not bucket.try_acquire(6)
    assert bucket.tokens() == 5  # a refused acquire takes nothing


def test_bucket_explicit_now_and_zero_rate() -> None:
    bucket = TokenBucket(rate=0, burst=1, now=0.0)
    assert bucket.try_acquire(now=0.0)
    assert not bucket.try_acquire(now=1e9)
    assert bucket.retry_after(now=1e9) == float("inf")


@pytest.mark.parametrize(("rate", "burst"), [(-1, 1), (1, 0)])
def test_bucket_rejects_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_keyed_limiter_keys_are_independent() -> None:
    clock = FakeClock()
    limiter: KeyedLimiter[str] = KeyedLimiter(rate=1.0, burst=2, clock=clock)
    assert limiter.try_acquire("a") and limiter.try_acquire("a")
    assert not limiter.try_acquire("a")
    assert not limiter.allowed("a")
    assert limiter.allowed("b")
    assert "b" not in limiter  # `allowed` creates nothing
    assert limiter.try_acquire("b")
    assert limiter.retry_after("a") == pytest.approx(1.0)
    limiter.refund("a")
    assert limiter.try_acquire("a")
    limiter.forget("a")
    assert limiter.allowed("a")


def test_keyed_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter: KeyedLimiter[int] = KeyedLimiter(rate=1.0, burst=2, max_keys=3, clock=clock)
    for key in range(3):
        limiter.try_acquire(key)
        limiter.try_acquire(key)  # drained
    limiter.try_acquire(0)  # 0 most recently used
    limiter.try_acquire(99)  # over the bound: the least recently used (1) goes
    assert len(limiter) == 3
    assert 1 not in limiter
    assert 0 in limiter and 99 in limiter
    assert not limiter.allowed(0)  # a kept key keeps its state


def test_keyed_limiter_evicts_full_buckets_first() -> None:
    clock = FakeClock()
    limiter: KeyedLimiter[str] = KeyedLimiter(rate=1.0, burst=1, max_keys=2, clock=clock)
    limiter.try_acquire("old")
    clock.now += 10  # "old" is full again: it carries no information
    limiter.try_acquire("busy")
    limiter.try_acquire("new")
    assert "old" not in limiter
    assert "busy" in limiter and not limiter.allowed("busy")


def test_keyed_limiter_sweep() -> None:
    clock = FakeClock()
    limiter: KeyedLimiter[str] = KeyedLimiter(rate=1.0, burst=1, clock=clock)
    limiter.try_acquire("a")
    limiter.try_acquire("b")
    clock.now += 0.5
    assert limiter.sweep() == 0
    clock.now += 0.5
    assert limiter.sweep() == 2
    assert len(limiter) == 0


def test_concurrency_limiter() -> None:
    limiter: ConcurrencyLimiter[str] = ConcurrencyLimiter(2)
    assert limiter.try_acquire("ip") and limiter.try_acquire("ip")
    assert not limiter.try_acquire("ip")
    assert limiter.try_acquire("other")
    limiter.release("ip")
    assert limiter.count("ip") == 1
    assert limiter.try_acquire("ip")
    for _ in range(3):
        limiter.release("ip")
    assert limiter.count("ip") == 0
    assert len(limiter) == 1  # released keys are forgotten
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0)
