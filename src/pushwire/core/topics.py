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
from typing import Any, Generic, TypeVar

MAX_TOPIC_BYTES = 65535
# levels a topic name or filter may have (the `max_topic_levels` setting): one level costs
# one trie node per subscription and one step per match, so depth is a resource to bound
DEFAULT_MAX_TOPIC_LEVELS = 128

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TopicError(ValueError):
    """A topic name or filter that breaks the rules."""


def validate_topic_name(name: str, max_levels: int = DEFAULT_MAX_TOPIC_LEVELS) -> None:
    if not name:
        raise TopicError("topic name is empty")
    if "+" in name or "#" in name:
        raise TopicError("topic name contains a wildcard")
    _check_common(name)
    check_levels(name, max_levels)


def validate_filter(flt: str, max_levels: int = DEFAULT_MAX_TOPIC_LEVELS) -> None:
    if not flt:
        raise TopicError("topic filter is empty")
    _check_common(flt)
    levels = flt.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TopicError("'#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise TopicError("'+' must occupy a whole level")
    # `$share/{group}/` is routing, not part of the filter the trie stores
    shared = 2 if flt.startswith("$share/") else 0
    if len(levels) - shared > max_levels:
        raise TopicError(_too_deep(len(levels) - shared, max_levels))


def check_levels(topic: str, max_levels: int = DEFAULT_MAX_TOPIC_LEVELS) -> None:
    """Refuse a topic name or filter with more than `max_levels` levels."""
    if topic.count("/") >= max_levels:
        raise TopicError(_too_deep(topic.count("/") + 1, max_levels))


def _too_deep(levels: int, max_levels: int) -> str:
    return f"topic has {levels} levels, more than the maximum of {max_levels}"


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
    # the filter that ends at this node ("" for the root): matches report it without
    # rebuilding it level by level
    path: str = ""
    children: dict[str, _Node[K, V]] = field(default_factory=dict)
    # subscribers whose filter ends exactly at this node
    here: dict[K, V] = field(default_factory=dict)
    # subscribers whose filter is this node's path followed by '#'
    hash_subs: dict[K, V] = field(default_factory=dict)

    def hash_filter(self, root: bool) -> str:
        return "#" if root else f"{self.path}/#"


class SubscriptionTrie(Generic[K, V]):
    """Maps filters to subscribers; `match(topic)` returns every (filter, key, value).

    A key (e.g. a session) may hold several filters; each (filter, key) pair stores a value
    (the subscription options). Lookups for a topic are cached until the next change: most
    traffic repeats the same topics, and subscribe/unsubscribe is rare by comparison.

    Every walk is a loop over an explicit stack, never recursion: a topic thousands of
    levels deep costs time in proportion, not a RecursionError.
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
            node = self._child(node, level)
        last = levels[-1]
        if last == "#":
            target = node.hash_subs
        else:
            node = self._child(node, last)
            target = node.here
        new = key not in target
        target[key] = value
        if new:
            self._count += 1
        self._cache.clear()
        return new

    def _child(self, node: _Node[K, V], level: str) -> _Node[K, V]:
        child = node.children.get(level)
        if child is None:
            path = level if node is self._root else f"{node.path}/{level}"
            child = node.children[level] = _Node(path)
        return child

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
        """Every (filter, key, value) whose filter matches `topic`; cached."""
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        root = self._root
        out: list[tuple[str, K, V]] = []
        for node, hashed in self._nodes(topic):
            if hashed:
                flt = node.hash_filter(node is root)
                out.extend((flt, key, value) for key, value in node.hash_subs.items())
            else:
                out.extend((node.path, key, value) for key, value in node.here.items())
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[topic] = out
        return out

    def match_values(self, topic: str) -> list[tuple[K, V]]:
        """Every (key, value) whose filter matches `topic`, uncached and without building
        filter strings (the hub caches its own per-topic routes)."""
        out: list[tuple[K, V]] = []
        for node, hashed in self._nodes(topic):
            out.extend((node.hash_subs if hashed else node.here).items())
        return out

    def _nodes(self, topic: str) -> list[tuple[_Node[K, V], bool]]:
        """The nodes holding matching subscribers: (node, True) for its `#` subscribers,
        (node, False) for those whose filter ends there."""
        levels = topic.split("/")
        n = len(levels)
        # a filter starting with a wildcard does not match a `$` topic (MQTT-4.7.2-1)
        dollar = topic.startswith("$")
        found: list[tuple[_Node[K, V], bool]] = []
        stack: list[tuple[_Node[K, V], int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            wild_ok = i > 0 or not dollar
            # '#' at this node matches the parent level and everything below it
            if node.hash_subs and wild_ok:
                found.append((node, True))
            if i == n:
                if node.here:
                    found.append((node, False))
                continue
            children = node.children
            if not children:
                continue
            child = children.get(levels[i])
            if child is not None:
                stack.append((child, i + 1))
            if wild_ok:
                plus = children.get("+")
                if plus is not None:
                    stack.append((plus, i + 1))
        return found

    def filters(self) -> Iterator[tuple[str, K, V]]:
        """Every stored (filter, key, value), for snapshots and admin views."""
        root = self._root
        stack: list[_Node[K, V]] = [root]
        while stack:
            node = stack.pop()
            if node.hash_subs:
                flt = node.hash_filter(node is root)
                for key, value in list(node.hash_subs.items()):
                    yield flt, key, value
            if node is not root:
                for key, value in list(node.here.items()):
                    yield node.path, key, value
            stack.extend(node.children.values())


# the key under which a `TopicSet` node holds the topic that ends there: no level can be
# it (topic names carry no U+0000)
_END = "\x00"

# a level: its child levels by name, and the name ending there under `_END`
_TopicNode = dict[str, Any]


class TopicSet:
    """A set of topic names by level, so the names a filter matches are found without
    scanning them all (the hub's route cache finds the cached routes a new or departing
    reader group changes: core/routes.py `RouteCache.readers_changed`). Nested dicts, one
    per level; each name is stored at its last level under `_END`."""

    __slots__ = ("_count", "_root")

    def __init__(self) -> None:
        self._root: _TopicNode = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, topic: str) -> None:
        node = self._root
        for level in topic.split("/"):
            child = node.get(level)
            if child is None:
                child = node[level] = {}
            node = child
        if _END not in node:
            node[_END] = topic
            self._count += 1

    def discard(self, topic: str) -> None:
        """Remove `topic` (when present) and the nodes it alone held."""
        path: list[tuple[_TopicNode, str]] = []
        node = self._root
        for level in topic.split("/"):
            child = node.get(level)
            if child is None:
                return
            path.append((node, level))
            node = child
        if node.pop(_END, None) is None:
            return
        self._count -= 1
        while path and not node:
            parent, level = path.pop()
            del parent[level]
            node = parent

    def matching(self, flt: str, budget: int = -1) -> list[str] | None:
        """Every stored name `flt` matches (MQTT rules, `$` names included); None when
        finding them visits `budget` levels or more (negative: no bound)."""
        levels = flt.split("/")
        n = len(levels)
        out: list[str] = []
        stack: list[tuple[_TopicNode, int]] = [(self._root, 0)]
        while stack:
            budget -= 1
            if budget == 0:
                return None
            node, i = stack.pop()
            if i == n:
                name = node.get(_END)
                if name is not None:
                    out.append(name)
                continue
            level = levels[i]
            if level == "#":
                # the parent level itself (`a/#` matches `a`) and everything below it
                if i > 0:
                    name = node.get(_END)
                    if name is not None:
                        out.append(name)
                budget = self._collect(node, i == 0, out, budget)
                if budget == 0:
                    return None
            elif level == "+":
                for key, child in node.items():
                    if key != _END and not (i == 0 and key.startswith("$")):
                        stack.append((child, i + 1))
            else:
                child = node.get(level)
                if child is not None:
                    stack.append((child, i + 1))
        return out

    @staticmethod
    def _collect(node: _TopicNode, top: bool, out: list[str], budget: int) -> int:
        # a filter starting with a wildcard does not match `$` names (MQTT-4.7.2-1); the
        # budget left (0: spent, the walk stopped)
        stack = [
            child
            for key, child in node.items()
            if key != _END and not (top and key.startswith("$"))
        ]
        while stack:
            budget -= 1
            if budget == 0:
                return 0
            child = stack.pop()
            for key, value in child.items():
                if key == _END:
                    out.append(value)
                else:
                    stack.append(value)
        return budget
