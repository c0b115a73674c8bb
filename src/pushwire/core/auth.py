"""Identities, credentials and topic rights: the one object every transport asks.

`AuthService` answers three questions for the transports, which never know how:

- who is this? `authenticate_password` (MQTT CONNECT, HTTP Basic; the password may also be
  an access token), `authenticate_token` (HTTP/WebSocket `Authorization: Bearer`, `?auth=`),
  `admit_anonymous` (no credentials at all);
- may this identity publish / subscribe / receive? `permissions(identity, client_id)` gives a
  per-connection `Permissions` with cached answers; `can_*` / `check_*` on the service are
  shortcuts that keep such objects in a bounded cache;
- which connections must go? `on_revoked(cb)` / `on_user_removed(cb)` fire when a token is
  revoked or expires, or a user is removed, whether through the service (admin API) or
  through another process on the same database (`pushwire token revoke`), noticed by a watch
  loop that polls the store's generation once a second.

Users, tokens and rules live in an `AuthStore` (engines/auth_store.py); the service keeps a
snapshot in memory, so authenticating never touches the disk. Password verification
(argon2id, tens of ms) runs on a small thread pool, and failed logins are rate limited
(`KeyedLimiter`) per (address, username) and, more loosely, per address: an attempt takes a
token from both buckets before any hashing and a successful login gives them back, so
neither guessing nor an argon2 flood gets far. Why two: behind a reverse proxy every user
shares one address, and a budget per address alone let one user's typos (or one attacker)
lock everybody out; per (address, username), the typos lock only that username from that
address. The looser per-address budget (ten times as many failures by default) still caps
password spraying over many usernames and the argon2 work one address can cause.
Failures are logged with the username and IP only; no password or token is ever logged.

Tokens look like `pw_<id>_<secret>`: `id` is 12 hex digits (visible in logs and listings,
used for lookups), `secret` is 32 random bytes in urlsafe base64. The store keeps the
SHA-256 of the whole token; verification is a constant-time comparison.

SCRAM-SHA-256 (MQTT 5 enhanced authentication, core/scram.py, mqtt/enhanced_auth.py): every
way a password is set (`AuthAdmin`, the service's admin methods) also stores the user's
SCRAM verifier. `scram_start` / `scram_finish` bracket one exchange: the start takes an
attempt from the same failure budgets as a password login and finds the verifier (a stable
fake one for an unknown user, so the exchange fails only at the proof, like a wrong
password); the finish gives the budget back on success. A SCRAM login costs the server a
few HMACs (PBKDF2 runs on the client), so it never touches the hashing pool.

`AuthAdmin` holds the synchronous admin operations shared by the CLI (`pushwire user/token/
acl`) and the service's async admin methods (the HTTP admin API).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeVar

from pushwire.core.acl import (
    ADMIN_ROLE,
    Acl,
    AclError,
    AclRule,
    CompiledAcl,
    Decision,
    covers,
    substitute,
)
from pushwire.core.passwords import DEFAULT_PASSWORDS, Passwords
from pushwire.core.ratelimit import KeyedLimiter
from pushwire.core.scram import MIN_ITERATIONS, ScramCredentials, ScramError
from pushwire.core.topics import TopicError, matches, split_shared, validate_filter
from pushwire.model import (
    AuthSnapshot,
    Conflict,
    NotFound,
    StoredToken,
    StoredUser,
)
from pushwire.ports import AuthStore

log = logging.getLogger("pushwire.auth")

_T = TypeVar("_T")

AnonymousMode = Literal["auto", "on", "off"]
AuthReason = Literal["ok", "bad_credentials", "not_authorized", "rate_limited"]

TOKEN_PREFIX: Final = "pw_"
_TOKEN_PREFIX_BYTES: Final = TOKEN_PREFIX.encode()
TOKEN_ID_BYTES: Final = 6  # 12 hex digits: enough to never collide in one store
TOKEN_SECRET_BYTES: Final = 32
_TOKEN_RE: Final = re.compile(r"pw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_ROLE_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
USERNAME_MAX: Final = 256
SCOPE_ADMIN: Final = "admin"
_SCOPE_KINDS: Final = ("read", "write", "readwrite")
_DURATION_RE: Final = re.compile(r"(\d+)\s*([smhdw]?)")
_DURATION_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

__all__ = [
    "ADMIN_ROLE",
    "AclError",
    "AclRule",
    "AnonymousMode",
    "AuthAdmin",
    "AuthReason",
    "AuthResult",
    "AuthService",
    "AuthSettings",
    "Conflict",
    "Decision",
    "Identity",
    "NewToken",
    "NotFound",
    "Permissions",
    "ScramStart",
    "TokenInfo",
    "UserInfo",
    "generate_token",
    "hash_token",
    "is_loopback",
    "parse_duration",
    "parse_scope",
    "parse_token",
]


# -- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection or request is. Immutable: decided once, at authentication."""

    username: str | None  # None: anonymous
    roles: frozenset[str] = frozenset()
    token_id: str | None = None  # set when authenticated with an access token
    # token scope: "read:F" / "write:F" / "readwrite:F" / "admin"; empty: the user's full rights
    scope: tuple[str, ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.username is None

    @property
    def is_admin(self) -> bool:
        """Admin rights (admin API, `$SYS`): role `admin`, and a token scope (if any) that
        includes `admin`."""
        return ADMIN_ROLE in self.roles and (not self.scope or SCOPE_ADMIN in self.scope)


ANONYMOUS: Final = Identity(None)


@dataclass(frozen=True, slots=True)
class AuthResult:
    identity: Identity | None
    reason: AuthReason
    message: str  # for the client and the logs; never contains the credential
    retry_after: float | None = None  # seconds, with reason "rate_limited"

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


# AuthService.permissions' cache key: (identity, client id), or the client id alone for
# ANONYMOUS (a str or None never equals a tuple, so the two kinds cannot collide)
PermissionsKey = tuple[Identity, str | None] | str | None

# immutable, so every admitted anonymous client shares one (connect storms)
ANONYMOUS_OK: Final = AuthResult(ANONYMOUS, "ok", "anonymous")


@dataclass(frozen=True, slots=True)
class UserInfo:
    username: str
    roles: tuple[str, ...]
    created: float
    scram: bool = False  # has SCRAM-SHA-256 credentials (MQTT 5 enhanced authentication)

    @classmethod
    def of(cls, user: StoredUser) -> UserInfo:
        return cls(user.username, user.roles, user.created, user.scram is not None)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listings show it: everything but the secret (and its hash)."""

    id: str
    username: str
    name: str | None
    created: float
    expires: float | None
    scope: tuple[str, ...]
    last_used: float | None
    revoked: float | None

    @classmethod
    def of(cls, token: StoredToken) -> TokenInfo:
        return cls(
            token.id,
            token.username,
            token.name,
            token.created,
            token.expires,
            token.scope,
            token.last_used,
            token.revoked,
        )

    def status(self, now: float | None = None) -> Literal["active", "expired", "revoked"]:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= (time.time() if now is None else now):
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class ScramStart:
    """What `AuthService.scram_start` found: the credentials to run the exchange with, or
    the refusal (`no_verifier`: the user has no SCRAM credentials, MQTT 0x8C)."""

    credentials: ScramCredentials | None
    refusal: AuthResult | None
    verifier: str | None = None  # the stored verifier used (None: a mock or a refusal)
    no_verifier: bool = False


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str  # the secret: shown once, never stored
    info: TokenInfo


# -- helpers -------------------------------------------------------------------------------


def generate_token() -> tuple[str, str]:
    """A new (token, token id)."""
    token_id = secrets.token_hex(TOKEN_ID_BYTES)
    return f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}", token_id


def parse_token(token: str) -> str | None:
    """The id of a well-formed token, None for anything else."""
    m = _TOKEN_RE.fullmatch(token)
    return m.group(1) if m else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def looks_like_token(value: str | bytes) -> bool:
    if isinstance(value, bytes):
        return value.startswith(_TOKEN_PREFIX_BYTES)
    return value.startswith(TOKEN_PREFIX)


def _token_subject(secret: str | bytes | None) -> str:
    """The failure-budget subject of a login without username: the token's id (a NUL first,
    so it never equals a username), or one shared subject for what is not a token."""
    if isinstance(secret, bytes):
        secret = secret.decode("ascii", "replace")
    token_id = parse_token(secret) if secret else None
    return f"\0token:{token_id or ''}"


def _log_name(username: str | None) -> str:
    """A username as logs may show it (a token pasted as a username is not)."""
    if username is None:
        return "<anonymous>"
    if looks_like_token(username):
        return "<token-like username>"
    return repr(username[:USERNAME_MAX])


@functools.lru_cache(maxsize=4096)
def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1); False if unparseable.

    Cached: parsing the address (ipaddress) cost ~7% of a connection storm's CPU, for the
    same few peer strings every time."""
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # IPv6 zone index
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def validate_username(name: str) -> str:
    """Usernames: 1..256 characters; no control characters, no `+ # / :`, no leading `$`
    or surrounding whitespace (ACL substitution, HTTP Basic and `$SYS` stay unambiguous)."""
    if not name or len(name) > USERNAME_MAX:
        raise ValueError(f"a username is 1 to {USERNAME_MAX} characters")
    if name != name.strip():
        raise ValueError("a username cannot start or end with whitespace")
    if any(c in "+#/:" or ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("a username cannot contain '+', '#', '/', ':' or control characters")
    if name.startswith("$"):
        raise ValueError("a username cannot start with '$'")
    if looks_like_token(name):
        raise ValueError(f"a username cannot start with {TOKEN_PREFIX!r}")
    return name


def validate_roles(roles: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for role in roles:
        if not _ROLE_RE.fullmatch(role):
            raise ValueError(f"bad role {role!r}: use 1 to 64 of A-Z a-z 0-9 _ . -")
        if role not in out:
            out.append(role)
    return tuple(out)


def parse_scope(entries: Iterable[str]) -> tuple[str, ...]:
    """Validate token scope entries: `read:FILTER`, `write:FILTER`, `readwrite:FILTER` or
    `admin`. Filters may use `+`, `#`, `%u` and `%c`."""
    out: list[str] = []
    for entry in entries:
        entry = entry.strip()
        if entry != SCOPE_ADMIN:
            kind, sep, flt = entry.partition(":")
            if not sep or kind not in _SCOPE_KINDS:
                raise ValueError(
                    f"bad scope {entry!r}: use read:FILTER, write:FILTER, readwrite:FILTER or admin"
                )
            if flt.startswith("$share/"):
                raise ValueError(f"bad scope {entry!r}: name the filter without $share/group/")
            try:
                validate_filter(flt)
            except TopicError as exc:
                raise ValueError(f"bad scope {entry!r}: {exc}") from None
        if entry not in out:
            out.append(entry)
    return tuple(out)


def parse_duration(text: str) -> float | None:
    """`30d`, `12h`, `15m`, `45s`, `2w`, `3600` (seconds) -> seconds; `never` -> None."""
    value = text.strip().lower()
    if value in ("never", "none", "0"):
        return None
    m = _DURATION_RE.fullmatch(value)
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"bad duration {text!r}: use e.g. 30d, 12h, 15m, 45s, 2w or never")
    return float(int(m.group(1)) * _DURATION_UNITS[m.group(2)])


# -- per-connection permissions ------------------------------------------------------------


class Permissions:
    """The topic rights of one identity on one client id, with cached answers.

    Transports keep one per connection (`AuthService.permissions`) and call it for every
    PUBLISH (`can_publish`), SUBSCRIBE (`can_subscribe`) and delivery (`can_receive`). The
    compiled rules and the per-topic caches are rebuilt when the rule set changes (a version
    counter); the caches are bounded (oldest entry out)."""

    __slots__ = (
        "_acl",
        "_cache_size",
        "_compiled",
        "_pub",
        "_read_scope",
        "_recv",
        "_scoped",
        "_write_scope",
        "client_id",
        "identity",
    )

    def __init__(
        self, acl: Acl, identity: Identity, client_id: str | None = None, cache_size: int = 4096
    ) -> None:
        self._acl = acl
        self.identity = identity
        self.client_id = client_id
        self._cache_size = max(1, cache_size)
        self._pub: dict[str, bool] = {}
        self._recv: dict[str, bool] = {}
        self._compiled: CompiledAcl = acl.compile(identity.username, identity.roles, client_id)
        # a token scope restricts topics to its read/write entries (a scope of only
        # "admin" grants no topic at all); no scope: the user's full rights
        self._scoped = bool(identity.scope)
        self._read_scope: list[str] = []
        self._write_scope: list[str] = []
        for entry in identity.scope:
            kind, _, flt = entry.partition(":")
            if kind not in _SCOPE_KINDS:
                continue
            concrete = substitute(flt, identity.username, client_id)
            if concrete is None:
                continue
            if kind != "write":
                self._read_scope.append(concrete)
            if kind != "read":
                self._write_scope.append(concrete)

    def _fresh(self) -> None:
        if self._compiled.version != self._acl.version:
            self._compiled = self._acl.compile(
                self.identity.username, self.identity.roles, self.client_id
            )
            self._pub.clear()
            self._recv.clear()

    def check_publish(self, topic: str) -> Decision:
        self._fresh()
        decision = self._compiled.publish(topic)
        if (
            decision.allowed
            and self._scoped
            and not any(matches(f, topic) for f in self._write_scope)
        ):
            return Decision(False, f"the token's scope does not allow writing to {topic!r}")
        return decision

    def check_subscribe(self, flt: str) -> Decision:
        self._fresh()
        decision = self._compiled.subscribe(flt)
        if decision.allowed and self._scoped:
            _, inner = split_shared(flt)  # valid: the ACL check above parsed it
            if not any(covers(f, inner) for f in self._read_scope):
                return Decision(False, f"the token's scope does not allow reading {flt!r}")
        return decision

    def check_receive(self, topic: str) -> Decision:
        self._fresh()
        decision = self._compiled.receive(topic)
        if (
            decision.allowed
            and self._scoped
            and not any(matches(f, topic) for f in self._read_scope)
        ):
            return Decision(False, f"the token's scope does not allow reading {topic!r}")
        return decision

    def can_publish(self, topic: str) -> bool:
        # per message (MQTT): the version check of `_fresh` inline, then the cached answer
        if self._compiled.version != self._acl.version:
            self._fresh()
        cached = self._pub.get(topic)
        if cached is None:
            cached = self.check_publish(topic).allowed
            self._remember(self._pub, topic, cached)
        return cached

    def can_subscribe(self, flt: str) -> bool:
        return self.check_subscribe(flt).allowed

    def can_receive(self, topic: str) -> bool:
        # per message (MQTT): the version check of `_fresh` inline, then the cached answer
        if self._compiled.version != self._acl.version:
            self._fresh()
        cached = self._recv.get(topic)
        if cached is None:
            cached = self.check_receive(topic).allowed
            self._remember(self._recv, topic, cached)
        return cached

    def _remember(self, cache: dict[str, bool], topic: str, allowed: bool) -> None:
        if len(cache) >= self._cache_size:
            del cache[next(iter(cache))]  # oldest first (dicts keep insertion order)
        cache[topic] = allowed


# -- admin operations (synchronous) --------------------------------------------------------


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


# -- the service ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthSettings:
    # "auto": loopback clients only, and only while no user exists; "on"; "off"
    anonymous: AnonymousMode = "auto"
    # failed logins per (IP, username): `burst` attempts, refilled over `window` seconds
    login_failures_burst: int = 10
    login_failures_window: float = 60.0
    # failed logins per IP over all usernames (spraying), refilled over the same window
    login_failures_address_burst: int = 100
    # every authenticated identity (not only the admin role) may read $SYS
    sys_readable: bool = False
    # seconds between polls of the store for changes (CLI edits, token expiry)
    watch_interval: float = 1.0
    # seconds a verified username/password pair is remembered (HTTP Basic on every request
    # would otherwise pay argon2 each time); 0 disables
    credential_cache_ttl: float = 300.0
    credential_cache_size: int = 10_000
    # per-connection topic decision cache size, and identities cached by the service
    acl_cache_size: int = 4096
    permissions_cache_size: int = 65_536
    # threads verifying passwords; None: min(4, CPUs)
    hash_workers: int | None = None
    # a token's last_used is written at most this often (seconds)
    token_touch_interval: float = 60.0
    # PBKDF2 iterations of the SCRAM-SHA-256 verifiers made when passwords are set
    scram_iterations: int = MIN_ITERATIONS


@dataclass(slots=True)
class AuthStats:
    logins_ok: int = 0
    logins_failed: int = 0
    logins_rate_limited: int = 0
    anonymous_admitted: int = 0
    anonymous_refused: int = 0


RevokedCallback = Callable[[str], None]
UserRemovedCallback = Callable[[str], None]


class DeviceAuthenticator(Protocol):
    """Registered push devices (gateway/): checks a device id and secret, fast (the secrets
    are 256-bit random, so a SHA-256 comparison is the right tool, not argon2)."""

    def owns(self, username: str) -> bool:
        """True when `username` is a device id this authenticator answers for."""
        ...

    def verify(self, device_id: str, secret: bytes) -> Identity | None:
        """The device's identity (role `device`), None for a wrong or unknown credential."""
        ...


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
        # keyed by (IP, subject): the username, or a token id for bearer tokens
        self._failures: KeyedLimiter[tuple[str, str]] = KeyedLimiter(
            s.login_failures_burst / s.login_failures_window,
            s.login_failures_burst,
            clock=monotonic,
        )
        self._address_failures: KeyedLimiter[str] = KeyedLimiter(
            s.login_failures_address_burst / s.login_failures_window,
            s.login_failures_address_burst,
            clock=monotonic,
        )
        self._rate_limit_logged: dict[tuple[str, str], float] = {}
        self._store_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="pushwire-auth-store"
        )
        workers = s.hash_workers or min(4, os.cpu_count() or 1)
        self._hash_pool = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="pushwire-auth-hash"
        )
        self._revoked_callbacks: list[RevokedCallback] = []
        self._user_removed_callbacks: list[UserRemovedCallback] = []
        self._dead_tokens: set[str] = set()  # revoked/expired/removed, already reported
        self._next_expiry = float("inf")
        self._cred_key = secrets.token_bytes(32)
        self._cred_cache: OrderedDict[bytes, float] = OrderedDict()
        self._permissions: OrderedDict[PermissionsKey, Permissions] = OrderedDict()
        self._touched: dict[str, float] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._ticks = 0
        # the push gateway's devices log in with their id and secret (set by the server)
        self.devices: DeviceAuthenticator | None = None

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
                until_expiry = self._next_expiry - self.clock()
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
                self._failures.sweep()
                self._address_failures.sweep()
                self._rate_limit_logged.clear()

    async def refresh(self) -> None:
        """Reload from the store if it changed; report revoked, expired and removed
        credentials. The watch loop calls this every `watch_interval` seconds."""
        generation = await self._call(self.store.generation)
        if generation != self._snapshot.generation:
            self._apply(await self._call(self.store.snapshot))
        self._check_expiry()

    def _apply(self, snap: AuthSnapshot) -> None:
        old = self._snapshot
        first = old.generation < 0
        self._snapshot = snap
        self.acl.set_rules(snap.rules)
        now = self.clock()
        dead: list[str] = []
        for token_id, token in snap.tokens.items():
            if not token.active(now) and token_id not in self._dead_tokens:
                self._dead_tokens.add(token_id)
                if not first:
                    dead.append(token_id)
        for token_id in old.tokens:
            if token_id not in snap.tokens and token_id not in self._dead_tokens:
                dead.append(token_id)  # removed with its user
        self._dead_tokens.intersection_update(snap.tokens)
        removed = [
            name
            for name, user in old.users.items()
            if name not in snap.users or snap.users[name].created != user.created
        ]
        self._next_expiry = min(
            (t.expires for t in snap.tokens.values() if t.expires is not None and t.active(now)),
            default=float("inf"),
        )
        if snap.users != old.users:
            self._cred_cache.clear()
        for token_id in dead:
            self._fire(self._revoked_callbacks, token_id, "revoked")
        for name in removed:
            self._fire(self._user_removed_callbacks, name, "user_removed")

    def _check_expiry(self) -> None:
        now = self.clock()
        if now < self._next_expiry:
            return
        expired: list[str] = []
        nxt = float("inf")
        for token_id, token in self._snapshot.tokens.items():
            if token.revoked is not None or token.expires is None:
                continue
            if token.expires <= now:
                if token_id not in self._dead_tokens:
                    self._dead_tokens.add(token_id)
                    expired.append(token_id)
            else:
                nxt = min(nxt, token.expires)
        self._next_expiry = nxt
        for token_id in expired:
            log.info("token %s expired", token_id)
            self._fire(self._revoked_callbacks, token_id, "revoked")

    @staticmethod
    def _fire(callbacks: Sequence[Callable[[str], None]], value: str, what: str) -> None:
        for callback in list(callbacks):
            try:
                callback(value)
            except Exception:
                log.exception("auth: %s callback failed", what)

    def on_revoked(self, callback: RevokedCallback) -> None:
        """`callback(token_id)` when a token stops being valid (revoked, expired, or removed
        with its user): close the connections authenticated with it."""
        self._revoked_callbacks.append(callback)

    def device_removed(self, device_id: str) -> None:
        """A push device was removed: its connections end as a removed user's do."""
        self._fire(self._user_removed_callbacks, device_id, "device_removed")

    def on_user_removed(self, callback: UserRemovedCallback) -> None:
        """`callback(username)` when a user is removed: close its connections."""
        self._user_removed_callbacks.append(callback)

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
        attempt = (peer_ip, username if username is not None else _token_subject(password))
        limited = self._take_attempt(attempt, username)
        if limited is not None:
            return limited
        if not password:
            return self._failed(peer_ip, username, "no password given")
        if username is not None and self.devices is not None and self.devices.owns(username):
            return self._verify_device(username, password, attempt, client_id)
        if looks_like_token(password):
            text = password.decode("ascii", "replace") if isinstance(password, bytes) else password
            token_id = parse_token(text)
            if token_id is not None and token_id in self._snapshot.tokens:
                return self._verify_token(text, attempt, expected_user=username)
        if username is None:
            return self._failed(peer_ip, None, "a password without a username must be a token")
        user = self._snapshot.users.get(username)
        if user is None:
            # pay what a real check costs, so timing does not tell which users exist
            await self.passwords.verify_dummy_async(password, self._hash_pool)
            return self._failed(peer_ip, username, "no such user")
        secret = password if isinstance(password, bytes) else password.encode()
        cache_key = self._cred_cache_key(user, secret)
        if not self._cred_cache_hit(cache_key):
            ok = await self.passwords.verify_async(user.password_hash, secret, self._hash_pool)
            current = self._snapshot.users.get(username)
            if current is None or current.password_hash != user.password_hash:
                ok = False  # changed or removed while we were hashing
            if not ok:
                return self._failed(peer_ip, username, "wrong password")
            self._cred_cache_put(cache_key)
            if self.passwords.needs_rehash(user.password_hash):
                self._spawn(self._rehash(user, secret))
        self._refund(attempt)
        self.stats.logins_ok += 1
        return AuthResult(Identity(username, frozenset(user.roles)), "ok", "ok")

    def scram_start(self, username: str, peer_ip: str) -> ScramStart:
        """Begin a SCRAM exchange for `username`: take an attempt from the failure budgets
        and find the verifier. Refused when rate limited, or when the user exists but has no
        SCRAM verifier (password set before pushwire stored them, or a push device)."""
        attempt = (peer_ip, username)
        limited = self._take_attempt(attempt, username)
        if limited is not None:
            return ScramStart(None, limited)
        if self.devices is not None and self.devices.owns(username):
            return self._no_verifier(peer_ip, username, "a push device logs in with its secret")
        user = self._snapshot.users.get(username)
        if user is None:
            # run the exchange to the proof with fake credentials (RFC 5802 section 5.1)
            mock = ScramCredentials.mock(username, self._cred_key, self.settings.scram_iterations)
            return ScramStart(mock, None)
        if user.scram is None:
            return self._no_verifier(
                peer_ip,
                username,
                "no SCRAM credentials for this user: its password was set before pushwire "
                "stored them; set it again, or log in with username and password",
            )
        try:
            creds = ScramCredentials.parse(user.scram)
        except ScramError:
            log.error("auth: the SCRAM verifier of %s is unreadable", _log_name(username))
            return self._no_verifier(peer_ip, username, "the SCRAM credentials are unusable")
        return ScramStart(creds, None, user.scram)

    def _no_verifier(self, peer_ip: str, username: str, why: str) -> ScramStart:
        # the attempt's token stays taken, so probing which users lack one is rate limited
        self.stats.logins_failed += 1
        log.info("SCRAM login refused from %s for user %s: %s", peer_ip, _log_name(username), why)
        return ScramStart(None, AuthResult(None, "not_authorized", why), no_verifier=True)

    def scram_finish(
        self, username: str, peer_ip: str, start: ScramStart, proof_ok: bool
    ) -> AuthResult:
        """End an exchange begun with `scram_start`: the identity when the proof was right
        and the verifier is still the one the exchange used (not changed meanwhile)."""
        user = self._snapshot.users.get(username)
        if not proof_ok or user is None or start.verifier is None or user.scram != start.verifier:
            return self._failed(peer_ip, username, "wrong SCRAM proof")
        self._refund((peer_ip, username))
        self.stats.logins_ok += 1
        return AuthResult(Identity(username, frozenset(user.roles)), "ok", "ok")

    def _verify_device(
        self,
        device_id: str,
        password: bytes | str,
        attempt: tuple[str, str],
        client_id: str | None,
    ) -> AuthResult:
        peer_ip = attempt[0]
        assert self.devices is not None
        secret = password.encode() if isinstance(password, str) else password
        identity = self.devices.verify(device_id, secret)
        if identity is None:
            return self._failed(peer_ip, device_id, "wrong device credential")
        if client_id is not None and client_id != device_id:
            # a device's MQTT session is keyed by its id: one persistent session per device
            self.stats.logins_failed += 1
            return AuthResult(None, "not_authorized", "a device's client id is its device id")
        self._refund(attempt)
        self.stats.logins_ok += 1
        return AuthResult(identity, "ok", "ok")

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
        """`Authorization: Bearer <token>` and `?auth=<token>`."""
        attempt = (peer_ip, _token_subject(token))
        limited = self._take_attempt(attempt, None)
        if limited is not None:
            return limited
        return self._verify_token(token, attempt, expected_user=None)

    def _verify_token(
        self, token: str, attempt: tuple[str, str], expected_user: str | None
    ) -> AuthResult:
        peer_ip = attempt[0]
        token_id = parse_token(token)
        if token_id is None:
            return self._failed(peer_ip, expected_user, "malformed token", token=True)
        stored = self._snapshot.tokens.get(token_id)
        if stored is None:
            return self._failed(peer_ip, expected_user, f"unknown token {token_id}", token=True)
        if not hmac.compare_digest(hash_token(token), stored.secret_hash):
            return self._failed(peer_ip, expected_user, f"wrong secret for {token_id}", token=True)
        now = self.clock()
        if stored.revoked is not None:
            return self._failed(peer_ip, expected_user, f"token {token_id} revoked", token=True)
        if stored.expired(now):
            return self._failed(peer_ip, expected_user, f"token {token_id} expired", token=True)
        user = self._snapshot.users.get(stored.username)
        if user is None:
            return self._failed(peer_ip, expected_user, f"token {token_id}: no user", token=True)
        if expected_user is not None and expected_user != stored.username:
            return self._failed(
                peer_ip, expected_user, f"token {token_id} belongs to another user", token=True
            )
        self._refund(attempt)
        self.stats.logins_ok += 1
        self._touch(token_id, now)
        identity = Identity(stored.username, frozenset(user.roles), token_id, stored.scope)
        return AuthResult(identity, "ok", "ok")

    def _take_attempt(self, attempt: tuple[str, str], username: str | None) -> AuthResult | None:
        """Take one attempt from the budget of (IP, username) and from the IP's overall
        budget; a result when either is used up (then nothing is taken from the other)."""
        peer_ip = attempt[0]
        if self._failures.try_acquire(attempt):
            if self._address_failures.try_acquire(peer_ip):
                return None
            self._failures.refund(attempt)
            retry_after = self._address_failures.retry_after(peer_ip)
            what = f"from {peer_ip} (any user)"
        else:
            retry_after = self._failures.retry_after(attempt)
            what = f"from {peer_ip} for user {_log_name(username)}"
        self.stats.logins_rate_limited += 1
        now = self.monotonic()
        last = self._rate_limit_logged.get(attempt)
        if last is None or now - last >= self.settings.login_failures_window:
            if len(self._rate_limit_logged) > 10_000:
                self._rate_limit_logged.clear()
            self._rate_limit_logged[attempt] = now
            log.warning("too many failed logins %s: refusing them for a while", what)
        return AuthResult(
            None,
            "rate_limited",
            "too many failed logins, try again later",
            retry_after=retry_after,
        )

    def _refund(self, attempt: tuple[str, str]) -> None:
        """A successful login costs no budget."""
        self._failures.refund(attempt)
        self._address_failures.refund(attempt[0])

    def _failed(
        self, peer_ip: str, username: str | None, why: str, *, token: bool = False
    ) -> AuthResult:
        # the attempt's token stays taken: that is what counts failures
        self.stats.logins_failed += 1
        log.warning("login failed from %s for user %s: %s", peer_ip, _log_name(username), why)
        message = "invalid or expired token" if token else "bad username or password"
        return AuthResult(None, "bad_credentials", message)

    def _cred_cache_key(self, user: StoredUser, secret: bytes) -> bytes:
        # keyed by the stored hash too: a new password invalidates the entry
        material = b"\0".join((user.username.encode(), user.password_hash.encode(), secret))
        return hmac.new(self._cred_key, material, hashlib.sha256).digest()

    def _cred_cache_hit(self, key: bytes) -> bool:
        expires = self._cred_cache.get(key)
        if expires is None:
            return False
        if expires <= self.monotonic():
            del self._cred_cache[key]
            return False
        return True

    def _cred_cache_put(self, key: bytes) -> None:
        ttl = self.settings.credential_cache_ttl
        if ttl <= 0:
            return
        self._cred_cache[key] = self.monotonic() + ttl
        self._cred_cache.move_to_end(key)
        while len(self._cred_cache) > self.settings.credential_cache_size:
            self._cred_cache.popitem(last=False)

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
            log.exception("auth: rehashing the password of %s failed", _log_name(user.username))

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
