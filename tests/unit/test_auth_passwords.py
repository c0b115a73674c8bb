from __future__ import annotations

import asyncio

import pytest

from pushwire.core import passwords as pw
from pushwire.core.passwords import Passwords

FAST = Passwords(time_cost=1, memory_cost_kib=8, parallelism=1)


def test_hash_is_argon2id_and_salted() -> None:
    a = FAST.hash("correct horse")
    b = FAST.hash("correct horse")
    assert a.startswith("$argon2id$")
    assert a != b  # a fresh salt each time
    assert "correct horse" not in a


def test_verify_right_and_wrong() -> None:
    hashed = FAST.hash("correct horse")
    assert FAST.verify(hashed, "correct horse")
    assert FAST.verify(hashed, b"correct horse")  # str is UTF-8 of the same bytes
    assert not FAST.verify(hashed, "correct horse ")
    assert not FAST.verify(hashed, "")
    assert not FAST.verify(hashed, b"\xff\xfe")


def test_verify_malformed_hash_is_false_not_an_error() -> None:
    assert not FAST.verify("not-a-hash", "x")
    assert not FAST.verify("$argon2id$v=19$m=8,t=1,p=1$AAAA$BBBB", "x")
    assert FAST.needs_rehash("not-a-hash")


def test_needs_rehash_follows_parameters() -> None:
    hashed = FAST.hash("pw")
    assert not FAST.needs_rehash(hashed)
    stronger = Passwords(time_cost=2, memory_cost_kib=16, parallelism=1)
    assert stronger.needs_rehash(hashed)
    assert stronger.verify(hashed, "pw")  # old hashes keep verifying


def test_default_parameters_are_the_named_constants() -> None:
    hashed = pw.hash_password("pw")
    assert f"m={pw.ARGON2_MEMORY_COST_KIB},t={pw.ARGON2_TIME_COST},p={pw.ARGON2_PARALLELISM}" in (
        hashed
    )
    assert pw.verify_password(hashed, "pw")
    assert not pw.needs_rehash(hashed)
    assert pw.needs_rehash(FAST.hash("pw"))


async def test_async_paths() -> None:
    hashed = await FAST.hash_async("pw")
    results = await asyncio.gather(
        FAST.verify_async(hashed, "pw"),
        FAST.verify_async(hashed, "nope"),
        FAST.verify_dummy_async("pw"),
    )
    assert list(results) == [True, False, False]


@pytest.mark.parametrize("password", ["pw", b"pw"])
async def test_module_async_helpers(password: str | bytes) -> None:
    hashed = await pw.hash_password_async(password)
    assert await pw.verify_password_async(hashed, "pw")
