"""The gateway sweeper's sleep (gateway/sweep_timer.py): until the next thing due, woken
sooner by what becomes due earlier; and an idle server's sweeper sleeps (no 0.25 s poll)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer
from pushwire.gateway.sweep_timer import SweepTimer


async def _until(condition: object) -> None:
    deadline = time.monotonic() + 5
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.001)


async def test_it_sleeps_until_the_next_due_time_and_something_sooner_wakes_it() -> None:
    timer = SweepTimer(0.001)
    sleeper = asyncio.ensure_future(timer.sleep(1000.0, 4600.0))  # an hour on its clock
    await _until(lambda: timer.wake is not None)
    assert timer.at == 4600.0
    timer.due(5000.0)  # later than it wakes anyway: nothing to do
    timer.due(4600.0)
    marker = asyncio.ensure_future(asyncio.sleep(0.01))
    await marker  # the loop ran meanwhile; the sleeper did not wake
    assert not sleeper.done()
    timer.due(1000.5)  # sooner: wakes it now
    await asyncio.wait_for(sleeper, 5)
    assert timer.wake is None and timer.at < 0
    timer.due(0.0)  # nobody sleeps: nothing to do


async def test_a_time_already_past_still_keeps_the_step_between_sweeps() -> None:
    timer = SweepTimer(0.001)
    await asyncio.wait_for(timer.sleep(1000.0, 900.0), 5)  # due already: one step
    assert timer.wake is None


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    server = InProcessServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_an_idle_gateway_sweeper_sleeps_until_the_content_clean_up(srv: InProcessServer) -> None:
    assert srv.server is not None
    delivery = srv.server.gateway.delivery
    deadline = time.monotonic() + 5
    while srv.call(lambda: delivery.sweep_timer.wake) is None:
        assert time.monotonic() < deadline, "the sweeper never slept"
        time.sleep(0.01)
    # nothing is waiting: its next wake-up is the content clean-up's, about a minute away
    assert srv.call(lambda: delivery.sweep_timer.at - delivery.clock()) > 30
