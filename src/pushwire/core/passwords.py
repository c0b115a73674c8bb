"""Password hashing: argon2id (RFC 9106) through argon2-cffi.

The parameters are RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes). A
verification costs tens of milliseconds of CPU on purpose, so on the server it must never
run on the event loop: use `verify_async` / `hash_async`, which run in a thread (a bounded
executor when one is given, so a flood of logins cannot take every worker thread).

A hash carries its own parameters, so hashes made with other parameters keep verifying;
`needs_rehash` tells when a stored hash should be replaced by one made with the current
parameters (the auth service does that after a successful login).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ARGON2_TIME_COST: Final = 3  # passes over memory
ARGON2_MEMORY_COST_KIB: Final = 65536  # 64 MiB
ARGON2_PARALLELISM: Final = 4  # lanes
ARGON2_HASH_LEN: Final = 32  # bytes of output
ARGON2_SALT_LEN: Final = 16  # bytes of random salt

Secret = str | bytes


class Passwords:
    """argon2id hashing with explicit parameters (defaults: the constants above)."""

    def __init__(
        self,
        *,
        time_cost: int = ARGON2_TIME_COST,
        memory_cost_kib: int = ARGON2_MEMORY_COST_KIB,
        parallelism: int = ARGON2_PARALLELISM,
        hash_len: int = ARGON2_HASH_LEN,
        salt_len: int = ARGON2_SALT_LEN,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
            hash_len=hash_len,
            salt_len=salt_len,
            type=Type.ID,
        )
        # verifying against this when a user does not exist costs what a real check costs,
        # so response times do not reveal which usernames exist
        self._dummy_hash: str | None = None

    def hash(self, password: Secret) -> str:
        """A PHC string `$argon2id$v=19$m=...,t=...,p=...$salt$hash`."""
        return self._hasher.hash(password)

    def verify(self, hashed: str, password: Secret) -> bool:
        """True when `password` matches `hashed`; False for a mismatch or a malformed hash."""
        try:
            return self._hasher.verify(hashed, password)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        """True when `hashed` was made with other parameters (or is not an argon2 hash)."""
        try:
            return self._hasher.check_needs_rehash(hashed)
        except (InvalidHashError, ValueError):
            return True

    def verify_dummy(self, password: Secret) -> bool:
        """Spend the cost of one verification and fail (for unknown usernames)."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hash(b"pushwire-dummy-password")
        self.verify(self._dummy_hash, password)
        return False

    async def verify_async(
        self,
        hashed: str,
        password: Secret,
        executor: concurrent.futures.Executor | None = None,
    ) -> bool:
        """`verify` in a thread: the event loop never blocks on argon2."""
        if executor is None:
            return await asyncio.to_thread(self.verify, hashed, password)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self.verify, hashed, password)

    async def hash_async(
        self, password: Secret, executor: concurrent.futures.Executor | None = None
    ) -> str:
        if executor is None:
            return await asyncio.to_thread(self.hash, password)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self.hash, password)

    async def verify_dummy_async(
        self, password: Secret, executor: concurrent.futures.Executor | None = None
    ) -> bool:
        if executor is None:
            return await asyncio.to_thread(self.verify_dummy, password)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self.verify_dummy, password)


DEFAULT_PASSWORDS: Final = Passwords()


def hash_password(password: Secret) -> str:
    return DEFAULT_PASSWORDS.hash(password)


def verify_password(hashed: str, password: Secret) -> bool:
    return DEFAULT_PASSWORDS.verify(hashed, password)


def needs_rehash(hashed: str) -> bool:
    return DEFAULT_PASSWORDS.needs_rehash(hashed)


async def verify_password_async(hashed: str, password: Secret) -> bool:
    return await DEFAULT_PASSWORDS.verify_async(hashed, password)


async def hash_password_async(password: Secret) -> str:
    return await DEFAULT_PASSWORDS.hash_async(password)
