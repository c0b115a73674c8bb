"""Persistence of users, access tokens and ACL rules.

Two implementations behind the `AuthStore` protocol:

- `MemoryAuthStore`: for `--memory` servers and tests;
- `SQLiteAuthStore`: tables prefixed `auth_` in `<data_dir>/pushwire.db`, next to the main
  engine's tables but on its OWN connection (auth writes are rare and small; the main engine
  keeps its writer thread and connection). WAL mode lets both, and a `pushwire user/token/
  acl` command run by an operator, use the file at the same time.

The methods are synchronous and may block (a `SQLiteAuthStore` call does disk I/O): the auth
service runs them in a worker thread when `blocking` is True, the CLI calls them directly.

Change detection. Every change bumps a generation counter (`auth_meta.generation`) in the
same transaction, so a running server polls `generation()` (one indexed read) once a second
and reloads a `snapshot()` when it moved: that is how `pushwire token revoke` reaches it.
`PRAGMA data_version` would not do: the main engine commits to the same file all the time.
`touch_token` (last use of a token) is bookkeeping and does not bump the generation.

Secrets: users carry an argon2id hash (core/passwords.py) and, when their password was set
by a pushwire that knows SCRAM, a SCRAM-SHA-256 verifier (core/scram.py; None before: it
cannot be derived from the hash); tokens carry the SHA-256 of the whole token string
(tokens are 256-bit random, so a fast hash is the right tool).

Schema 2 added `auth_users.scram`; `open` adds the column to a schema 1 file. The version
goes up so that an older pushwire refuses the file: it would change a password without
dropping the old SCRAM verifier, which would keep the old password working over SCRAM.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from pushwire.core.acl import Access, AclRule, Permission, SubjectKind
from pushwire.engines.sqlite_file import open_wal, write_transaction
from pushwire.model import (
    AuthSnapshot,
    AuthStoreError,
    Conflict,
    NotFound,
    StoredToken,
    StoredUser,
)
from pushwire.ports import AuthStore

DB_FILENAME: Final = "pushwire.db"
AUTH_SCHEMA_VERSION: Final = 2

__all__ = [
    "AuthSnapshot",
    "AuthStore",
    "AuthStoreError",
    "Conflict",
    "MemoryAuthStore",
    "NotFound",
    "SQLiteAuthStore",
    "StoredToken",
    "StoredUser",
    "make_auth_store",
]

_T = TypeVar("_T")


# -- memory --------------------------------------------------------------------------------


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class MemoryAuthStore:
    blocking = False
    # every change goes through this object (no other process can write it), so
    # `wait_change` sees them all: the auth service's watch need not poll it
    notices_every_change = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        # the watch loops waiting in `wait_change`, with their event loops
        self._change_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._users: dict[str, StoredUser] = {}
        self._tokens: dict[str, StoredToken] = {}
        self._rules: dict[int, AclRule] = {}
        self._next_rule_id = 1

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def generation(self) -> int:
        return self._generation

    def snapshot(self) -> AuthSnapshot:
        with self._lock:
            return AuthSnapshot(
                self._generation, dict(self._users), dict(self._tokens), self._sorted_rules()
            )

    def _sorted_rules(self) -> tuple[AclRule, ...]:
        return tuple(self._rules[k] for k in sorted(self._rules))

    def _changed(self) -> None:
        self._generation += 1
        waiters, self._change_waiters = self._change_waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, future)  # (a change from any thread)

    async def wait_change(self, timeout: float, generation: int | None = None) -> None:
        """Return at the next change, or after `timeout` seconds (core/auth.py's watch);
        at once when the store is past `generation` already (changed by another thread
        since the caller read it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        self._change_waiters.append(waiter)
        if generation is not None and generation != self._generation:
            _wake(future)
        timer = loop.call_later(timeout, _wake, future)
        try:
            await future
        finally:
            timer.cancel()
            if waiter in self._change_waiters:
                self._change_waiters.remove(waiter)

    def get_user(self, username: str) -> StoredUser | None:
        return self._users.get(username)

    def list_users(self) -> list[StoredUser]:
        with self._lock:
            return sorted(self._users.values(), key=lambda u: u.username)

    def add_user(self, user: StoredUser) -> None:
        with self._lock:
            if user.username in self._users:
                raise Conflict(f"user {user.username!r} exists")
            self._users[user.username] = user
            self._changed()

    def update_user(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        roles: tuple[str, ...] | None = None,
        scram: str | None = None,
    ) -> StoredUser:
        with self._lock:
            user = self._users.get(username)
            if user is None:
                raise NotFound(f"no user {username!r}")
            if password_hash is not None:
                user = replace(user, password_hash=password_hash, scram=scram)
            if roles is not None:
                user = replace(user, roles=tuple(roles))
            self._users[username] = user
            self._changed()
            return user

    def remove_user(self, username: str) -> list[str]:
        with self._lock:
            if username not in self._users:
                raise NotFound(f"no user {username!r}")
            del self._users[username]
            removed = [t.id for t in self._tokens.values() if t.username == username]
            for token_id in removed:
                del self._tokens[token_id]
            self._changed()
            return removed

    def get_token(self, token_id: str) -> StoredToken | None:
        return self._tokens.get(token_id)

    def list_tokens(self, username: str | None = None) -> list[StoredToken]:
        with self._lock:
            tokens = [t for t in self._tokens.values() if username in (None, t.username)]
        return sorted(tokens, key=lambda t: (t.created, t.id))

    def add_token(self, token: StoredToken) -> None:
        with self._lock:
            if token.username not in self._users:
                raise NotFound(f"no user {token.username!r}")
            if token.id in self._tokens:
                raise Conflict(f"token {token.id!r} exists")
            self._tokens[token.id] = token
            self._changed()

    def revoke_token(self, token_id: str, when: float) -> StoredToken:
        with self._lock:
            token = self._tokens.get(token_id)
            if token is None:
                raise NotFound(f"no token {token_id!r}")
            if token.revoked is not None:
                return token
            token = replace(token, revoked=when)
            self._tokens[token_id] = token
            self._changed()
            return token

    def touch_token(self, token_id: str, when: float) -> None:
        with self._lock:
            token = self._tokens.get(token_id)
            if token is not None:
                self._tokens[token_id] = replace(token, last_used=when)

    def list_rules(self) -> list[AclRule]:
        with self._lock:
            return list(self._sorted_rules())

    def add_rule(self, rule: AclRule) -> AclRule:
        with self._lock:
            if any(r.key == rule.key for r in self._rules.values()):
                raise Conflict(f"an equal rule exists: {rule}")
            stored = rule.with_id(self._next_rule_id)
            self._next_rule_id += 1
            self._rules[cast(int, stored.id)] = stored
            self._changed()
            return stored

    def remove_rule(self, rule_id: int) -> AclRule:
        with self._lock:
            rule = self._rules.pop(rule_id, None)
            if rule is None:
                raise NotFound(f"no acl rule {rule_id}")
            self._changed()
            return rule


# -- SQLite --------------------------------------------------------------------------------

_SCHEMA: Final = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS auth_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO auth_meta (key, value) VALUES ('schema', {AUTH_SCHEMA_VERSION});
INSERT OR IGNORE INTO auth_meta (key, value) VALUES ('generation', 0);
CREATE TABLE IF NOT EXISTS auth_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL,          -- JSON list of role names
    created REAL NOT NULL,
    scram TEXT                    -- SCRAM-SHA-256 verifier; NULL: none (schema 2)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_tokens (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    secret_hash TEXT NOT NULL,    -- sha256 hex of the whole token
    name TEXT,
    created REAL NOT NULL,
    expires REAL,
    scope TEXT NOT NULL,          -- JSON list of scope entries
    last_used REAL,
    revoked REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS auth_tokens_username ON auth_tokens (username);
-- AUTOINCREMENT: the id of a removed rule is never handed out again, so `acl remove ID`
-- from a stale listing cannot remove some other rule
CREATE TABLE IF NOT EXISTS auth_acl (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'role', 'anonymous', 'all')),
    subject TEXT,
    access TEXT NOT NULL CHECK (access IN ('allow', 'deny')),
    permission TEXT NOT NULL CHECK (permission IN ('read', 'write', 'readwrite')),
    filter TEXT NOT NULL,
    created REAL NOT NULL
);
COMMIT;
"""

_USER_COLUMNS: Final = "username, password_hash, roles, created, scram"
_TOKEN_COLUMNS: Final = (
    "id, username, secret_hash, name, created, expires, scope, last_used, revoked"
)
_RULE_COLUMNS: Final = "id, subject_kind, subject, access, permission, filter"
_BUMP: Final = "UPDATE auth_meta SET value = value + 1 WHERE key = 'generation'"


def _user(row: tuple[Any, ...]) -> StoredUser:
    return StoredUser(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4])


def _token(row: tuple[Any, ...]) -> StoredToken:
    return StoredToken(
        id=row[0],
        username=row[1],
        secret_hash=row[2],
        name=row[3],
        created=row[4],
        expires=row[5],
        scope=tuple(json.loads(row[6])),
        last_used=row[7],
        revoked=row[8],
    )


def _rule(row: tuple[Any, ...]) -> AclRule:
    return AclRule(
        subject_kind=cast(SubjectKind, row[1]),
        subject=row[2],
        access=cast(Access, row[3]),
        permission=cast(Permission, row[4]),
        filter=row[5],
        id=row[0],
    )


def _migrate_to_scram(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the `scram` column (NULL for every existing user: their SCRAM
    verifier is made when their password is next set). Re-checked inside the write
    transaction, so two processes opening an old file at once migrate it once."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(auth_users)")}
    if "scram" not in columns:
        conn.execute("ALTER TABLE auth_users ADD COLUMN scram TEXT")
    conn.execute(
        "UPDATE auth_meta SET value = ? WHERE key = 'schema' AND value < ?",
        (AUTH_SCHEMA_VERSION, AUTH_SCHEMA_VERSION),
    )


class SQLiteAuthStore:
    """Auth tables in the server's database file, on a connection of their own."""

    blocking = True

    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        # one connection, used from whichever thread calls; the lock serialises them
        self._lock = threading.RLock()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SQLiteAuthStore:
        return cls(Path(data_dir) / DB_FILENAME)

    def open(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            self._conn = open_wal(
                self.path,
                busy_timeout=self.busy_timeout,
                schema=_SCHEMA,
                meta_table="auth_meta",
                version=AUTH_SCHEMA_VERSION,
                what="auth",
            )
            write_transaction(self._conn, _migrate_to_scram)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("auth store is not open")
        return self._conn

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")  # one consistent view for multi-statement reads
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

    def _write(self, fn: Callable[[sqlite3.Connection], _T], *, bump: bool = True) -> _T:
        with self._lock:
            return write_transaction(self._connection(), fn, _BUMP if bump else None)

    def generation(self) -> int:
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT value FROM auth_meta WHERE key = 'generation'")
                .fetchone()
            )
            return int(row[0])

    def snapshot(self) -> AuthSnapshot:
        def read(conn: sqlite3.Connection) -> AuthSnapshot:
            gen = conn.execute("SELECT value FROM auth_meta WHERE key = 'generation'").fetchone()
            users = {
                u.username: u
                for u in map(_user, conn.execute(f"SELECT {_USER_COLUMNS} FROM auth_users"))
            }
            tokens = {
                t.id: t
                for t in map(_token, conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens"))
            }
            rules = tuple(
                map(_rule, conn.execute(f"SELECT {_RULE_COLUMNS} FROM auth_acl ORDER BY id"))
            )
            return AuthSnapshot(int(gen[0]), users, tokens, rules)

        return self._read(read)

    # -- users ---------------------------------------------------------------------------

    def get_user(self, username: str) -> StoredUser | None:
        with self._lock:
            row = (
                self._connection()
                .execute(f"SELECT {_USER_COLUMNS} FROM auth_users WHERE username = ?", (username,))
                .fetchone()
            )
        return None if row is None else _user(row)

    def list_users(self) -> list[StoredUser]:
        with self._lock:
            rows = (
                self._connection()
                .execute(f"SELECT {_USER_COLUMNS} FROM auth_users ORDER BY username")
                .fetchall()
            )
        return [_user(r) for r in rows]

    def add_user(self, user: StoredUser) -> None:
        def write(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO auth_users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                    (
                        user.username,
                        user.password_hash,
                        json.dumps(list(user.roles)),
                        user.created,
                        user.scram,
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"user {user.username!r} exists") from None

        self._write(write)

    def update_user(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        roles: tuple[str, ...] | None = None,
        scram: str | None = None,
    ) -> StoredUser:
        def write(conn: sqlite3.Connection) -> StoredUser:
            row = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM auth_users WHERE username = ?", (username,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no user {username!r}")
            user = _user(row)
            if password_hash is not None:
                user = replace(user, password_hash=password_hash, scram=scram)
            if roles is not None:
                user = replace(user, roles=tuple(roles))
            conn.execute(
                "UPDATE auth_users SET password_hash = ?, roles = ?, scram = ? WHERE username = ?",
                (user.password_hash, json.dumps(list(user.roles)), user.scram, username),
            )
            return user

        return self._write(write)

    def remove_user(self, username: str) -> list[str]:
        def write(conn: sqlite3.Connection) -> list[str]:
            if conn.execute("DELETE FROM auth_users WHERE username = ?", (username,)).rowcount == 0:
                raise NotFound(f"no user {username!r}")
            ids = [
                r[0]
                for r in conn.execute("SELECT id FROM auth_tokens WHERE username = ?", (username,))
            ]
            conn.execute("DELETE FROM auth_tokens WHERE username = ?", (username,))
            return ids

        return self._write(write)

    # -- tokens --------------------------------------------------------------------------

    def get_token(self, token_id: str) -> StoredToken | None:
        with self._lock:
            row = (
                self._connection()
                .execute(f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens WHERE id = ?", (token_id,))
                .fetchone()
            )
        return None if row is None else _token(row)

    def list_tokens(self, username: str | None = None) -> list[StoredToken]:
        sql = f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens"
        params: tuple[str, ...] = ()
        if username is not None:
            sql += " WHERE username = ?"
            params = (username,)
        with self._lock:
            rows = self._connection().execute(sql + " ORDER BY created, id", params).fetchall()
        return [_token(r) for r in rows]

    def add_token(self, token: StoredToken) -> None:
        def write(conn: sqlite3.Connection) -> None:
            user = conn.execute(
                "SELECT 1 FROM auth_users WHERE username = ?", (token.username,)
            ).fetchone()
            if user is None:
                raise NotFound(f"no user {token.username!r}")
            try:
                conn.execute(
                    f"INSERT INTO auth_tokens ({_TOKEN_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        token.id,
                        token.username,
                        token.secret_hash,
                        token.name,
                        token.created,
                        token.expires,
                        json.dumps(list(token.scope)),
                        token.last_used,
                        token.revoked,
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"token {token.id!r} exists") from None

        self._write(write)

    def revoke_token(self, token_id: str, when: float) -> StoredToken:
        def write(conn: sqlite3.Connection) -> StoredToken:
            row = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens WHERE id = ?", (token_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no token {token_id!r}")
            token = _token(row)
            if token.revoked is not None:
                return token
            conn.execute("UPDATE auth_tokens SET revoked = ? WHERE id = ?", (when, token_id))
            return replace(token, revoked=when)

        return self._write(write)

    def touch_token(self, token_id: str, when: float) -> None:
        self._write(
            lambda conn: conn.execute(
                "UPDATE auth_tokens SET last_used = ? WHERE id = ?", (when, token_id)
            ),
            bump=False,
        )

    # -- ACL rules -----------------------------------------------------------------------

    def list_rules(self) -> list[AclRule]:
        with self._lock:
            rows = (
                self._connection()
                .execute(f"SELECT {_RULE_COLUMNS} FROM auth_acl ORDER BY id")
                .fetchall()
            )
        return [_rule(r) for r in rows]

    def add_rule(self, rule: AclRule) -> AclRule:
        def write(conn: sqlite3.Connection) -> AclRule:
            dup = conn.execute(
                "SELECT id FROM auth_acl WHERE subject_kind = ? AND subject IS ? AND access = ?"
                " AND permission = ? AND filter = ?",
                rule.key,
            ).fetchone()
            if dup is not None:
                raise Conflict(f"an equal rule exists (id {dup[0]}): {rule}")
            cur = conn.execute(
                "INSERT INTO auth_acl (subject_kind, subject, access, permission, filter, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (*rule.key, time.time()),
            )
            return rule.with_id(cur.lastrowid)

        return self._write(write)

    def remove_rule(self, rule_id: int) -> AclRule:
        def write(conn: sqlite3.Connection) -> AclRule:
            row = conn.execute(
                f"SELECT {_RULE_COLUMNS} FROM auth_acl WHERE id = ?", (rule_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no acl rule {rule_id}")
            conn.execute("DELETE FROM auth_acl WHERE id = ?", (rule_id,))
            return _rule(row)

        return self._write(write)


def make_auth_store(*, memory: bool, data_dir: Path | None = None) -> AuthStore:
    """The store matching the server's settings (`--memory` or `--data-dir`)."""
    if memory:
        return MemoryAuthStore()
    if data_dir is None:
        raise ValueError("a SQLite auth store needs a data directory")
    return SQLiteAuthStore.in_data_dir(data_dir)
