"""CPU per QoS 1 delivery in the session alone (no codec, no sockets): one MQTT session
(`mqtt/session.py` MqttSession, made by the hub's session factory as the MQTT listener
sets it) with an inflight window of 20 is offered 100 messages at a time (20 go out at
once, 80 wait in the queue), then acknowledges what it was sent in runs, as a subscriber's
PUBACK runs arrive; each run frees the window and the pump refills it.

    .venv/bin/python bench/micro_session_window.py [--windows W]   (default 30; a second)

Prints the best window's CPU time per delivery of the two halves: `offer` (the send now
or queue decision, the packet id of one sent at once) and `ack+pump` (the acks' lookups in
the window, the bytes and journal bookkeeping, and the refill's packet ids). The best of
several short windows, since the machine is shared. To compare two versions, run it with
PYTHONPATH at the other tree's src/ (it also runs on a tree from before mqtt/session.py,
whose core Session gave the packet ids itself).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.core.session import Delivery, SessionLimits, Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.memory import MemoryEngine

# the delivery's packet id: `wire_id` since the split, `packet_id` before it
_ID_FIELD = "wire_id" if "wire_id" in Delivery.__slots__ else "packet_id"


class IdLink:
    """A core Link that keeps the packet ids of what it was sent, to acknowledge them."""

    receive_maximum = 65535

    def __init__(self) -> None:
        self.ids: list[int] = []

    def writable(self) -> bool:
        return True

    def send_message(self, d: Delivery, dup: bool, wire_cache: dict[Any, Any] | None) -> None:
        self.ids.append(getattr(d, _ID_FIELD))

    def send_window(self, deliveries: list[Delivery]) -> None:
        self.ids += [getattr(d, _ID_FIELD) for d in deliveries]

    def send_release(self, packet_id: int) -> None:
        pass

    def close_taken_over(self) -> None:
        pass


def make_session() -> tuple[Any, IdLink]:
    hub = Hub(MemoryEngine(), SessionLimits(20, 100_000, max_queued_bytes=0))
    try:
        from pushwire.mqtt.session import MqttSession

        hub.session_factory = MqttSession
    except ImportError:  # a tree from before the split: core sessions number deliveries
        pass
    link = IdLink()
    s, _ = hub.connect("c", True, 4, 0, link)
    s.attach(link)
    hub.subscribe(s, Subscription("t", SubscriptionOptions(qos=1)))
    return s, link


def window(
    offer: Callable[..., int], ack: Callable[[list[int]], None], link: IdLink, n: int
) -> tuple[float, float]:
    messages = [Message("t", b"x" * 64, qos=1) for _ in range(100)]
    clock = time.process_time
    offering = acking = 0.0
    done = 0
    while done < n:
        t0 = clock()
        for m in messages:
            offer(m, 1, False, [], None)
        t1 = clock()
        offering += t1 - t0
        while link.ids:
            ids = link.ids
            link.ids = []
            ack(ids)
            done += len(ids)
        acking += clock() - t1
    return offering / done, acking / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=30)
    args = parser.parse_args()
    s, link = make_session()
    runs = [window(s.offer, s.acknowledge_all, link, 20_000) for _ in range(args.windows)]
    print(
        f"offer {min(r[0] for r in runs) * 1e9:.0f} ns, ack+pump "
        f"{min(r[1] for r in runs) * 1e9:.0f} ns of CPU per QoS 1 delivery (session only, "
        f"best of {args.windows} windows of 20,000)"
    )


if __name__ == "__main__":
    main()
