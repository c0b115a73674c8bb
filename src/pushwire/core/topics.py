"""Topic names, topic filters and the subscription trie.

Rules follow MQTT 3.1.1 section 4.7 / MQTT 5.0 section 4.7:
- names and filters are 1..65535 bytes of UTF-8 without U+0000;
- `+` matches one level, `#` matches the rest (and the parent level) and must be last;
- wildcards occupy a whole level; topic names carry no wildcards;
- a filter that starts with a wildcard does not match topics starting with `$`.
Shared subscriptions (`$share/group/filter`) are parsed here so the hub can route them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

MAX_TOPIC_BYTES = 65535

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TopicError(ValueError):
    """A topic name or filter that breaks the rules."""


def validate_topic_name(name: str) -> None:
    if not name:
        raise TopicError("topic name is empty")
    if "+" in name or "#" in name:
        raise TopicError("topic name contains a wildcard")
    _check_common(name)


def validate_filter(flt: str) -> None:
    if not flt:
        raise TopicError("topic filter is empty")
    _check_common(flt)
    levels = flt.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TopicError("'#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise TopicError("'+' must occupy a whole level")


def _check_common(s: str) -> None:
    if "\x00" in s:
        raise TopicError("topic contains U+0000")
    if len(s) > MAX_TOPIC_BYTES // 4 and len(s.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise TopicError("topic longer than 65535 bytes")


def split_shared(flt: str) -> tuple[str | None, str]:
    """`$share/group/a/b` -> ("group", "a/b"); anything else -> (None, flt)."""
    if not flt.startswith("$share/"):
        return None, flt
    parts = flt.split("/", 2)
    if len(parts) < 3 or not parts[1] or "+" in parts[1] or "#" in parts[1] or not parts[2]:
        raise TopicError("shared subscription must be $share/{group}/{filter}")
    return parts[1], parts[2]


def matches(flt: str, topic: str) -> bool:
    """True when `topic` (a name) matches `flt` (a filter)."""
    if topic.startswith("$") and (flt.startswith("+") or flt.startswith("#")):
        return False
    f_levels = flt.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


@dataclass(slots=True)
class _Node(Generic[K, V]):
    children: dict[str, _Node[K, V]] = field(default_factory=dict)
    # subscribers whose filter ends exactly at this node
    here: dict[K, V] = field(default_factory=dict)
    # subscribers whose filter is this node's path followed by '#'
    hash_subs: dict[K, V] = field(default_factory=dict)


class SubscriptionTrie(Generic[K, V]):
    """Maps filters to subscribers; `match(topic)` returns every (filter, key, value).

    A key (e.g. a session) may hold several filters; each (filter, key) pair stores a value
    (the subscription options). Lookups for a topic are cached until the next change: most
    traffic repeats the same topics, and subscribe/unsubscribe is rare by comparison.
    """

    def __init__(self, cache_size: int = 65536) -> None:
        self._root: _Node[K, V] = _Node()
        self._cache: dict[str, list[tuple[str, K, V]]] = {}
        self._cache_size = cache_size
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, flt: str, key: K, value: V) -> bool:
        """Insert or replace; True when the (filter, key) pair is new."""
        node = self._root
        levels = flt.split("/")
        for level in levels[:-1]:
            node = node.children.setdefault(level, _Node())
        last = levels[-1]
        if last == "#":
            target = node.hash_subs
        else:
            node = node.children.setdefault(last, _Node())
            target = node.here
        new = key not in target
        target[key] = value
        if new:
            self._count += 1
        self._cache.clear()
        return new

    def remove(self, flt: str, key: K) -> bool:
        """Remove the (filter, key) pair; True when it existed. Prunes empty branches."""
        levels = flt.split("/")
        path: list[tuple[_Node[K, V], str]] = []
        node = self._root
        for level in levels[:-1]:
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        last = levels[-1]
        if last == "#":
            removed = key in node.hash_subs
            node.hash_subs.pop(key, None)
        else:
            child = node.children.get(last)
            if child is None or key not in child.here:
                return False
            del child.here[key]
            path.append((node, last))
            node = child
            removed = True
        if not removed:
            return False
        self._count -= 1
        self._cache.clear()
        # prune nodes that hold nothing any more
        while path:
            parent, level = path.pop()
            child = parent.children[level]
            if child.children or child.here or child.hash_subs:
                break
            del parent.children[level]
        return True

    def match(self, topic: str) -> list[tuple[str, K, V]]:
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        out: list[tuple[str, K, V]] = []
        levels = topic.split("/")
        dollar = topic.startswith("$")
        self._walk(self._root, levels, 0, [], out, dollar)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[topic] = out
        return out

    def _walk(
        self,
        node: _Node[K, V],
        levels: list[str],
        i: int,
        path: list[str],
        out: list[tuple[str, K, V]],
        dollar: bool,
    ) -> None:
        # '#' at this node matches the parent level and everything below it
        if node.hash_subs and not (dollar and i == 0):
            flt = "/".join([*path, "#"])
            for key, value in node.hash_subs.items():
                out.append((flt, key, value))
        if i == len(levels):
            if node.here:
                flt = "/".join(path)
                for key, value in node.here.items():
                    out.append((flt, key, value))
            return
        level = levels[i]
        child = node.children.get(level)
        if child is not None:
            path.append(level)
            self._walk(child, levels, i + 1, path, out, dollar)
            path.pop()
        if not (dollar and i == 0):
            plus = node.children.get("+")
            if plus is not None:
                path.append("+")
                self._walk(plus, levels, i + 1, path, out, dollar)
                path.pop()

    def filters(self) -> Iterator[tuple[str, K, V]]:
        """Every stored (filter, key, value), for snapshots and admin views."""
        yield from self._iter(self._root, [])

    def _iter(self, node: _Node[K, V], path: list[str]) -> Iterator[tuple[str, K, V]]:
        for key, value in node.hash_subs.items():
            yield "/".join([*path, "#"]), key, value
        if path:
            for key, value in node.here.items():
                yield "/".join(path), key, value
        for level, child in node.children.items():
            yield from self._iter(child, [*path, level])
