"""core/pacing.py: messages handed to a PacedDelivery are routed at most `budget` deliveries
per loop turn, in order, and `drained()` resolves once all of them were routed."""

from __future__ import annotations

import asyncio

from test_hub import RecordingLink, make_hub, sub

from pushwire.core.message import Message
from pushwire.core.pacing import PacedDelivery


def test_messages_are_routed_over_turns_in_order_and_drained_waits_for_them() -> None:
    async def run() -> None:
        hub = make_hub()
        links = []
        for n in range(3):
            link = RecordingLink()
            session, _ = hub.connect(f"c{n}", True, 4, 0, link)
            session.attach(link)
            hub.subscribe(session, sub("t"))
            links.append(link)
        deliver = PacedDelivery(hub, budget=6)  # two messages to the 3 subscribers a turn
        for n in range(10):
            deliver(Message("t", b"%d" % n))
        # this turn: the budget's worth; the rest waits
        assert [len(link.sent) for link in links] == [2, 2, 2]
        assert deliver.waiting == 8
        await asyncio.sleep(0)  # one turn: two more
        assert [len(link.sent) for link in links] == [4, 4, 4]
        deliver(Message("t", b"late"))  # behind what waits, never before it
        await asyncio.wait_for(deliver.drained(), 5)
        expected = [b"%d" % n for n in range(10)] + [b"late"]
        for link in links:
            assert [payload for _, payload, *_ in link.sent] == expected
        assert deliver.waiting == 0

    asyncio.run(run())
