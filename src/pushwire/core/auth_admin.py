"""Admin operations on users, tokens and ACL rules (`AuthAdmin`): validated, synchronous,
shared by the CLI (`pushwire user/token/acl`) and the auth service's async admin methods (the
HTTP admin API)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pushwire.core.acl import AclRule
from pushwire.core.auth_input import validate_roles, validate_username
from pushwire.core.passwords import DEFAULT_PASSWORDS, Passwords
from pushwire.core.scope import parse_scope
from pushwire.core.scram import MIN_ITERATIONS, ScramCredentials
from pushwire.core.tokens import NewToken, TokenInfo, generate_token, hash_token, parse_token
from pushwire.model import Conflict, NotFound, StoredToken, StoredUser
from pushwire.ports import AuthStore


@dataclass(frozen=True, slots=True)
class UserInfo:
    username: str
    roles: tuple[str, ...]
    created: float
    scram: bool = False  # has SCRAM-SHA-256 credentials (MQTT 5 enhanced authentication)

    @classmethod
    def of(cls, user: StoredUser) -> UserInfo:
        return cls(user.username, user.roles, user.created, user.scram is not None)


class AuthAdmin:
    """Validated admin operations on a store; blocking (the CLI calls them directly, the
    service from a worker thread)."""

    def __init__(
        self,
        store: AuthStore,
        passwords: Passwords = DEFAULT_PASSWORDS,
        clock: Callable[[], float] = time.time,
        scram_iterations: int = MIN_ITERATIONS,
    ) -> None:
        self.store = store
        self.passwords = passwords
        self.clock = clock
        self.scram_iterations = scram_iterations

    def scram_verifier(self, password: str | bytes) -> str:
        """The SCRAM-SHA-256 verifier stored beside the argon2 hash (PBKDF2: a few ms)."""
        return ScramCredentials.make(password, self.scram_iterations).encode()

    # users

    def add_user(
        self,
        username: str,
        password: str | bytes | None,
        roles: Iterable[str] = (),
        *,
        password_hash: str | None = None,
        scram: str | None = None,
    ) -> UserInfo:
        """`password_hash` (and `scram`): made by the caller already (off the event loop);
        a hash given without a verifier leaves the user without SCRAM credentials."""
        validate_username(username)
        role_list = validate_roles(roles)
        if password_hash is None:
            if not password:
                raise ValueError("a password cannot be empty")
            password_hash = self.passwords.hash(password)
            scram = self.scram_verifier(password)
        user = StoredUser(username, password_hash, role_list, self.clock(), scram)
        self.store.add_user(user)
        return UserInfo.of(user)

    def set_password(
        self,
        username: str,
        password: str | bytes | None,
        *,
        password_hash: str | None = None,
        scram: str | None = None,
    ) -> None:
        if self.store.get_user(username) is None:
            raise NotFound(f"no user {username!r}")
        if password_hash is None:
            if not password:
                raise ValueError("a password cannot be empty")
            password_hash = self.passwords.hash(password)
            scram = self.scram_verifier(password)
        self.store.update_user(username, password_hash=password_hash, scram=scram)

    def set_roles(self, username: str, roles: Iterable[str]) -> UserInfo:
        return UserInfo.of(self.store.update_user(username, roles=validate_roles(roles)))

    def remove_user(self, username: str) -> list[str]:
        """Remove a user and its tokens; returns the removed token ids."""
        return self.store.remove_user(username)

    def list_users(self) -> list[UserInfo]:
        return [UserInfo.of(u) for u in self.store.list_users()]

    # tokens

    def create_token(
        self,
        username: str,
        *,
        expires_in: float | None = None,
        scope: Iterable[str] = (),
        name: str | None = None,
    ) -> NewToken:
        if expires_in is not None and expires_in <= 0:
            raise ValueError("a token's lifetime must be positive")
        if name is not None and (len(name) > 200 or any(ord(c) < 32 for c in name)):
            raise ValueError("a token name is up to 200 printable characters")
        scope_entries = parse_scope(scope)
        if self.store.get_user(username) is None:
            raise NotFound(f"no user {username!r}")
        now = self.clock()
        token, token_id = generate_token()
        stored = StoredToken(
            id=token_id,
            username=username,
            secret_hash=hash_token(token),
            created=now,
            expires=None if expires_in is None else now + expires_in,
            scope=scope_entries,
            name=name,
        )
        self.store.add_token(stored)
        return NewToken(token, TokenInfo.of(stored))

    def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        return [TokenInfo.of(t) for t in self.store.list_tokens(username)]

    def revoke_token(self, token_or_id: str) -> TokenInfo:
        """Revoke by id (or by the whole token, if that is what the operator has at hand)."""
        token_id = parse_token(token_or_id) or token_or_id
        return TokenInfo.of(self.store.revoke_token(token_id, self.clock()))

    # ACL rules

    def add_rule(self, rule: AclRule) -> AclRule:
        return self.store.add_rule(rule.with_id(None))

    def list_rules(self) -> list[AclRule]:
        return self.store.list_rules()

    def remove_rule(self, rule_id: int) -> AclRule:
        return self.store.remove_rule(rule_id)

    def seed_rules(self, rules: Iterable[AclRule]) -> list[AclRule]:
        """Add the rules not yet in the store (config seeding); returns the added ones."""
        have = {r.key for r in self.store.list_rules()}
        added: list[AclRule] = []
        for rule in rules:
            if rule.key in have:
                continue
            with contextlib.suppress(Conflict):  # another process seeded it meanwhile
                added.append(self.store.add_rule(rule.with_id(None)))
            have.add(rule.key)
        return added
