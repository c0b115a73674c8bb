"""Retained messages: the last retained message per topic, handed to new subscribers."""

from __future__ import annotations

from pushwire.core.message import Message
from pushwire.core.topics import matches


class RetainedStore:
    def __init__(self) -> None:
        self._by_topic: dict[str, Message] = {}

    def __len__(self) -> int:
        return len(self._by_topic)

    def set(self, message: Message) -> None:
        self._by_topic[message.topic] = message

    def clear(self, topic: str) -> bool:
        return self._by_topic.pop(topic, None) is not None

    def get(self, topic: str) -> Message | None:
        return self._by_topic.get(topic)

    def matching(self, flt: str) -> list[Message]:
        """Retained messages whose topic matches `flt`, in topic order (stable for tests)."""
        if "+" not in flt and "#" not in flt:
            m = self._by_topic.get(flt)
            return [m] if m is not None else []
        return [m for t, m in sorted(self._by_topic.items()) if matches(flt, t)]

    def all(self) -> list[Message]:
        return list(self._by_topic.values())
