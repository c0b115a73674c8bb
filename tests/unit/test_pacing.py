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


def test_the_route_at_hand_form_keeps_the_order_and_passes_nothing_by_a_waiting_one() -> None:
    """`route_of`/`along`/`pass_along` (the Redis fan-out reader's form): the same pacing as
    calling it, and no message goes to the log's cold sink while an earlier one waits."""

    async def run() -> None:
        hub = make_hub()
        link = RecordingLink()
        session, _ = hub.connect("c", True, 4, 0, link)
        session.attach(link)
        hub.subscribe(session, sub("t"))
        cold: list[int] = []

        def sink(topic: str, position: int, created_at: float, size: int) -> bool:
            cold.append(position)
            return True

        hub.cold_sink = sink
        hub.add_observer(lambda message: False)  # the one observer (the log) it stands for
        deliver = PacedDelivery(hub, budget=2)
        routed = deliver.route_of("t")
        nobody = deliver.route_of("u")
        assert deliver.pass_along("u", nobody, 1, 0.0, 10)  # nothing waits: logged cold
        assert not deliver.pass_along("t", routed, 2, 0.0, 10)  # routed here: never
        for n in range(4):
            deliver.along(Message("t", b"%d" % n), routed)
        assert len(link.sent) == 2 and deliver.waiting == 2
        assert not deliver.pass_along("u", nobody, 7, 0.0, 10)  # behind what waits
        deliver.along(Message("u", b"late"), nobody)
        await asyncio.wait_for(deliver.drained(), 5)
        assert [payload for _, payload, *_ in link.sent] == [b"0", b"1", b"2", b"3"]
        assert cold == [1]

    asyncio.run(run())


def test_first_waiting_is_the_position_of_the_first_message_not_routed_yet() -> None:
    async def run() -> None:
        hub = make_hub()
        link = RecordingLink()
        session, _ = hub.connect("c", True, 4, 0, link)
        session.attach(link)
        hub.subscribe(session, sub("t"))
        deliver = PacedDelivery(hub, budget=2)
        assert deliver.first_waiting() is None
        for n in range(1, 6):
            message = Message("t", b"%d" % n)
            message.log_id = 100 + n
            deliver(message)
        assert len(link.sent) == 2 and deliver.first_waiting() == 103
        await asyncio.wait_for(deliver.drained(), 5)
        assert len(link.sent) == 5 and deliver.first_waiting() is None

    asyncio.run(run())
