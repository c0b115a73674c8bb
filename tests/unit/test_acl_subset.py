"""Property tests: `covers` (filter subset) agrees with brute-force matching."""

from __future__ import annotations

import itertools
from functools import cache

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pushwire.core.acl import Acl, AclRule, covers
from pushwire.core.topics import matches

# filter levels are drawn from these literals; topics also use FRESH, a level no filter
# names, so "any level" is represented. Up to MAX_LEVELS levels per filter; topics go one
# level deeper. A counterexample to "wide covers narrow" always exists within that universe:
# follow `narrow`, put FRESH under each '+' and '#' that `wide` does not match there.
LITERALS = ("a", "b", "", "$x")
FRESH = "z"
MAX_LEVELS = 3


@cache
def universe() -> tuple[str, ...]:
    levels = (*LITERALS, FRESH)
    topics = []
    for n in range(1, MAX_LEVELS + 2):
        for combo in itertools.product(levels, repeat=n):
            topics.append("/".join(combo))
    return tuple(topics)


@st.composite
def filters(draw: st.DrawFn) -> str:
    n = draw(st.integers(1, MAX_LEVELS))
    levels = [draw(st.sampled_from((*LITERALS, "+"))) for _ in range(n)]
    if draw(st.booleans()):
        if draw(st.booleans()) or n == 1:
            levels.append("#")
        else:
            levels[-1] = "#"
    flt = "/".join(levels)
    assume(flt != "")  # the empty string is not a filter (an empty level within one is)
    return flt


def brute_force_covers(wide: str, narrow: str) -> bool:
    return all(matches(wide, t) for t in universe() if matches(narrow, t))


@settings(max_examples=1500)
@given(filters(), filters())
def test_covers_agrees_with_brute_force(wide: str, narrow: str) -> None:
    assert covers(wide, narrow) == brute_force_covers(wide, narrow)


@settings(max_examples=300)
@given(filters())
def test_covers_is_reflexive_and_hash_covers_non_dollar(flt: str) -> None:
    assert covers(flt, flt)
    assert covers("#", flt) == (not flt.startswith("$"))


@settings(max_examples=500)
@given(filters(), filters(), filters())
def test_covers_is_transitive(a: str, b: str, c: str) -> None:
    if covers(a, b) and covers(b, c):
        assert covers(a, c)


@settings(max_examples=500)
@given(filters(), filters(), filters())
def test_subscribe_then_receive_agree(allow_flt: str, deny_flt: str, sub: str) -> None:
    """A granted subscription never needs an allow that delivery would not find; and a
    subscription refused by a deny has every topic refused at delivery."""
    acl = Acl(
        [
            AclRule("all", None, "allow", "read", allow_flt),
            AclRule("all", None, "deny", "read", deny_flt),
        ]
    )
    compiled = acl.compile("u", (), "c")
    topics = [t for t in universe() if matches(sub, t)]
    if compiled.subscribe(sub).allowed:
        assert all(compiled.receive(t).allowed for t in topics if not matches(deny_flt, t))
    if covers(deny_flt, sub):
        assert not compiled.subscribe(sub).allowed
        assert not any(compiled.receive(t).allowed for t in topics)
