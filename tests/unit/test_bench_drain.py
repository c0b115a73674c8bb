"""The qos1lat drain: a timed subscriber waits for what the publishers had acknowledged,
not for a quiet second, so "lost" is never an artefact of stopping early."""

from __future__ import annotations

import asyncio

import pytest

from pushwire.bench import loadgen


class Arrivals:
    """Stands in for a subscriber client: `progress()` is what it has received so far."""

    def __init__(self) -> None:
        self.count = 0

    def progress(self) -> int:
        return self.count


async def test_subscriber_drains_until_it_has_every_acknowledged_message() -> None:
    sub = Arrivals()
    asked = asyncio.Event()

    async def expected() -> int:
        asked.set()
        return 300

    async def late_deliveries() -> None:
        await asked.wait()
        # the last messages come after a pause longer than the old 1 s quiet rule (a
        # server busy on a loaded machine), in two bursts
        await asyncio.sleep(1.2)
        sub.count = 200
        await asyncio.sleep(0.1)
        sub.count = 300

    feeder = asyncio.create_task(late_deliveries())
    await asyncio.wait_for(loadgen._drain([sub], expected), 5)  # type: ignore[list-item]
    assert sub.count == 300
    await feeder


async def test_subscriber_drain_is_bounded_when_messages_never_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loadgen, "DRAIN_TIMEOUT_S", 0.1)
    sub = Arrivals()
    sub.count = 7

    async def expected() -> int:
        return 10

    await asyncio.wait_for(loadgen._drain([sub], expected), 5)  # type: ignore[list-item]
    assert sub.count == 7  # what is missing is reported as lost by the caller
