"""Durable state of the push gateway: a memory store (`--memory`) and a SQLite one.

engine=redis uses engines/redis/gateway_store.py instead (one registry and one set of
pushes for every node; gateway/cluster.py says which node holds a device's pushes).

The SQLite store keeps its tables (prefixed `gw_`) in `<data_dir>/pushwire.db`, next to the
engine's and the auth store's, on a connection of its own (WAL lets the server, the engine
and a `pushwire app/device` command share the file), as engines/auth_store.py does.

Two kinds of state:

- the registry (apps, their keys and webhooks, devices, device tokens): every change bumps
  `gw_meta.generation` in the same transaction; a running server polls it once a second
  and reloads, which is how `pushwire app key revoke` reaches it within a second;
- the pushes and stored content: the server's memory is authoritative while it runs and
  journals every change here (`apply`, one transaction per batch), and reloads it at start.
  The memory store keeps no pushes (nothing survives a `--memory` server anyway).

The methods are synchronous and may block: the server runs them on one worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, cast

from pushwire.engines.sqlite_file import open_wal, write_transaction
from pushwire.gateway.model import (
    App,
    AppKey,
    Content,
    Device,
    DeviceToken,
    Push,
    PushState,
    Registry,
    WakeHook,
)

DB_FILENAME: Final = "pushwire.db"
GATEWAY_SCHEMA_VERSION: Final = 1

_T = TypeVar("_T")


class GatewayStoreError(Exception):
    pass


class NotFound(GatewayStoreError, LookupError):
    pass


class Conflict(GatewayStoreError):
    pass


class GatewayStore(Protocol):
    blocking: bool

    def open(self) -> None: ...
    def close(self) -> None: ...
    def generation(self) -> int: ...
    def registry(self) -> Registry: ...

    def add_app(self, app: App) -> int: ...
    def remove_app(self, app_id: str, when: float) -> int: ...
    def set_webhooks(self, app_id: str, receipt_url: str | None, wake: WakeHook | None) -> int: ...
    def add_key(self, key: AppKey) -> int: ...
    def revoke_key(self, app_id: str, kid: str, when: float) -> int: ...

    def add_device(self, device: Device) -> int: ...
    def remove_device(self, device_id: str, when: float) -> int: ...
    def touch_devices(self, seen: list[tuple[str, float]]) -> None:
        """Record (device id, last seen) pairs, all in one write."""
        ...

    def add_token(self, token: DeviceToken) -> int: ...
    def delete_token(self, token: str, when: float) -> int: ...

    def apply(self, puts: Iterable[Push], deletes: Iterable[str], durable: bool = True) -> None:
        """Journal push changes in one transaction; `durable`: on disk before returning
        (an fsync), else only safe from a process crash (bookkeeping)."""
        ...

    def load_pushes(self) -> list[Push]: ...

    def put_content(self, content: Content) -> None: ...
    def get_content(self, content_id: str) -> Content | None: ...
    def delete_content_before(self, now: float) -> int: ...


# -- memory --------------------------------------------------------------------------------


class MemoryGatewayStore:
    blocking = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reg = Registry(generation=0)
        self._content: dict[str, Content] = {}

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def generation(self) -> int:
        return self._reg.generation

    def registry(self) -> Registry:
        with self._lock:
            r = self._reg
            return Registry(
                r.generation, dict(r.apps), dict(r.keys), dict(r.devices), dict(r.tokens)
            )

    def _bump(self) -> int:
        self._reg.generation += 1
        return self._reg.generation

    def add_app(self, app: App) -> int:
        with self._lock:
            if app.app_id in self._reg.apps:
                raise Conflict(f"app {app.app_id} exists")
            self._reg.apps[app.app_id] = app
            return self._bump()

    def remove_app(self, app_id: str, when: float) -> int:
        with self._lock:
            if self._reg.apps.pop(app_id, None) is None:
                raise NotFound(f"no app {app_id!r}")
            for k in [k for k in self._reg.keys if k[0] == app_id]:
                del self._reg.keys[k]
            for t in list(self._reg.tokens.values()):
                if t.app_id == app_id and t.deleted is None:
                    self._reg.tokens[t.token] = replace(t, deleted=when)
            return self._bump()

    def set_webhooks(self, app_id: str, receipt_url: str | None, wake: WakeHook | None) -> int:
        with self._lock:
            app = self._reg.apps.get(app_id)
            if app is None:
                raise NotFound(f"no app {app_id!r}")
            self._reg.apps[app_id] = replace(app, receipt_url=receipt_url, wake=wake)
            return self._bump()

    def add_key(self, key: AppKey) -> int:
        with self._lock:
            if key.app_id not in self._reg.apps:
                raise NotFound(f"no app {key.app_id!r}")
            if (key.app_id, key.kid) in self._reg.keys:
                raise Conflict(f"key {key.kid!r} exists")
            self._reg.keys[(key.app_id, key.kid)] = key
            return self._bump()

    def revoke_key(self, app_id: str, kid: str, when: float) -> int:
        with self._lock:
            key = self._reg.keys.get((app_id, kid))
            if key is None:
                raise NotFound(f"no key {kid!r} for app {app_id!r}")
            if key.revoked is None:
                self._reg.keys[(app_id, kid)] = replace(key, revoked=when)
            return self._bump()

    def add_device(self, device: Device) -> int:
        with self._lock:
            if device.device_id in self._reg.devices:
                raise Conflict(f"device {device.device_id} exists")
            self._reg.devices[device.device_id] = device
            return self._bump()

    def remove_device(self, device_id: str, when: float) -> int:
        with self._lock:
            if self._reg.devices.pop(device_id, None) is None:
                raise NotFound(f"no device {device_id!r}")
            for t in list(self._reg.tokens.values()):
                if t.device_id == device_id and t.deleted is None:
                    self._reg.tokens[t.token] = replace(t, deleted=when)
            return self._bump()

    def touch_devices(self, seen: list[tuple[str, float]]) -> None:
        with self._lock:
            for device_id, when in seen:
                d = self._reg.devices.get(device_id)
                if d is not None:
                    self._reg.devices[device_id] = replace(d, last_seen=when)

    def add_token(self, token: DeviceToken) -> int:
        with self._lock:
            if token.token in self._reg.tokens:
                raise Conflict("token exists")
            self._reg.tokens[token.token] = token
            return self._bump()

    def delete_token(self, token: str, when: float) -> int:
        with self._lock:
            t = self._reg.tokens.get(token)
            if t is None:
                raise NotFound("no such token")
            if t.deleted is None:
                self._reg.tokens[token] = replace(t, deleted=when)
            return self._bump()

    def apply(self, puts: Iterable[Push], deletes: Iterable[str], durable: bool = True) -> None:
        pass  # the server's memory is the only copy

    def load_pushes(self) -> list[Push]:
        return []

    def put_content(self, content: Content) -> None:
        with self._lock:
            self._content[content.content_id] = content

    def get_content(self, content_id: str) -> Content | None:
        return self._content.get(content_id)

    def delete_content_before(self, now: float) -> int:
        with self._lock:
            dead = [k for k, c in self._content.items() if c.expires <= now]
            for k in dead:
                del self._content[k]
            return len(dead)


# -- SQLite --------------------------------------------------------------------------------

_SCHEMA: Final = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS gw_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO gw_meta (key, value) VALUES ('schema', {GATEWAY_SCHEMA_VERSION});
INSERT OR IGNORE INTO gw_meta (key, value) VALUES ('generation', 0);
CREATE TABLE IF NOT EXISTS gw_apps (
    app_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL,       -- sha256 hex of the API key
    created REAL NOT NULL,
    receipt_url TEXT,
    wake TEXT                     -- JSON {{url, secret, after_seconds}} or NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gw_app_keys (
    app_id TEXT NOT NULL,
    kid TEXT NOT NULL,
    public_key TEXT NOT NULL,     -- PEM (ES256 / P-256)
    created REAL NOT NULL,
    revoked REAL,
    PRIMARY KEY (app_id, kid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gw_devices (
    device_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,    -- sha256 hex of the device secret
    created REAL NOT NULL,
    last_seen REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gw_tokens (
    token TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    created REAL NOT NULL,
    deleted REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS gw_tokens_device ON gw_tokens (device_id);
CREATE TABLE IF NOT EXISTS gw_pushes (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    app_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    token TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    push_type TEXT NOT NULL,
    expiration INTEGER NOT NULL,
    collapse_id TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    expires_at REAL,
    body BLOB,                    -- the device message while not final
    delivered_at REAL,
    connection TEXT,
    reason TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gw_content (
    content_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
COMMIT;
"""

