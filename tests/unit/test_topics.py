from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushwire.core.topics import (
    SubscriptionTrie,
    TopicError,
    matches,
    split_shared,
    validate_filter,
    validate_topic_name,
)


@pytest.mark.parametrize(
    ("flt", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),  # '#' matches the parent level too
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+", "/b", True),  # empty levels are levels
        ("+", "/b", False),
        ("#", "$SYS/x", False),  # wildcard first level never matches '$' topics
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/c", False),
        ("a/+/c", "a//c", True),
    ],
)
def test_matches(flt: str, topic: str, expected: bool) -> None:
    assert matches(flt, topic) is expected


@pytest.mark.parametrize("flt", ["a/b#", "a/#/b", "a+", "+a/b", "", "a/\x00"])
def test_invalid_filters(flt: str) -> None:
    with pytest.raises(TopicError):
        validate_filter(flt)


@pytest.mark.parametrize("name", ["", "a/+", "a/#", "x\x00"])
def test_invalid_topic_names(name: str) -> None:
    with pytest.raises(TopicError):
        validate_topic_name(name)


def test_shared_filters() -> None:
    assert split_shared("$share/g/a/+") == ("g", "a/+")
    assert split_shared("a/b") == (None, "a/b")
    for bad in ["$share/g", "$share//a", "$share/g+/a"]:
        with pytest.raises(TopicError):
            split_shared(bad)


def test_trie_add_match_remove() -> None:
    trie: SubscriptionTrie[str, int] = SubscriptionTrie()
    assert trie.add("a/+", "s1", 1)
    assert trie.add("a/#", "s2", 2)
    assert trie.add("#", "s3", 3)
    assert not trie.add("a/+", "s1", 5)  # replace keeps one pair
    assert len(trie) == 3
    got = sorted(trie.match("a/b"))
    assert got == [("#", "s3", 3), ("a/#", "s2", 2), ("a/+", "s1", 5)]
    assert sorted(trie.match("a")) == [("#", "s3", 3), ("a/#", "s2", 2)]
    assert trie.match("$SYS/a") == []
    assert trie.remove("a/+", "s1")
    assert not trie.remove("a/+", "s1")
    assert sorted(trie.match("a/b")) == [("#", "s3", 3), ("a/#", "s2", 2)]
    assert trie.remove("a/#", "s2") and trie.remove("#", "s3")
    assert len(trie) == 0
    assert trie.match("a/b") == []
    assert list(trie.filters()) == []


def test_trie_cache_invalidated_on_change() -> None:
    trie: SubscriptionTrie[str, int] = SubscriptionTrie()
    assert trie.match("x/y") == []
    trie.add("x/y", "k", 0)
    assert trie.match("x/y") == [("x/y", "k", 0)]


levels = st.sampled_from(["a", "b", "", "$x"])
topic_st = st.lists(levels, min_size=1, max_size=4).map("/".join)
filter_st = st.lists(st.sampled_from(["a", "b", "", "+", "$x"]), min_size=1, max_size=4).flatmap(
    lambda ls: st.sampled_from(["/".join(ls), "/".join([*ls, "#"])])
)


@given(st.lists(filter_st, max_size=6), topic_st)
def test_trie_agrees_with_matches(filters: list[str], topic: str) -> None:
    trie: SubscriptionTrie[int, str] = SubscriptionTrie()
    for i, flt in enumerate(filters):
        trie.add(flt, i, flt)
    expected = sorted((f, i, f) for i, f in enumerate(filters) if matches(f, topic))
    assert sorted(trie.match(topic)) == expected


def test_trie_walks_deep_topics_without_recursion() -> None:
    """A 5000-level filter and topic: match, filters() and remove work (they recursed once,
    and a deep enough topic raised RecursionError for every publisher)."""
    deep = "/".join(["a"] * 5000)
    trie: SubscriptionTrie[str, int] = SubscriptionTrie()
    trie.add(deep, "k", 1)
    trie.add(deep[:-1] + "+", "k2", 2)
    trie.add(deep[:-1] + "#", "k3", 3)
    assert sorted(trie.match(deep)) == sorted(
        [(deep, "k", 1), (deep[:-1] + "+", "k2", 2), (deep[:-1] + "#", "k3", 3)]
    )
    assert sorted(trie.match_values(deep)) == [("k", 1), ("k2", 2), ("k3", 3)]
    assert sorted(f for f, _, _ in trie.filters()) == sorted(
        [deep, deep[:-1] + "+", deep[:-1] + "#"]
    )
    assert trie.remove(deep, "k") and trie.remove(deep[:-1] + "+", "k2")
    assert trie.remove(deep[:-1] + "#", "k3") and len(trie) == 0


def test_level_limit_on_names_and_filters() -> None:
    ok = "/".join(["a"] * 128)
    validate_topic_name(ok)
    validate_filter(ok)
    validate_filter("$share/g/" + ok)  # the share prefix does not count
    with pytest.raises(TopicError, match="129 levels"):
        validate_topic_name(ok + "/a")
    with pytest.raises(TopicError, match="129 levels"):
        validate_filter(ok + "/#")
    with pytest.raises(TopicError):
        validate_topic_name("a/b/c", max_levels=2)
    validate_filter("a/b", max_levels=2)
