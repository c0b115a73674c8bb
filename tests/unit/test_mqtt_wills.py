"""Delayed wills: a resumed session cancels its pending will for good, a new session
(clean start) ends the old one and sends its will at once, shutdown sends them all."""

from __future__ import annotations

import asyncio
from typing import cast

from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.mqtt.packets import Will
from pushwire.mqtt.wills import DelayedWills, will_message


class PublishedLog:
    """Stands in for the hub: keeps what was published."""

    def __init__(self) -> None:
        self.published: list[Message] = []

    def publish(self, message: Message) -> bool:
        self.published.append(message)
        return False


def wills() -> tuple[DelayedWills, PublishedLog]:
    log = PublishedLog()
    return DelayedWills(cast(Hub, log)), log


def test_a_resumed_session_cancels_its_pending_will_for_good() -> None:
    async def run() -> list[str]:
        delayed, log = wills()
        delayed.schedule("c", will_message(Will("w/c", b"gone"), "c"), 0.001)
        delayed.session_connected("c", session_present=True)
        # a later will of another client: timers fire in order, so once it is out, the
        # cancelled one would have been too
        delayed.schedule("marker", will_message(Will("w/marker", b"x"), "marker"), 0.002)
        for _ in range(1000):
            if log.published:
                break
            await asyncio.sleep(0.001)
        delayed.publish_all()  # nothing is left to publish at shutdown either
        return [m.topic for m in log.published]

    assert asyncio.run(run()) == ["w/marker"]


def test_a_new_session_ends_the_old_one_and_sends_its_will_now() -> None:
    async def run() -> list[Message]:
        delayed, log = wills()
        delayed.schedule("c", will_message(Will("w", b"gone"), "c"), 3600)
        delayed.session_connected("c", session_present=False)
        delayed.publish_all()
        return log.published

    (sent,) = asyncio.run(run())
    assert (sent.topic, sent.payload, sent.origin) == ("w", b"gone", "c")


def test_shutdown_publishes_every_pending_will_once() -> None:
    async def run() -> list[str]:
        delayed, log = wills()
        for cid in ("a", "b"):
            delayed.schedule(cid, will_message(Will(f"w/{cid}", b"x"), cid), 3600)
        delayed.publish_all()
        delayed.publish_all()
        return [m.topic for m in log.published]

    assert sorted(asyncio.run(run())) == ["w/a", "w/b"]


def test_will_message_carries_its_expiry_and_forwarded_properties() -> None:
    will = Will(
        "w",
        b"x",
        1,
        True,
        {"message_expiry_interval": 30, "content_type": "text/plain", "will_delay_interval": 5},
    )
    msg = will_message(will, "c")
    assert msg.qos == 1 and msg.retain and msg.expires_at is not None
    assert msg.properties == {"content_type": "text/plain"}