_BUMP: Final = "UPDATE gw_meta SET value = value + 1 WHERE key = 'generation'"
_GEN: Final = "SELECT value FROM gw_meta WHERE key = 'generation'"
_PUSH_COLUMNS: Final = (
    "id, seq, app_id, device_id, token, state, priority, push_type, expiration, collapse_id,"
    " created, updated, expires_at, body, delivered_at, connection, reason"
)


def _app(row: tuple[Any, ...]) -> App:
    wake = None
    if row[5]:
        w = json.loads(row[5])
        wake = WakeHook(w["url"], w["secret"], float(w["after_seconds"]))
    return App(row[0], row[1], row[2], row[3], row[4], wake)


def _push(row: tuple[Any, ...]) -> Push:
    return Push(
        id=row[0],
        seq=row[1],
        app_id=row[2],
        device_id=row[3],
        token=row[4],
        state=cast(PushState, row[5]),
        priority=row[6],
        push_type=row[7],
        expiration=row[8],
        collapse_id=row[9],
        created=row[10],
        updated=row[11],
        expires_at=row[12],
        body=row[13],
        delivered_at=row[14],
        connection=row[15],
        reason=row[16],
    )


class SQLiteGatewayStore:
    blocking = True

    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._durable_mode = True  # synchronous=FULL (set in open)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SQLiteGatewayStore:
        return cls(Path(data_dir) / DB_FILENAME)

    def open(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            # a 200 to a provider promises the push survives a crash: synchronous=FULL
            self._conn = open_wal(
                self.path,
                busy_timeout=self.busy_timeout,
                schema=_SCHEMA,
                meta_table="gw_meta",
                version=GATEWAY_SCHEMA_VERSION,
                what="gateway",
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("gateway store is not open")
        return self._conn

    def _write(self, fn: Callable[[sqlite3.Connection], _T], *, bump: bool = True) -> _T:
        with self._lock:
            return write_transaction(self._c(), fn, _BUMP if bump else None)

    def _write_gen(self, fn: Callable[[sqlite3.Connection], object]) -> int:
        def run(conn: sqlite3.Connection) -> int:
            fn(conn)
            conn.execute(_BUMP)
            return int(conn.execute(_GEN).fetchone()[0])

        return self._write(run, bump=False)

    def generation(self) -> int:
        with self._lock:
            return int(self._c().execute(_GEN).fetchone()[0])

    def registry(self) -> Registry:
        with self._lock:
            conn = self._c()
            conn.execute("BEGIN")
            try:
                gen = int(conn.execute(_GEN).fetchone()[0])
                apps = {
                    a.app_id: a
                    for a in map(
                        _app,
                        conn.execute(
                            "SELECT app_id, name, key_hash, created, receipt_url, wake FROM gw_apps"
                        ),
                    )
                }
                keys = {
                    (r[0], r[1]): AppKey(r[0], r[1], r[2], r[3], r[4])
                    for r in conn.execute(
                        "SELECT app_id, kid, public_key, created, revoked FROM gw_app_keys"
                    )
                }
                devices = {
                    r[0]: Device(r[0], r[1], r[2], r[3])
                    for r in conn.execute(
                        "SELECT device_id, secret_hash, created, last_seen FROM gw_devices"
                    )
                }
                tokens = {
                    r[0]: DeviceToken(r[0], r[1], r[2], r[3], r[4])
                    for r in conn.execute(
                        "SELECT token, device_id, app_id, created, deleted FROM gw_tokens"
                    )
                }
            finally:
                conn.execute("COMMIT")
        return Registry(gen, apps, keys, devices, tokens)

    # -- apps ----------------------------------------------------------------------------

    def add_app(self, app: App) -> int:
        def w(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO gw_apps (app_id, name, key_hash, created, receipt_url, wake)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (app.app_id, app.name, app.key_hash, app.created, app.receipt_url, None),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"app {app.app_id} exists") from None

        return self._write_gen(w)

    def remove_app(self, app_id: str, when: float) -> int:
        def w(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM gw_apps WHERE app_id = ?", (app_id,)).rowcount == 0:
                raise NotFound(f"no app {app_id!r}")
            conn.execute("DELETE FROM gw_app_keys WHERE app_id = ?", (app_id,))
            conn.execute(
                "UPDATE gw_tokens SET deleted = ? WHERE app_id = ? AND deleted IS NULL",
                (when, app_id),
            )

        return self._write_gen(w)

    def set_webhooks(self, app_id: str, receipt_url: str | None, wake: WakeHook | None) -> int:
        def w(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE gw_apps SET receipt_url = ?, wake = ? WHERE app_id = ?",
                (receipt_url, None if wake is None else json.dumps(wake.to_dict()), app_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no app {app_id!r}")

        return self._write_gen(w)

    def add_key(self, key: AppKey) -> int:
        def w(conn: sqlite3.Connection) -> None:
            if (
                conn.execute("SELECT 1 FROM gw_apps WHERE app_id = ?", (key.app_id,)).fetchone()
                is None
            ):
                raise NotFound(f"no app {key.app_id!r}")
            try:
                conn.execute(
                    "INSERT INTO gw_app_keys (app_id, kid, public_key, created, revoked)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key.app_id, key.kid, key.public_key, key.created, key.revoked),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"key {key.kid!r} exists for app {key.app_id}") from None

        return self._write_gen(w)

    def revoke_key(self, app_id: str, kid: str, when: float) -> int:
        def w(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT revoked FROM gw_app_keys WHERE app_id = ? AND kid = ?", (app_id, kid)
            ).fetchone()
            if row is None:
                raise NotFound(f"no key {kid!r} for app {app_id!r}")
            if row[0] is None:
                conn.execute(
                    "UPDATE gw_app_keys SET revoked = ? WHERE app_id = ? AND kid = ?",
                    (when, app_id, kid),
                )

        return self._write_gen(w)

    # -- devices and tokens --------------------------------------------------------------

    def add_device(self, device: Device) -> int:
        def w(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO gw_devices (device_id, secret_hash, created, last_seen)"
                    " VALUES (?, ?, ?, ?)",
                    (device.device_id, device.secret_hash, device.created, device.last_seen),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"device {device.device_id} exists") from None

        return self._write_gen(w)

    def remove_device(self, device_id: str, when: float) -> int:
        def w(conn: sqlite3.Connection) -> None:
            cur = conn.execute("DELETE FROM gw_devices WHERE device_id = ?", (device_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no device {device_id!r}")
            conn.execute(
                "UPDATE gw_tokens SET deleted = ? WHERE device_id = ? AND deleted IS NULL",
                (when, device_id),
            )

        return self._write_gen(w)

    def touch_devices(self, seen: list[tuple[str, float]]) -> None:
        self._write(
            lambda conn: conn.executemany(
                "UPDATE gw_devices SET last_seen = ? WHERE device_id = ?",
                [(when, device_id) for device_id, when in seen],
            ),
            bump=False,
        )

    def add_token(self, token: DeviceToken) -> int:
        def w(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO gw_tokens (token, device_id, app_id, created, deleted)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (token.token, token.device_id, token.app_id, token.created, token.deleted),
                )
            except sqlite3.IntegrityError:
                raise Conflict("token exists") from None

        return self._write_gen(w)

    def delete_token(self, token: str, when: float) -> int:
        def w(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT deleted FROM gw_tokens WHERE token = ?", (token,)).fetchone()
            if row is None:
                raise NotFound("no such token")
            if row[0] is None:
                conn.execute("UPDATE gw_tokens SET deleted = ? WHERE token = ?", (when, token))

        return self._write_gen(w)

    # -- pushes --------------------------------------------------------------------------

    def apply(self, puts: Iterable[Push], deletes: Iterable[str], durable: bool = True) -> None:
        rows = [
            (
                p.id, p.seq, p.app_id, p.device_id, p.token, p.state, p.priority, p.push_type,
                p.expiration, p.collapse_id, p.created, p.updated, p.expires_at,
                None if p.final else p.body, p.delivered_at, p.connection, p.reason,
            )
            for p in puts
        ]  # fmt: skip
        dead = [(i,) for i in deletes]

        def w(conn: sqlite3.Connection) -> None:
            if rows:
                conn.executemany(
                    f"INSERT OR REPLACE INTO gw_pushes ({_PUSH_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            if dead:
                conn.executemany("DELETE FROM gw_pushes WHERE id = ?", dead)

        with self._lock:
            # WAL: NORMAL commits survive a process crash (kill -9) but not a power loss;
            # state changes nobody waits for (sent, delivered) need no fsync of their own
            self._sync_mode(durable)
            self._write(w, bump=False)

    def _sync_mode(self, durable: bool) -> None:
        if durable != self._durable_mode:
            self._c().execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable_mode = durable

    def load_pushes(self) -> list[Push]:
        with self._lock:
            rows = (
                self._c().execute(f"SELECT {_PUSH_COLUMNS} FROM gw_pushes ORDER BY seq").fetchall()
            )
        return [_push(r) for r in rows]

    # -- content -------------------------------------------------------------------------

    def put_content(self, content: Content) -> None:
        c = content
        self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO gw_content (content_id, device_id, app_id, content_type,"
                " data, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (c.content_id, c.device_id, c.app_id, c.content_type, c.data, c.created, c.expires),
            ),
            bump=False,
        )

    def get_content(self, content_id: str) -> Content | None:
        with self._lock:
            r = (
                self._c()
                .execute(
                    "SELECT content_id, device_id, app_id, content_type, data, created, expires"
                    " FROM gw_content WHERE content_id = ?",
                    (content_id,),
                )
                .fetchone()
            )
        return None if r is None else Content(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6])

    def delete_content_before(self, now: float) -> int:
        return self._write(
            lambda conn: conn.execute("DELETE FROM gw_content WHERE expires <= ?", (now,)).rowcount,
            bump=False,
        )


def make_gateway_store(
    *,
    memory: bool,
    data_dir: Path | None = None,
    engine: str = "sqlite",
    redis_url: str | None = None,
) -> GatewayStore:
    """engine=redis: apps, devices and pushes in Redis, the same on every node; otherwise
    the embedded store (memory, or SQLite in the data dir)."""
    if engine == "redis":
        if not redis_url:
            raise ValueError("a Redis gateway store needs a Redis URL")
        # imported here: the Redis store builds on this module's types
        from pushwire.engines.redis.gateway_store import RedisGatewayStore

        return RedisGatewayStore(redis_url)
    if memory:
        return MemoryGatewayStore()
    if data_dir is None:
        raise ValueError("a SQLite gateway store needs a data directory")
    return SQLiteGatewayStore.in_data_dir(data_dir)
