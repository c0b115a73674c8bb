"""A session's link that records what the session sends (the PUBLISHes with their wire id
and dup flag, and the PUBRELs), for session tests without a socket."""

from __future__ import annotations

from typing import Any

from pushwire.core.session import Delivery


class RecordingLink:
    receive_maximum = 65535

    def __init__(self) -> None:
        # (payload, wire id, dup) of each PUBLISH; packet ids of each PUBREL
        self.sent: list[tuple[bytes, int | None, bool]] = []
        self.released: list[int] = []

    def writable(self) -> bool:
        return True

    def send_message(self, d: Delivery, dup: bool, wire_cache: dict[Any, Any] | None) -> None:
        self.sent.append((d.message.payload, d.wire_id, dup))

    def send_window(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            self.send_message(d, False, None)

    def send_release(self, packet_id: int) -> None:
        self.released.append(packet_id)

    def close_taken_over(self) -> None:
        pass
