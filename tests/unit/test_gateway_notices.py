"""Registry change notices of the gateway on Redis: what a node applies, and what makes it
reload instead (engines/redis/gateway_notices.py)."""

from __future__ import annotations

import pytest

from pushwire.engines.redis.gateway_notices import RegistryChange, decode_change, encode_change


def test_a_notice_names_its_generation_and_records() -> None:
    items = [("app", "a1"), ("key", "a1\0k1"), ("token", "t"), ("device", "d")]
    raw = encode_change(7, items)
    assert decode_change(raw) == RegistryChange(7, tuple(items))
    assert decode_change(raw.decode()) == RegistryChange(7, tuple(items))


@pytest.mark.parametrize(
    "raw",
    [b"changed", b"", b"7\nuser\tx", b"7\ntoken", b"-1\ntoken\tt", b"\xff\xfe", b"x\ntoken\tt"],
)
def test_anything_else_is_no_notice_and_means_reload(raw: bytes) -> None:
    assert decode_change(raw) is None
