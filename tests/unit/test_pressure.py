"""core/pressure.py: who holds publishers back, and whether a queue is at its bound (the
publish run's burst stops there, mqtt/hub_calls.py)."""

from __future__ import annotations

from pushwire.core.pressure import Backpressure


def test_at_bound_follows_the_full_subscribers() -> None:
    pressure = Backpressure()
    released: list[str] = []
    pressure.wait(lambda: released.append("go"))
    pressure.mark("a")  # past the early threshold only
    assert pressure.active and not pressure.at_bound
    pressure.mark("b", at_bound=True)
    pressure.mark("a", at_bound=True)  # already marked: now at its bound too
    assert pressure.at_bound and pressure.episodes == 2
    pressure.relieve("b")
    assert pressure.at_bound and pressure.active  # "a" still full
    pressure.relieve("a")
    assert not pressure.at_bound and not pressure.active
    assert released == ["go"]
    pressure.mark("a")  # a new episode starts below the bound
    assert pressure.active and not pressure.at_bound
