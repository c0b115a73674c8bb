"""Identities, credentials and topic rights: the one service every transport asks.

`AuthService` answers three questions for the transports, which never know how:

- who is this? `authenticate_password` (MQTT CONNECT, HTTP Basic; the password may also be
  an access token, core/tokens.py, or a push device's secret, core/device_auth.py),
  `authenticate_token` (HTTP/WebSocket `Authorization: Bearer`, `?auth=`), `scram_start` /
  `scram_finish` (MQTT 5 enhanced authentication, core/scram_login.py), `admit_anonymous`
  (no credentials at all);
- may this identity publish / subscribe / receive? `permissions(identity, client_id)` gives a
  per-connection `Permissions` (core/permissions.py) with cached answers; `can_*` / `check_*`
  on the service are shortcuts that keep such objects in a bounded cache;
- which connections must go? `on_revoked(cb)` / `on_user_removed(cb)` fire when a token is
  revoked or expires, or a user is removed, whether through the service (admin API) or
  through another process on the same database (`pushwire token revoke`), noticed by a watch
  loop that polls the store's generation once a second (what changed: core/revocations.py).

Users, tokens and rules live in an `AuthStore` (engines/auth_store.py); the service keeps a
snapshot in memory, so authenticating never touches the disk. Password verification
(argon2id, tens of ms) runs on a small thread pool; verified pairs are remembered for a while
(core/credential_cache.py), and failed logins are rate limited per (address, username) and
per address before any hashing (core/login_budget.py).

The service's async admin methods (the HTTP admin API) run `AuthAdmin`'s synchronous
operations (core/auth_admin.py, shared with the CLI) on the store's thread and apply the
change at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pushwire.core.acl import Acl, AclRule, Decision
from pushwire.core.auth_admin import AuthAdmin, UserInfo
from pushwire.core.auth_input import log_name, validate_roles, validate_username
from pushwire.core.auth_settings import AuthSettings, AuthStats
from pushwire.core.credential_cache import CredentialCache
from pushwire.core.device_auth import DeviceAuthenticator, verify_device
from pushwire.core.identity import ANONYMOUS, ANONYMOUS_OK, AuthResult, Identity
from pushwire.core.login_budget import LoginBudget
from pushwire.core.loopback import is_loopback
from pushwire.core.passwords import DEFAULT_PASSWORDS, Passwords
from pushwire.core.permissions import Permissions
from pushwire.core.revocations import Revocations, RevokedCallback, UserRemovedCallback
from pushwire.core.scram_login import ScramLogins, ScramStart
from pushwire.core.tokens import (
    NewToken,
    TokenInfo,
    hash_token,
    looks_like_token,
    parse_token,
    token_subject,
)
from pushwire.model import AuthSnapshot, StoredUser
from pushwire.ports import AuthStore

log = logging.getLogger("pushwire.auth")

_T = TypeVar("_T")

# AuthService.permissions' cache key: (identity, client id), or the client id alone for
# ANONYMOUS (a str or None never equals a tuple, so the two kinds cannot collide)
PermissionsKey = tuple[Identity, str | None] | str | None


class AuthService:
    def __init__(
        self,
        store: AuthStore,
        settings: AuthSettings | None = None,
        *,
        seed_rules: Sequence[Mapping[str, Any] | AclRule] = (),
        passwords: Passwords | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings or AuthSettings()
        s = self.settings
        if s.anonymous not in ("auto", "on", "off"):
            raise ValueError("anonymous must be 'auto', 'on' or 'off'")
        if (
            s.login_failures_burst < 1
            or s.login_failures_address_burst < 1
            or s.login_failures_window <= 0
        ):
            raise ValueError("login failure limits must be positive")
        # config errors surface at construction, before anything starts
        self._seed = [r if isinstance(r, AclRule) else AclRule.from_config(r) for r in seed_rules]
        self.passwords = passwords or DEFAULT_PASSWORDS
        self.clock = clock
        self.monotonic = monotonic
        self.admin = AuthAdmin(store, self.passwords, clock, s.scram_iterations)
        self.acl = Acl(sys_readable=s.sys_readable)
        self.stats = AuthStats()
        self._snapshot = AuthSnapshot(generation=-1)
        self._budget = LoginBudget(s, self.stats, monotonic)
        self._store_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="pushwire-auth-store"
        )
        workers = s.hash_workers or min(4, os.cpu_count() or 1)
        self._hash_pool = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="pushwire-auth-hash"
        )
        self._revocations = Revocations(clock)
        self._cred_key = secrets.token_bytes(32)
        self._cred_cache = CredentialCache(
            self._cred_key, s.credential_cache_ttl, s.credential_cache_size, monotonic
        )
        self._permissions: OrderedDict[PermissionsKey, Permissions] = OrderedDict()
        self._touched: dict[str, float] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._ticks = 0
        # the push gateway's devices log in with their id and secret (set by the server)
        self.devices: DeviceAuthenticator | None = None
        self._scram = ScramLogins(
            self._budget,
            lambda: self._snapshot.users,
            lambda: self.devices,
            self._cred_key,
            s.scram_iterations,
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, seed config rules, load everything, start the watch loop."""
        await self._call(self.store.open)
        if self._seed:
            added = await self._call(self.admin.seed_rules, self._seed)
            for rule in added:
                log.info("acl rule %s seeded from the configuration: %s", rule.id, rule)
        await self.refresh()
        self._watch_task = asyncio.create_task(self._watch(), name="pushwire-auth-watch")

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
        close_notifications: Callable[[], Awaitable[None]] | None = getattr(
            self.store, "close_notifications", None
        )
        if close_notifications is not None:
            await close_notifications()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._call(self.store.close)
        self._store_pool.shutdown(wait=False, cancel_futures=True)
        self._hash_pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if not self.store.blocking:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_pool, functools.partial(fn, *args, **kwargs))

    async def _watch(self) -> None:
        # a store shared by several nodes (engines/redis/auth_store.py) says when another
        # node changed something, so a revocation there applies here at once; the
        # generation poll stays the backstop
        # A store that sees every change (MemoryAuthStore: no other process writes it)
        # needs no poll: the loop then wakes at a change, at the next token expiry, or
        # for the housekeeping below, instead of every `watch_interval`
        wait_change: Callable[[float], Awaitable[None]] | None = getattr(
            self.store, "wait_change", None
        )
        complete: Callable[[float, int], Awaitable[None]] | None = (
            getattr(self.store, "wait_change", None)
            if getattr(self.store, "notices_every_change", False)
            else None
        )
        interval = self.settings.watch_interval
        housekeeping = 60 * interval  # as every 60th poll did
        loop = asyncio.get_running_loop()
        sweep_at = loop.time() + housekeeping
        while True:
            if wait_change is None:
                await asyncio.sleep(interval)
            elif complete is not None:
                until_expiry = self._revocations.next_expiry - self.clock()
                timeout = max(interval, min(until_expiry, sweep_at - loop.time()))
                await complete(timeout, self._snapshot.generation)
            else:
                await wait_change(interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("auth: reloading users, tokens and rules failed")
            self._ticks += 1
            if loop.time() >= sweep_at:
                sweep_at = loop.time() + housekeeping
                self._budget.sweep()

    async def refresh(self) -> None:
        """Reload from the store if it changed; report revoked, expired and removed
        credentials. The watch loop calls this every `watch_interval` seconds."""
        generation = await self._call(self.store.generation)
        if generation != self._snapshot.generation:
            self._apply(await self._call(self.store.snapshot))
        self._revocations.check_expiry(self._snapshot)

    def _apply(self, snap: AuthSnapshot) -> None:
        old = self._snapshot
        self._snapshot = snap
        self.acl.set_rules(snap.rules)
        if snap.users != old.users:
            self._cred_cache.clear()
        self._revocations.compare(old, snap)

    def on_revoked(self, callback: RevokedCallback) -> None:
        """`callback(token_id)` when a token stops being valid (revoked, expired, or removed
        with its user): close the connections authenticated with it."""
        self._revocations.revoked_callbacks.append(callback)

    def device_removed(self, device_id: str) -> None:
        """A push device was removed: its connections end as a removed user's do."""
        self._revocations.device_removed(device_id)

    def on_user_removed(self, callback: UserRemovedCallback) -> None:
        """`callback(username)` when a user is removed: close its connections."""
        self._revocations.user_removed_callbacks.append(callback)

    # -- state -----------------------------------------------------------------------------

    @property
    def snapshot(self) -> AuthSnapshot:
        return self._snapshot

    @property
    def users_exist(self) -> bool:
        return bool(self._snapshot.users)

    # -- authentication ------------------------------------------------------------------

    def admit_anonymous(self, peer_ip: str) -> AuthResult:
        """May a client without credentials connect from `peer_ip`?"""
        mode = self.settings.anonymous
        if mode == "on":
            self.stats.anonymous_admitted += 1  # _anonymous_ok, inlined (connect storms)
            return ANONYMOUS_OK
        if mode == "off":
            return self._anonymous_refused(peer_ip, "anonymous access is disabled")
        if self._snapshot.users:
            return self._anonymous_refused(
                peer_ip, "anonymous access is disabled: credentials are required"
            )
        if is_loopback(peer_ip):
            self.stats.anonymous_admitted += 1  # _anonymous_ok, inlined
            return ANONYMOUS_OK
        return self._anonymous_refused(
            peer_ip, "anonymous access is allowed from this host only until users are created"
        )

    def _anonymous_refused(self, peer_ip: str, message: str) -> AuthResult:
        self.stats.anonymous_refused += 1
        log.info("anonymous client refused from %s: %s", peer_ip, message)
        return AuthResult(None, "not_authorized", message)

    async def authenticate_password(
        self,
        username: str | None,
        password: bytes | str | None,
        peer_ip: str,
        client_id: str | None = None,
    ) -> AuthResult:
        """MQTT CONNECT username/password and HTTP Basic. The password may be an access
        token (username then empty/None or the token's user). No username and no password
        at all means anonymous: the answer of `admit_anonymous`."""
        username = username or None
        if username is None and password is None:
            return self.admit_anonymous(peer_ip)
        attempt = (peer_ip, username if username is not None else token_subject(password))
        limited = self._budget.take(attempt, username)
        if limited is not None:
            return limited
        if not password:
            return self._budget.failed(peer_ip, username, "no password given")
        if username is not None and self.devices is not None and self.devices.owns(username):
            return verify_device(self.devices, self._budget, username, password, attempt, client_id)
        if looks_like_token(password):
            text = password.decode("ascii", "replace") if isinstance(password, bytes) else password
            token_id = parse_token(text)
            if token_id is not None and token_id in self._snapshot.tokens:
                return self._verify_token(text, attempt, expected_user=username)
        if username is None:
            return self._budget.failed(
                peer_ip, None, "a password without a username must be a token"
            )
        user = self._snapshot.users.get(username)
        if user is None:
            # pay what a real check costs, so timing does not tell which users exist
            await self.passwords.verify_dummy_async(password, self._hash_pool)
            return self._budget.failed(peer_ip, username, "no such user")
        secret = password if isinstance(password, bytes) else password.encode()
        cache_key = self._cred_cache.key(user, secret)
        if not self._cred_cache.hit(cache_key):
            ok = await self.passwords.verify_async(user.password_hash, secret, self._hash_pool)
            current = self._snapshot.users.get(username)
            if current is None or current.password_hash != user.password_hash:
                ok = False  # changed or removed while we were hashing
            if not ok:
                return self._budget.failed(peer_ip, username, "wrong password")
            self._cred_cache.put(cache_key)
            if self.passwords.needs_rehash(user.password_hash):
                self._spawn(self._rehash(user, secret))
        self._budget.refund(attempt)
        self.stats.logins_ok += 1
        return AuthResult(Identity(username, frozenset(user.roles)), "ok", "ok")

    def scram_start(self, username: str, peer_ip: str) -> ScramStart:
        """Begin a SCRAM exchange for `username` (core/scram_login.py)."""
        return self._scram.start(username, peer_ip)

    def scram_finish(
        self, username: str, peer_ip: str, start: ScramStart, proof_ok: bool
    ) -> AuthResult:
        """End an exchange begun with `scram_start`."""
        return self._scram.finish(username, peer_ip, start, proof_ok)

    def authenticate_certificate(self, common_name: str, peer_ip: str) -> AuthResult:
        """A client certificate the TLS layer verified: its CN is the username (as
        mosquitto's `use_identity_as_username`). A CN naming a stored user gets that user's
        roles; any other well-formed CN is a user without roles (rules for it still apply)."""
        try:
            validate_username(common_name)
        except ValueError:
            log.warning("client certificate from %s refused: unusable common name", peer_ip)
            return AuthResult(None, "not_authorized", "the certificate's name is not usable")
        user = self._snapshot.users.get(common_name)
        roles = frozenset(user.roles) if user is not None else frozenset()
        self.stats.logins_ok += 1
        return AuthResult(Identity(common_name, roles), "ok", "ok")

    async def authenticate_token(self, token: str, peer_ip: str) -> AuthResult:
        """`Authorization: Bearer <token>` and `?auth=<token>` (`authenticate_token_now`;
        async as the other credentials' checks are, for callers that await any of them)."""
        return self.authenticate_token_now(token, peer_ip)

    def authenticate_token_now(self, token: str, peer_ip: str) -> AuthResult:
        """`authenticate_token` without an await: a token is checked in memory (the auth
        snapshot, the failed-login budget), so a synchronous caller (the HTTP publish lane,
        http/publish.py) gets the same answer, counted the same, at once."""
        attempt = (peer_ip, token_subject(token))
        limited = self._budget.take(attempt, None)
        if limited is not None:
            return limited
        return self._verify_token(token, attempt, expected_user=None)

    def _verify_token(
        self, token: str, attempt: tuple[str, str], expected_user: str | None
    ) -> AuthResult:
        peer_ip = attempt[0]
        token_id = parse_token(token)
        if token_id is None:
            return self._budget.failed(peer_ip, expected_user, "malformed token", token=True)
        stored = self._snapshot.tokens.get(token_id)
        if stored is None:
            return self._budget.failed(
                peer_ip, expected_user, f"unknown token {token_id}", token=True
            )
        if not hmac.compare_digest(hash_token(token), stored.secret_hash):
            return self._budget.failed(
                peer_ip, expected_user, f"wrong secret for {token_id}", token=True
            )
        now = self.clock()
        if stored.revoked is not None:
            return self._budget.failed(
                peer_ip, expected_user, f"token {token_id} revoked", token=True
            )
        if stored.expired(now):
            return self._budget.failed(
                peer_ip, expected_user, f"token {token_id} expired", token=True
            )
        user = self._snapshot.users.get(stored.username)
        if user is None:
            return self._budget.failed(
                peer_ip, expected_user, f"token {token_id}: no user", token=True
            )
        if expected_user is not None and expected_user != stored.username:
            return self._budget.failed(
                peer_ip, expected_user, f"token {token_id} belongs to another user", token=True
            )
        self._budget.refund(attempt)
        self.stats.logins_ok += 1
        self._touch(token_id, now)
        identity = Identity(stored.username, frozenset(user.roles), token_id, stored.scope)
        return AuthResult(identity, "ok", "ok")

    async def _rehash(self, user: StoredUser, secret: bytes) -> None:
        new_hash = await self.passwords.hash_async(secret, self._hash_pool)

        def write() -> None:
            current = self.store.get_user(user.username)
            if current is not None and current.password_hash == user.password_hash:
                # same password, new argon2 parameters: its SCRAM verifier stays valid
                self.store.update_user(user.username, password_hash=new_hash, scram=current.scram)

        try:
            await self._call(write)
        except Exception:
            log.exception("auth: rehashing the password of %s failed", log_name(user.username))

    def _touch(self, token_id: str, now: float) -> None:
        last = self._touched.get(token_id)
        if last is not None and now - last < self.settings.token_touch_interval:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        self._touched[token_id] = now
        if not self.store.blocking:
            self.store.touch_token(token_id, now)
            return

        async def write() -> None:
            try:
                await self._call(self.store.touch_token, token_id, now)
            except Exception:
                log.warning("auth: recording the use of token %s failed", token_id)

        self._spawn(write())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- authorization -------------------------------------------------------------------

    def permissions(self, identity: Identity, client_id: str | None = None) -> Permissions:
        """The cached `Permissions` of (identity, client id): keep it on the connection."""
        # the shared anonymous identity is keyed by the client id alone: hashing the
        # Identity dataclass costs more than the rest of the lookup (connect storms)
        key: PermissionsKey = client_id if identity is ANONYMOUS else (identity, client_id)
        perms = self._permissions.get(key)
        if perms is None:
            perms = Permissions(self.acl, identity, client_id, self.settings.acl_cache_size)
            if len(self._permissions) >= self.settings.permissions_cache_size:
                self._permissions.popitem(last=False)
            self._permissions[key] = perms
        return perms

    def can_publish(self, identity: Identity, topic: str, client_id: str | None = None) -> bool:
        return self.permissions(identity, client_id).can_publish(topic)

    def can_subscribe(self, identity: Identity, flt: str, client_id: str | None = None) -> bool:
        return self.permissions(identity, client_id).can_subscribe(flt)

    def can_receive(self, identity: Identity, topic: str, client_id: str | None = None) -> bool:
        return self.permissions(identity, client_id).can_receive(topic)

    def check_publish(
        self, identity: Identity, topic: str, client_id: str | None = None
    ) -> Decision:
        """Like `can_publish`, with the reason (for a 403 body)."""
        return self.permissions(identity, client_id).check_publish(topic)

    def check_subscribe(
        self, identity: Identity, flt: str, client_id: str | None = None
    ) -> Decision:
        return self.permissions(identity, client_id).check_subscribe(flt)

    def check_receive(
        self, identity: Identity, topic: str, client_id: str | None = None
    ) -> Decision:
        return self.permissions(identity, client_id).check_receive(topic)

    # -- admin (the HTTP admin API calls these; changes apply at once) -------------------

    async def add_user(
        self, username: str, password: str | bytes, roles: Iterable[str] = ()
    ) -> UserInfo:
        validate_username(username)
        role_list = validate_roles(roles)
        if not password:
            raise ValueError("a password cannot be empty")
        password_hash = await self.passwords.hash_async(password, self._hash_pool)
        scram = await self._scram_verifier_async(password)
        info = await self._call(
            self.admin.add_user,
            username,
            None,
            role_list,
            password_hash=password_hash,
            scram=scram,
        )
        await self.refresh()
        return info

    async def set_password(self, username: str, password: str | bytes) -> None:
        if not password:
            raise ValueError("a password cannot be empty")
        password_hash = await self.passwords.hash_async(password, self._hash_pool)
        scram = await self._scram_verifier_async(password)
        await self._call(
            self.admin.set_password, username, None, password_hash=password_hash, scram=scram
        )
        await self.refresh()

    async def _scram_verifier_async(self, password: str | bytes) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._hash_pool, self.admin.scram_verifier, password)

    async def set_roles(self, username: str, roles: Iterable[str]) -> UserInfo:
        info = await self._call(self.admin.set_roles, username, list(roles))
        await self.refresh()
        return info

    async def remove_user(self, username: str) -> list[str]:
        removed = await self._call(self.admin.remove_user, username)
        await self.refresh()
        return removed

    async def list_users(self) -> list[UserInfo]:
        return await self._call(self.admin.list_users)

    async def create_token(
        self,
        username: str,
        *,
        expires_in: float | None = None,
        scope: Iterable[str] = (),
        name: str | None = None,
    ) -> NewToken:
        new = await self._call(
            self.admin.create_token,
            username,
            expires_in=expires_in,
            scope=list(scope),
            name=name,
        )
        await self.refresh()
        return new

    async def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        return await self._call(self.admin.list_tokens, username)

    async def revoke_token(self, token_id: str) -> TokenInfo:
        info = await self._call(self.admin.revoke_token, token_id)
        await self.refresh()
        return info

    async def add_rule(self, rule: AclRule) -> AclRule:
        stored = await self._call(self.admin.add_rule, rule)
        await self.refresh()
        return stored

    async def list_rules(self) -> list[AclRule]:
        return await self._call(self.admin.list_rules)

    async def remove_rule(self, rule_id: int) -> AclRule:
        removed = await self._call(self.admin.remove_rule, rule_id)
        await self.refresh()
        return removed
