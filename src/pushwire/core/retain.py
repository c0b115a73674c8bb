"""Retained messages: the last retained message per topic, handed to new subscribers.

They are kept in a topic tree, so a filter finds its messages by walking only the branches
it can match (`sensors/+/temp` visits one level of children, not every retained topic), and
the walk is a generator: the hub hands a subscriber a huge retained backlog a slice at a
time (core/retained_stream.py) instead of freezing every client while it scans 100,000
topics. Walks use an explicit stack, never recursion, so a deep topic costs time, not a
RecursionError.

Topics whose first level starts with `$` live under a root of their own: a filter that
starts with a wildcard never matches them (MQTT-4.7.2-1), so its walk never sees them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from pushwire.core.message import Message

# the walk of a `#`: every node below, at any depth
_SUBTREE = -1


class RetainedNode:
    """One topic level; `message` is the retained message of the topic ending here."""

    __slots__ = ("children", "message", "stamp")

    def __init__(self) -> None:
        self.children: dict[str, RetainedNode] = {}
        self.message: Message | None = None
        # when `message` was set (RetainedStore.stamp): a walk that started earlier skips
        # it, since the subscriber already had it live
        self.stamp = 0


class RetainedStore:
    def __init__(self) -> None:
        self._root = RetainedNode()
        self._dollar_root = RetainedNode()
        self._by_topic: dict[str, RetainedNode] = {}
        self._clock = itertools.count(1)
        self.stamp = 0  # the stamp of the latest change

    def __len__(self) -> int:
        return len(self._by_topic)

    def _root_for(self, first_level: str) -> RetainedNode:
        return self._dollar_root if first_level.startswith("$") else self._root

    def set(self, message: Message) -> None:
        topic = message.topic
        node = self._by_topic.get(topic)
        if node is None:
            levels = topic.split("/")
            node = self._root_for(levels[0])
            for level in levels:
                child = node.children.get(level)
                if child is None:
                    child = node.children[level] = RetainedNode()
                node = child
            self._by_topic[topic] = node
        self.stamp = next(self._clock)
        node.message = message
        node.stamp = self.stamp

    def clear(self, topic: str) -> bool:
        node = self._by_topic.pop(topic, None)
        if node is None:
            return False
        node.message = None
        self.stamp = next(self._clock)
        # prune the branch up to the first level something else still needs
        levels = topic.split("/")
        path: list[tuple[RetainedNode, str]] = []
        parent = self._root_for(levels[0])
        for level in levels:
            path.append((parent, level))
            parent = parent.children[level]
        while path:
            parent, level = path.pop()
            child = parent.children[level]
            if child.children or child.message is not None:
                break
            del parent.children[level]
        return True

    def get(self, topic: str) -> Message | None:
        node = self._by_topic.get(topic)
        return node.message if node is not None else None

    def matching(self, flt: str) -> list[Message]:
        """Retained messages whose topic matches `flt` (all at once: for small stores and
        tests; subscribers get theirs through `walk`, in slices)."""
        return [n.message for n in self.walk(flt) if n is not None and n.message is not None]

    def walk(self, flt: str) -> Iterator[RetainedNode | None]:
        """The nodes whose topic matches `flt`, one visited node per step: None for a node
        passed on the way, so a caller can count the work and stop after any step. A node's
        message may be gone (cleared) or newer (`stamp`) by the time it is read. Children are
        copied when the walk reaches them, so the store may change between steps."""
        levels = flt.split("/")
        n = len(levels)
        if not flt:
            return
        stack: list[tuple[Iterator[RetainedNode], int]] = [(iter((self._root_for(levels[0]),)), 0)]
        while stack:
            nodes, i = stack[-1]
            node = next(nodes, None)
            if node is None:
                stack.pop()
                continue
            if i == _SUBTREE:
                yield node
                if node.children:
                    stack.append((iter(list(node.children.values())), _SUBTREE))
                continue
            if i == n:
                yield node
                continue
            level = levels[i]
            if level == "#":
                # `a/#` matches `a` itself too (the root holds no message)
                yield node
                if node.children:
                    stack.append((iter(list(node.children.values())), _SUBTREE))
            elif level == "+":
                yield None
                if node.children:
                    stack.append((iter(list(node.children.values())), i + 1))
            else:
                yield None
                child = node.children.get(level)
                if child is not None:
                    stack.append((iter((child,)), i + 1))

    def all(self) -> list[Message]:
        return [n.message for n in self._by_topic.values() if n.message is not None]
