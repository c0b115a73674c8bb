"""The route cache is bounded by its setting (route_cache_bytes): 0 caches nothing, and a
small budget keeps the most recently used routes only."""

from __future__ import annotations

from pushwire.core.routes import Route, RouteCache


def test_zero_budget_caches_nothing() -> None:
    cache = RouteCache(0)
    cache.put("a", Route([], []))
    assert cache.get("a") is None and len(cache) == 0


def test_small_budget_evicts_the_least_recently_used_route() -> None:
    one = Route([], [])
    cache = RouteCache(2 * (one.size + 1))  # room for two routes of one-letter topics
    cache.put("a", one)
    cache.put("b", Route([], []))
    assert cache.get("a") is one  # a is now the most recently used
    cache.put("c", Route([], []))
    assert cache.get("b") is None and cache.get("a") is one and cache.get("c") is not None
