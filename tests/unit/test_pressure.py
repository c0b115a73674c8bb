"""core/pressure.py: who holds publishers back, and whether a queue is at its bound (the
publish run's burst stops there, mqtt/hub_calls.py)."""

from __future__ import annotations

from pushwire.core.pressure import Backpressure


def state(pressure: Backpressure) -> tuple[bool, bool]:
    """(active, at_bound), read through a call: the attributes change under mypy's
    narrowing between the asserts."""
    return pressure.active, pressure.at_bound


def test_at_bound_follows_the_full_subscribers() -> None:
    pressure = Backpressure()
    released: list[str] = []
    pressure.wait(lambda: released.append("go"))
    pressure.mark("a")  # past the early threshold only
    assert state(pressure) == (True, False)
    pressure.mark("b", at_bound=True)
    pressure.mark("a", at_bound=True)  # already marked: now at its bound too
    assert state(pressure)[1] and pressure.episodes == 2
    pressure.relieve("b")
    assert state(pressure) == (True, True)  # "a" still full
    pressure.relieve("a")
    assert state(pressure) == (False, False)
    assert released == ["go"]
    pressure.mark("a")  # a new episode starts below the bound
    assert state(pressure) == (True, False)
