"""The SQLite engine: the embedded default store, one database file, no server to run.

Threading model. sqlite3 calls block (and fsync blocks for milliseconds), so none of them
run on the event loop. One writer thread owns the only connection. Write methods just
append an operation to a `queue.SimpleQueue` (thread-safe, lock-free for put, keeps call
order) and return. The writer blocks for the first operation, drains whatever else is
already queued (up to `batch_max`), applies it all in ONE transaction and commits: a group
commit, so the fsync cost is paid once per batch rather than once per write. `sync()` puts
a marker in the same queue; the writer resolves the marker's future after the commit of the
batch it was drained in, which covers every write queued before it. Reads (`load_*`) go
through the same queue, after the preceding writes have been committed, so they see them.

Failures. A write that cannot be stored fails alone. When a batch fails, it is rolled back
and applied again one write at a time, each inside its own SAVEPOINT: a write that fails is
rolled back to its savepoint and skipped, the others commit (see `_commit_one_by_one`).
Why retry rather than validate every write before queueing it: validation can only catch
what we thought of (a lone surrogate, an integer over 64 bits), while SQLite itself decides
what it rejects (constraints, triggers, a value it cannot bind); the retry covers all of it
and costs nothing until something fails. A log entry that cannot be stored leaves a hole
row (`log_holes`) in the same transaction, so a reader whose cursor crosses it is told of a
gap even after a restart.

Each failed write is reported as a `WriteFailure` naming its message and session, on the
event loop, before the `sync()` waiters of its batch are resolved: `write_failed(message)`
then tells each waiter whether ITS message was stored, so one client's bad write never
fails another client's publish. Only a failed write that belongs to no message or session
(log trims, consumer cursors, ...) raises `SQLiteWriteError` from `sync()`: in the waiters
of its batch, or, if the batch had none, in those of the next commit point, once. The writer
thread keeps serving later batches.

Storage. A message body is stored once per `Message.uid` in `messages` and referenced by
`queue` rows; triggers on `queue` drop the body with its last reference, so every path that
removes queue rows (queue_delete, session_delete, a queue_put replacing a seq) collects it.
Retained messages are a separate table keyed by topic holding the whole message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from pushwire.core.histogram import Histogram
from pushwire.core.message import MESSAGE_OVERHEAD, Message, bump_uid_floor
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.base import (
    FailureListener,
    QueueState,
    StoredConsumer,
    StoredLog,
    StoredLogEntry,
    StoredQueueEntry,
    StoredSession,
    StoredSubscription,
    WriteError,
    WriteFailure,
)
from pushwire.engines.serialize import dump_properties, load_properties

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
_STATES: Final = frozenset({"queued", "sent", "released"})

_T = TypeVar("_T")
_Params = tuple[Any, ...]
# A write is (sql, params) for single statements, or (function, params) for the few
# operations that need several statements applied together.
_WriteFn = Callable[[sqlite3.Connection, Any], None]
# whose write it is, for failure reports: (engine method, message, client id)
_Subject = tuple[str, Message | None, str | None]
# (operation, params, bytes of payload it holds: the write-behind backlog counts them,
# whose write it is)
_Write = tuple[str | _WriteFn, Any, int, _Subject | None]
# how many failed messages `write_failed` remembers (a waiter asks right after its sync)
_FAILED_MEMORY: Final = 65536


class SQLiteWriteError(WriteError):
    """A write that belongs to no message or session could not be stored (see the module
    docstring). The underlying sqlite3 (or other) exception is the `__cause__`."""


class _Sync:
    """Commit marker: resolve `future` on `loop` once the writes queued before it commit."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future


class _Call:
    """Run `fn` on the writer thread (outside any transaction) after preceding commits."""

    __slots__ = ("fn", "future")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], future: concurrent.futures.Future[Any]
    ) -> None:
        self.fn = fn
        self.future = future


class _Stop:
    __slots__ = ("future",)

    def __init__(self, future: concurrent.futures.Future[None]) -> None:
        self.future = future


_Item = _Write | _Sync | _Call | _Stop

_SCHEMA: Final = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY,
    protocol_level INTEGER NOT NULL,
    expiry_interval INTEGER,
    disconnected_at REAL,
    owner TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    client_id TEXT NOT NULL,
    filter TEXT NOT NULL,
    qos INTEGER NOT NULL,
    no_local INTEGER NOT NULL,
    retain_as_published INTEGER NOT NULL,
    retain_handling INTEGER NOT NULL,
    subscription_id INTEGER,
    PRIMARY KEY (client_id, filter)
) WITHOUT ROWID;
-- rowid table: payloads can be large, which WITHOUT ROWID handles badly
CREATE TABLE IF NOT EXISTS messages (
    uid INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    properties TEXT,
    expires_at REAL,
    created_at REAL NOT NULL,
    origin TEXT
);
CREATE TABLE IF NOT EXISTS queue (
    client_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    packet_id INTEGER,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'released')),
    PRIMARY KEY (client_id, seq)
) WITHOUT ROWID;
-- makes the "any reference left?" probe of the triggers below an index lookup
CREATE INDEX IF NOT EXISTS queue_uid ON queue (uid);
CREATE TRIGGER IF NOT EXISTS queue_gc_delete AFTER DELETE ON queue
BEGIN
    DELETE FROM messages WHERE uid = OLD.uid
        AND NOT EXISTS (SELECT 1 FROM queue WHERE uid = OLD.uid);
END;
-- a queue_put on an existing (client_id, seq) is an upsert that may switch messages
CREATE TRIGGER IF NOT EXISTS queue_gc_update AFTER UPDATE OF uid ON queue
WHEN OLD.uid <> NEW.uid
BEGIN
    DELETE FROM messages WHERE uid = OLD.uid
        AND NOT EXISTS (SELECT 1 FROM queue WHERE uid = OLD.uid);
END;
CREATE TABLE IF NOT EXISTS inbound_qos2 (
    client_id TEXT NOT NULL,
    packet_id INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY,
    uid INTEGER NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    properties TEXT,
    expires_at REAL,
    created_at REAL NOT NULL,
    origin TEXT
);
INSERT INTO schema_version (version)
    SELECT {SCHEMA_VERSION} WHERE NOT EXISTS (SELECT 1 FROM schema_version);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

_SQL_SESSION_PUT: Final = """
INSERT INTO sessions (client_id, protocol_level, expiry_interval, disconnected_at, owner)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (client_id) DO UPDATE SET
    protocol_level = excluded.protocol_level,
    expiry_interval = excluded.expiry_interval,
    disconnected_at = excluded.disconnected_at,
    owner = excluded.owner
"""
_SQL_SUBSCRIPTION_PUT: Final = """
INSERT INTO subscriptions (client_id, filter, qos, no_local, retain_as_published,
                           retain_handling, subscription_id)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (client_id, filter) DO UPDATE SET
    qos = excluded.qos,
    no_local = excluded.no_local,
    retain_as_published = excluded.retain_as_published,
    retain_handling = excluded.retain_handling,
    subscription_id = excluded.subscription_id
"""
_SQL_SUBSCRIPTION_DELETE: Final = "DELETE FROM subscriptions WHERE client_id = ? AND filter = ?"
# OR IGNORE: the body is immutable per uid, the first queue_put of a uid stores it
_SQL_MESSAGE_PUT: Final = """
INSERT OR IGNORE INTO messages (uid, topic, payload, qos, retain, properties, expires_at,
                                created_at, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SQL_QUEUE_PUT: Final = """
INSERT INTO queue (client_id, seq, uid, qos, retain, packet_id, state)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (client_id, seq) DO UPDATE SET
    uid = excluded.uid,
    qos = excluded.qos,
    retain = excluded.retain,
    packet_id = excluded.packet_id,
    state = excluded.state
"""
_SQL_QUEUE_UPDATE: Final = (
    "UPDATE queue SET packet_id = ?, state = ? WHERE client_id = ? AND seq = ?"
)
_SQL_QUEUE_DELETE: Final = "DELETE FROM queue WHERE client_id = ? AND seq = ?"
_SQL_QOS2_PUT: Final = "INSERT OR IGNORE INTO inbound_qos2 (client_id, packet_id) VALUES (?, ?)"
_SQL_QOS2_DELETE: Final = "DELETE FROM inbound_qos2 WHERE client_id = ? AND packet_id = ?"
_SQL_RETAINED_PUT: Final = """
INSERT OR REPLACE INTO retained (topic, uid, payload, qos, retain, properties, expires_at,
                                 created_at, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SQL_RETAINED_DELETE: Final = "DELETE FROM retained WHERE topic = ?"
_SQL_SESSION_DELETE: Final = (
    "DELETE FROM sessions WHERE client_id = ?",
    "DELETE FROM subscriptions WHERE client_id = ?",
    "DELETE FROM queue WHERE client_id = ?",  # the delete trigger collects the bodies
    "DELETE FROM inbound_qos2 WHERE client_id = ?",
)


def _add_session_owner(conn: sqlite3.Connection) -> None:
    """Stores from before sessions recorded their owner: add the column (NULL: no owner
    recorded, the next connection takes the session as before). Additive, so the schema
    version stays."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
    if "owner" not in columns:
        conn.execute("ALTER TABLE sessions ADD COLUMN owner TEXT")


def _w_queue_put(conn: sqlite3.Connection, params: tuple[_Params, _Params]) -> None:
    # body first: the upsert's trigger must see the new uid already referenced
    conn.execute(_SQL_MESSAGE_PUT, params[0])
    conn.execute(_SQL_QUEUE_PUT, params[1])


def _w_session_delete(conn: sqlite3.Connection, params: _Params) -> None:
    for sql in _SQL_SESSION_DELETE:
        conn.execute(sql, params)


def _props_text(props: dict[str, Any]) -> str | None:
    # NULL for the common empty case: no JSON work on either side
    return dump_properties(props) if props else None


def _message_from_row(
    topic: str,
    payload: bytes,
    qos: int,
    retain: int,
    properties: str | None,
    expires_at: float | None,
    created_at: float,
    uid: int,
    origin: str | None,
) -> Message:
    return Message(
        topic=topic,
        payload=bytes(payload),
        qos=qos,
        retain=bool(retain),
        properties=load_properties(properties) if properties is not None else {},
        expires_at=expires_at,
        created_at=created_at,
        uid=uid,
        origin=origin,
    )


def _max_uid(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT max(coalesce((SELECT max(uid) FROM messages), 0),"
        " coalesce((SELECT max(uid) FROM retained), 0))"
    ).fetchone()
    return int(row[0])


_SQL_QUEUE_COLUMNS: Final = (
    "q.client_id, q.seq, q.qos, q.retain, q.packet_id, q.state, q.uid,"
    " m.topic, m.payload, m.qos, m.retain, m.properties, m.expires_at, m.created_at,"
    " m.origin"
)
# every inflight entry and the first ? queued ones of each session (its memory window)
_SQL_QUEUE_WINDOW: Final = f"""
SELECT {_SQL_QUEUE_COLUMNS}
FROM (SELECT *, row_number() OVER (PARTITION BY client_id ORDER BY seq) AS n FROM queue) AS q
LEFT JOIN messages AS m ON m.uid = q.uid
WHERE q.n <= ? OR q.state != 'queued' OR ? <= 0
ORDER BY q.client_id, q.seq
"""
# the queued entries beyond the window, summed up (payloads are not read: length() only)
_SQL_QUEUE_BEYOND: Final = f"""
SELECT q.client_id, count(*), min(q.seq), max(q.seq),
       sum(length(m.payload) + length(m.topic) + coalesce(length(m.properties), 0)
           + {MESSAGE_OVERHEAD})
FROM (SELECT *, row_number() OVER (PARTITION BY client_id ORDER BY seq) AS n FROM queue) AS q
JOIN messages AS m ON m.uid = q.uid
WHERE q.n > ? AND q.state = 'queued'
GROUP BY q.client_id
"""
_SQL_QUEUE_LOAD: Final = f"""
SELECT {_SQL_QUEUE_COLUMNS}
FROM queue AS q LEFT JOIN messages AS m ON m.uid = q.uid
WHERE q.client_id = ? AND q.seq >= ?
ORDER BY q.seq LIMIT ?
"""


def _queue_entries(
    rows: Any, messages: dict[int, Message]
) -> tuple[list[tuple[str, StoredQueueEntry]], int]:
    """Queue rows as entries (one Message per uid, shared as in memory); the count of rows
    whose message body is missing."""
    out: list[tuple[str, StoredQueueEntry]] = []
    missing = 0
    for row in rows:
        client_id, seq, qos, retain, packet_id, state, uid = row[:7]
        message = messages.get(uid)
        if message is None:
            if row[7] is None:  # body missing: cannot happen through this engine's writes
                missing += 1
                continue
            topic, payload, mqos, mretain, props, expires_at, created_at, origin = row[7:]
            message = _message_from_row(
                topic, payload, mqos, mretain, props, expires_at, created_at, uid, origin
            )
            messages[uid] = message
        entry = StoredQueueEntry(seq, message, qos, bool(retain), packet_id, state)
        out.append((client_id, entry))
    return out, missing


def _read_queue(
    conn: sqlite3.Connection, client_id: str, from_seq: int, limit: int
) -> list[StoredQueueEntry]:
    rows = conn.execute(_SQL_QUEUE_LOAD, (client_id, from_seq, limit))
    entries, missing = _queue_entries(rows, {})
    if missing:
        logger.error("sqlite engine: skipped %d queue rows whose message is missing", missing)
    return [entry for _, entry in entries]


def _read_sessions(conn: sqlite3.Connection, window: int = 0) -> tuple[list[StoredSession], int]:
    sessions: dict[str, StoredSession] = {}
    for client_id, level, expiry, disconnected_at, owner in conn.execute(
        "SELECT client_id, protocol_level, expiry_interval, disconnected_at, owner"
        " FROM sessions ORDER BY client_id"
    ):
        sessions[client_id] = StoredSession(client_id, level, expiry, disconnected_at, owner=owner)

    # Rows whose session row is missing can only come from a caller that wrote them
    # without session_put; they are skipped but counted, never dropped silently.
    orphans = 0
    for client_id, flt, qos, no_local, rap, rh, sub_id in conn.execute(
        "SELECT client_id, filter, qos, no_local, retain_as_published, retain_handling,"
        " subscription_id FROM subscriptions ORDER BY client_id, filter"
    ):
        session = sessions.get(client_id)
        if session is None:
            orphans += 1
            continue
        options = SubscriptionOptions(
            qos=qos, no_local=bool(no_local), retain_as_published=bool(rap), retain_handling=rh
        )
        session.subscriptions.append(StoredSubscription(flt, options, sub_id))

    # One Message object per uid, shared by every entry that references it, as in memory.
    entries, missing = _queue_entries(conn.execute(_SQL_QUEUE_WINDOW, (window, window)), {})
    for client_id, entry in entries:
        session = sessions.get(client_id)
        if session is None:
            orphans += 1
            continue
        session.queue.append(entry)
    if window > 0:
        for client_id, count, first, last, size in conn.execute(_SQL_QUEUE_BEYOND, (window,)):
            session = sessions.get(client_id)
            if session is None:
                orphans += count
                continue
            session.stored_count = int(count)
            session.stored_bytes = int(size or 0)
            session.stored_first_seq = int(first)
            session.stored_last_seq = int(last)

    for client_id, packet_id in conn.execute(
        "SELECT client_id, packet_id FROM inbound_qos2 ORDER BY client_id, packet_id"
    ):
        session = sessions.get(client_id)
        if session is None:
            orphans += 1
            continue
        session.inbound_qos2.append(packet_id)

    if orphans:
        logger.warning("sqlite engine: skipped %d rows of sessions that do not exist", orphans)
    if missing:
        logger.error("sqlite engine: skipped %d queue rows whose message is missing", missing)
    return list(sessions.values()), _max_uid(conn)


def _read_retained(conn: sqlite3.Connection) -> tuple[list[Message], int]:
    messages = [
        _message_from_row(*row)
        for row in conn.execute(
            "SELECT topic, payload, qos, retain, properties, expires_at, created_at, uid,"
            " origin FROM retained ORDER BY topic"
        )
    ]
    return messages, _max_uid(conn)


# -- message log (core/log.py) -------------------------------------------------------------
# Additive: its tables are created by `load_log` (the first thing the log does at start-up),
# so the schema above and its version are untouched.

_LOG_SCHEMA: Final = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    uid INTEGER NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    properties TEXT,
    expires_at REAL,
    created_at REAL NOT NULL,
    origin TEXT
);
CREATE INDEX IF NOT EXISTS log_topic_id ON log (topic, id);
CREATE TABLE IF NOT EXISTS log_topics (
    topic TEXT PRIMARY KEY,
    evicted_upto INTEGER NOT NULL,
    evicted_time REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_consumers_by_owner (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    filter TEXT NOT NULL,
    acked INTEGER NOT NULL,
    last_used REAL NOT NULL,
    PRIMARY KEY (owner, name, filter)
) WITHOUT ROWID;
-- ids issued but not stored; topic as UTF-8 bytes (surrogatepass), so that even a topic
-- that could not be stored as TEXT gets its hole recorded
CREATE TABLE IF NOT EXISTS log_holes (
    topic BLOB NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (topic, id)
) WITHOUT ROWID;
COMMIT;
"""
_SQL_LOG_APPEND: Final = """
INSERT OR REPLACE INTO log (id, topic, uid, payload, qos, retain, properties, expires_at,
                            created_at, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SQL_LOG_TRIM: Final = "DELETE FROM log WHERE topic = ? AND id <= ?"
_SQL_LOG_HOLE: Final = "INSERT OR IGNORE INTO log_holes (topic, id) VALUES (?, ?)"
_SQL_LOG_HOLES_TRIM: Final = "DELETE FROM log_holes WHERE topic = ? AND id <= ?"
_SQL_LOG_EVICTED: Final = """
INSERT INTO log_topics (topic, evicted_upto, evicted_time) VALUES (?, ?, ?)
ON CONFLICT (topic) DO UPDATE SET
    evicted_upto = max(evicted_upto, excluded.evicted_upto),
    evicted_time = max(evicted_time, excluded.evicted_time)
"""
_SQL_LOG_CONSUMER_PUT: Final = """
INSERT INTO log_consumers_by_owner (owner, name, filter, acked, last_used) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (owner, name, filter) DO UPDATE SET
    acked = excluded.acked, last_used = excluded.last_used
"""
_SQL_LOG_CONSUMER_DELETE: Final = (
    "DELETE FROM log_consumers_by_owner WHERE owner = ? AND name = ? AND filter = ?"
)


def _migrate_consumers(conn: sqlite3.Connection) -> None:
    """Stores from before consumers had owners have `log_consumers (name, filter, acked)`:
    its rows move to the owner "" (the first identity to use such a consumer takes it over,
    see core/consumers.py), their idle clock starting now."""
    old = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_consumers'"
    ).fetchone()
    if old is None:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        moved = conn.execute(
            "INSERT OR IGNORE INTO log_consumers_by_owner (owner, name, filter, acked, last_used)"
            " SELECT '', name, filter, acked, ? FROM log_consumers",
            (time.time(),),
        ).rowcount
        conn.execute("DROP TABLE log_consumers")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    logger.info("sqlite engine: %d consumers migrated to per-identity consumers", moved)


def _w_log_trim(conn: sqlite3.Connection, params: tuple[str, int, float]) -> None:
    topic, upto, upto_time = params
    conn.execute(_SQL_LOG_HOLES_TRIM, (_topic_key(topic), upto))
    try:
        topic.encode("utf-8")
    except UnicodeEncodeError:
        return  # a topic SQLite cannot hold as text has no other rows (only holes)
    conn.execute(_SQL_LOG_TRIM, (topic, upto))
    conn.execute(_SQL_LOG_EVICTED, (topic, upto, upto_time))


def _topic_key(topic: str) -> bytes:
    return topic.encode("utf-8", "surrogatepass")


def _w_log_reset(conn: sqlite3.Connection, params: tuple[str]) -> None:
    conn.execute("DELETE FROM log")
    conn.execute("DELETE FROM log_topics")
    conn.execute("DELETE FROM log_consumers_by_owner")
    conn.execute("DELETE FROM log_holes")
    conn.execute("INSERT OR REPLACE INTO log_meta (key, value) VALUES ('epoch', ?)", params)


def _read_log(conn: sqlite3.Connection) -> StoredLog:
    conn.executescript(_LOG_SCHEMA)
    _migrate_consumers(conn)
    row = conn.execute("SELECT value FROM log_meta WHERE key = 'epoch'").fetchone()
    if row is None:
        return StoredLog()
    stored = StoredLog(epoch=str(row[0]))
    for topic, upto, upto_time in conn.execute(
        "SELECT topic, evicted_upto, evicted_time FROM log_topics"
    ):
        stored.evicted[topic] = (int(upto), float(upto_time))
        stored.last_id = max(stored.last_id, int(upto))
    # metadata only: payloads stay on disk until a reader asks (`log_read`), so a large
    # stored log costs memory per entry, not per byte
    for id_, topic, created_at, payload_len, props_len, uid in conn.execute(
        "SELECT id, topic, created_at, length(payload), coalesce(length(properties), 0), uid"
        " FROM log ORDER BY id"
    ):
        size = int(payload_len) + len(topic) + int(props_len) + MESSAGE_OVERHEAD
        stored.entries.append(StoredLogEntry(int(id_), topic, float(created_at), size))
        stored.last_id = max(stored.last_id, int(id_))
        stored.max_uid = max(stored.max_uid, int(uid))
    for owner, name, flt, acked, last_used in conn.execute(
        "SELECT owner, name, filter, acked, last_used FROM log_consumers_by_owner"
    ):
        stored.consumers.append(StoredConsumer(owner, name, flt, int(acked), float(last_used)))
    for topic, hole in conn.execute("SELECT topic, id FROM log_holes ORDER BY id"):
        key = bytes(topic).decode("utf-8", "surrogatepass")
        stored.holes.setdefault(key, []).append(int(hole))
        stored.last_id = max(stored.last_id, int(hole))
    return stored


_SQL_LOG_RANGE: Final = """
SELECT id, topic, payload, qos, retain, properties, expires_at, created_at, uid, origin
FROM log WHERE topic = ? AND id >= ? AND id <= ? ORDER BY id
"""


def _read_log_ranges(conn: sqlite3.Connection, ranges: list[tuple[str, int, int]]) -> list[Message]:
    out: list[Message] = []
    for topic, first, last in ranges:
        try:
            topic.encode("utf-8")
        except UnicodeEncodeError:
            continue  # SQLite cannot hold it as text: its entries were refused (holes)
        for row in conn.execute(_SQL_LOG_RANGE, (topic, first, last)):
            message = _message_from_row(*row[1:])
            message.log_id = int(row[0])
            out.append(message)
    return out


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """Runs on the event loop: resolve the sync() futures of one commit point."""
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            exc = SQLiteWriteError(f"sqlite engine: write batch rolled back: {error!r}")
            exc.__cause__ = error
            future.set_exception(exc)


class SQLiteEngine:
    """Engine on one SQLite file in WAL mode, written by a dedicated thread (group commit)."""

    name = "sqlite"
    keeps_queue = True
    keeps_log = True

    def __init__(
        self,
        path: Path,
        durable: bool = True,
        batch_max: int = 1000,
        max_pending_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be >= 1")
        # Payload bytes of writes queued for the writer and not applied yet: a publisher
        # faster than the disk grows this backlog, so above `max_pending_bytes` the engine
        # says `backlogged` and the hub holds publishers until it is half drained (0: never).
        # Each counter has one writer thread: the loop queues, the writer applies.
        self.max_pending_bytes = max_pending_bytes
        self._queued_bytes = 0
        self._applied_bytes = 0
        self._drained: list[Callable[[], None]] = []
        self._drain_loop: asyncio.AbstractEventLoop | None = None
        self.path = Path(path)
        # durable: synchronous=FULL (fsync on every commit) and sync() waits for the commit.
        # Not durable: synchronous=NORMAL, which in WAL mode still survives a process crash
        # once committed (only power loss can roll back the newest commits), and sync()
        # returns at once.
        self.durable = durable
        self.batch_max = batch_max
        # Written by the writer thread only; read for monitoring and by tests.
        self.commits = 0
        # seconds per commit (BEGIN .. COMMIT of one batch, fsync included)
        self.commit_seconds = Histogram()
        self.failed_batches = 0  # batches that had to be retried one write at a time
        self.failed_writes = 0  # writes that could not be stored

        self._ops: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._state = "new"  # new -> open -> closed
        # sync() coalescing: while no write was issued since the last marker, a new sync()
        # can wait on that marker instead of queueing another one.
        self._dirty = False
        self._last_sync: asyncio.Future[None] | None = None
        # A failed batch's error waiting for the next commit point with waiters (writer
        # thread only).
        self._unreported: BaseException | None = None
        # uid -> serialized properties of the last queued message: fan-out queues the same
        # message for many sessions in a row, and only its first queue_put stores a body.
        self._props_cache: tuple[int, str | None] = (0, None)
        # event-loop side of failure reports (see the module docstring)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed_uids: dict[int, None] = {}  # insertion-ordered: oldest dropped first
        # client id -> `_failure_reports` when a write of its session last failed
        self._failed_clients: dict[str, int] = {}
        self._failure_reports = 0
        self._failure_listeners: list[FailureListener] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"SQLiteEngine.open() on an engine that is {self._state}")
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._loop = asyncio.get_running_loop()
        thread = threading.Thread(
            target=self._run, args=(ready,), name="pushwire-sqlite-writer", daemon=True
        )
        thread.start()
        try:
            max_uid = await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(thread.join)
            self._state = "closed"
            raise
        self._thread = thread
        self._state = "open"
        # Right away, not only in load_*: no Message created from now on may reuse a uid
        # that is already on disk, or its body would be taken for the stored one.
        bump_uid_floor(max_uid)

    async def close(self) -> None:
        """Commit everything pending, stop the writer and close the database.

        Raises SQLiteWriteError (after releasing everything) if the final commit failed."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"  # from here on, writes raise
        loop = asyncio.get_running_loop()
        final: asyncio.Future[None] = loop.create_future()
        self._ops.put(_Sync(loop, final))
        stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._ops.put(_Stop(stopped))
        error: SQLiteWriteError | None = None
        try:
            await asyncio.shield(final)
        except SQLiteWriteError as exc:
            error = exc
        await asyncio.wrap_future(stopped)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if error is not None:
            raise error

    # -- reads ----------------------------------------------------------------------------

    async def load_sessions(self, queue_window: int = 0) -> list[StoredSession]:
        sessions, max_uid = await self._call(lambda conn: _read_sessions(conn, queue_window))
        bump_uid_floor(max_uid)
        return sessions

    async def load_retained(self) -> list[Message]:
        messages, max_uid = await self._call(_read_retained)
        bump_uid_floor(max_uid)
        return messages

    # -- writes (non-blocking: queued for the writer thread) ------------------------------

    def session_put(
        self,
        client_id: str,
        protocol_level: int,
        expiry_interval: int | None,
        disconnected_at: float | None,
        owner: str | None = None,
    ) -> None:
        self._write(
            _SQL_SESSION_PUT,
            (client_id, protocol_level, expiry_interval, disconnected_at, owner),
            ("session_put", None, client_id),
        )

    def session_delete(self, client_id: str) -> None:
        self._write(_w_session_delete, (client_id,), ("session_delete", None, client_id))

    def subscription_put(self, client_id: str, sub: StoredSubscription) -> None:
        o = sub.options
        self._write(
            _SQL_SUBSCRIPTION_PUT,
            (
                client_id,
                sub.filter,
                o.qos,
                int(o.no_local),
                int(o.retain_as_published),
                o.retain_handling,
                sub.subscription_id,
            ),
            ("subscription_put", None, client_id),
        )

    def subscription_delete(self, client_id: str, flt: str) -> None:
        self._write(
            _SQL_SUBSCRIPTION_DELETE, (client_id, flt), ("subscription_delete", None, client_id)
        )

    def queue_put(self, client_id: str, entry: StoredQueueEntry) -> None:
        _check_state(entry.state)
        m = entry.message
        cached_uid, props = self._props_cache
        if cached_uid != m.uid:
            # serialized here, not on the writer: a bad property raises at the call site
            props = _props_text(m.properties)
            self._props_cache = (m.uid, props)
        body = (
            m.uid,
            m.topic,
            m.payload,
            m.qos,
            int(m.retain),
            props,
            m.expires_at,
            m.created_at,
            m.origin,
        )
        row = (
            client_id,
            entry.seq,
            m.uid,
            entry.qos,
            int(entry.retain),
            entry.packet_id,
            entry.state,
        )
        self._write(_w_queue_put, (body, row), ("queue_put", m, client_id), len(m.payload))

    def queue_update(
        self, client_id: str, seq: int, packet_id: int | None, state: QueueState
    ) -> None:
        _check_state(state)
        self._write(
            _SQL_QUEUE_UPDATE,
            (packet_id, state, client_id, seq),
            ("queue_update", None, client_id),
        )

    def queue_delete(self, client_id: str, seq: int) -> None:
        self._write(_SQL_QUEUE_DELETE, (client_id, seq), ("queue_delete", None, client_id))

    def queue_load(
        self, client_id: str, from_seq: int, limit: int
    ) -> asyncio.Future[list[StoredQueueEntry]]:
        """Read a stretch of a session's queue back (after the writes queued before it)."""
        return self._call(lambda conn: _read_queue(conn, client_id, from_seq, limit))

    def inbound_qos2_put(self, client_id: str, packet_id: int) -> None:
        self._write(_SQL_QOS2_PUT, (client_id, packet_id), ("inbound_qos2_put", None, client_id))

    def inbound_qos2_delete(self, client_id: str, packet_id: int) -> None:
        self._write(
            _SQL_QOS2_DELETE, (client_id, packet_id), ("inbound_qos2_delete", None, client_id)
        )

    def retained_put(self, message: Message) -> None:
        m = message
        self._write(
            _SQL_RETAINED_PUT,
            (
                m.topic,
                m.uid,
                m.payload,
                m.qos,
                int(m.retain),
                _props_text(m.properties),
                m.expires_at,
                m.created_at,
                m.origin,
            ),
            ("retained_put", m, None),
            len(m.payload),
        )

    def retained_delete(self, topic: str) -> None:
        self._write(_SQL_RETAINED_DELETE, (topic,))

    # -- message log ----------------------------------------------------------------------

    async def load_log(self) -> StoredLog:
        """Create the log tables if needed, then read the log back (see core/log.py)."""
        return await self._call(_read_log)

    def log_reset(self, epoch: str) -> None:
        self._write(_w_log_reset, (epoch,))

    def log_append(self, message: Message) -> None:
        m = message
        self._write(
            _SQL_LOG_APPEND,
            (
                m.log_id,
                m.topic,
                m.uid,
                m.payload,
                m.qos,
                int(m.retain),
                _props_text(m.properties),
                m.expires_at,
                m.created_at,
                m.origin,
            ),
            ("log_append", m, None),
            len(m.payload),
        )

    def log_trim(self, topic: str, upto_id: int, upto_time: float) -> None:
        self._write(_w_log_trim, (topic, upto_id, upto_time))

    def log_consumer_put(
        self, owner: str, name: str, flt: str, acked: int, last_used: float
    ) -> None:
        self._write(_SQL_LOG_CONSUMER_PUT, (owner, name, flt, acked, last_used))

    def log_consumer_delete(self, owner: str, name: str, flt: str) -> None:
        self._write(_SQL_LOG_CONSUMER_DELETE, (owner, name, flt))

    async def log_read(self, ranges: list[tuple[str, int, int]]) -> list[Message]:
        """Read log entries back by (topic, first_id, last_id) ranges (index log_topic_id),
        after the writes queued before the call have been committed."""
        return await self._call(lambda conn: _read_log_ranges(conn, ranges))

    # -- commit points --------------------------------------------------------------------

    async def sync(self) -> None:
        """Return once every write issued before this call is committed (durable=True).

        With durable=False this returns at once: the writes are committed shortly after
        by the writer, and failures are only logged (use `flush()` to wait anyway)."""
        self._check_open()
        if self.durable:
            await self.flush()

    async def flush(self) -> None:
        """Wait until every write issued before this call is committed, whatever `durable`
        says. Raises SQLiteWriteError if a batch failed since the previous commit point."""
        self._check_open()
        last = self._last_sync
        if not self._dirty and (last is None or last.done()):
            # nothing written since the last commit point, which is already settled
            # (a failure there was reported to its waiters, once)
            return
        loop = asyncio.get_running_loop()
        if self._dirty or last is None or last.get_loop() is not loop:
            last = loop.create_future()
            self._ops.put(_Sync(loop, last))
            self._last_sync = last
            self._dirty = False
        # shield: one waiter being cancelled must not cancel the shared future of the others
        await asyncio.shield(last)

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"SQLiteEngine is {self._state}, not open")

    def _write(
        self, op: str | _WriteFn, params: Any, subject: _Subject | None = None, size: int = 0
    ) -> None:
        if self._state != "open":
            raise RuntimeError(f"SQLiteEngine is {self._state}: cannot write")
        self._dirty = True
        self._queued_bytes += size
        self._ops.put((op, params, size, subject))

    # -- failure reports (event loop side) ------------------------------------------------

    def write_failed(self, message: Message) -> bool:
        """True when a write of `message` could not be stored. Reports reach the loop
        before the `sync()` waiters of the batch, so a waiter asks right after its sync."""
        return message.uid in self._failed_uids

    def failure_mark(self) -> int:
        return self._failure_reports

    def session_failed_since(self, client_id: str, mark: int) -> bool:
        return self._failed_clients.get(client_id, 0) > mark

    def add_failure_listener(self, listener: FailureListener) -> None:
        self._failure_listeners.append(listener)

    def _record_failures(self, failures: list[WriteFailure]) -> None:
        self._failure_reports += 1
        failed = self._failed_uids
        clients = self._failed_clients
        for failure in failures:
            if failure.message is not None:
                failed[failure.message.uid] = None
                while len(failed) > _FAILED_MEMORY:
                    del failed[next(iter(failed))]
            if failure.client_id is not None:
                clients.pop(failure.client_id, None)  # re-insert: newest last
                clients[failure.client_id] = self._failure_reports
                while len(clients) > _FAILED_MEMORY:
                    del clients[next(iter(clients))]
            for listener in self._failure_listeners:
                try:
                    listener(failure)
                except Exception:
                    logger.exception("sqlite engine: write failure listener failed")

    # -- write-behind backlog -------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Payload bytes queued for the writer and not applied yet."""
        return self._queued_bytes - self._applied_bytes

    @property
    def backlogged(self) -> bool:
        return 0 < self.max_pending_bytes < self.pending_bytes

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call `callback` on this event loop once the backlog is at most half the bound."""
        self._drain_loop = asyncio.get_running_loop()
        self._drained.append(callback)
        if self._half_drained():
            self._drain_loop.call_soon(self._fire_drained)

    def _half_drained(self) -> bool:
        return self.pending_bytes <= self.max_pending_bytes // 2

    def _fire_drained(self) -> None:
        if not self._half_drained():
            return  # grew again meanwhile: the writer calls back after a later batch
        callbacks, self._drained = self._drained, []
        for callback in callbacks:
            callback()

    def _applied(self, size: int) -> None:
        """Writer thread, after a batch: account for it and wake the drain waiters."""
        self._applied_bytes += size
        loop = self._drain_loop
        if self._drained and loop is not None and self._half_drained():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._fire_drained)

    def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        """Run `fn(conn)` on the writer thread after the writes queued before it commit.

        Queued synchronously (not in a coroutine) so its place in the write order is the
        moment of the call. Also the test seam to hold the writer still."""
        self._check_open()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._ops.put(_Call(fn, future))
        return asyncio.wrap_future(future)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the sqlite3 module issues no implicit BEGIN/COMMIT; the
        # writer brackets each batch itself.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: cannot use WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            # Only this thread writes; a wait can only come from an outside reader
            # checkpointing or a second process, which should fail loudly, not hang.
            conn.execute("PRAGMA busy_timeout=5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: schema version {version} is newer than this pushwire"
                    f" understands ({SCHEMA_VERSION})"
                )
            conn.executescript(_SCHEMA)
            _add_session_owner(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        """Writer thread body."""
        try:
            conn = self._connect()
            max_uid = _max_uid(conn)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(max_uid)
        stop: _Stop | None = None
        try:
            stop = self._serve(conn)
        except BaseException:
            # only a bug gets here (_commit catches batch errors); say so loudly, since
            # sync() waiters will wait forever from now on
            logger.critical("sqlite engine: writer thread died", exc_info=True)
            raise
        finally:
            try:
                conn.close()
            except sqlite3.Error:
                logger.exception("sqlite engine: error closing %s", self.path)
            if stop is not None:
                stop.future.set_result(None)

    def _serve(self, conn: sqlite3.Connection) -> _Stop:
        ops = self._ops
        while True:
            item = ops.get()  # block for the first item of a batch
            writes: list[_Write] = []
            waiters: list[_Sync] = []
            tail: _Call | _Stop | None = None
            count = 0
            while True:
                if isinstance(item, tuple):
                    writes.append(item)
                elif isinstance(item, _Sync):
                    waiters.append(item)
                else:
                    # reads and stop end the batch so they run after its commit
                    tail = item
                    break
                count += 1
                if count >= self.batch_max:
                    break
                try:
                    item = ops.get_nowait()
                except queue.Empty:
                    break

            failures = self._commit(conn, writes) if writes else []
            if writes:
                # every write of the batch left the queue, stored or refused
                self._applied(sum(w[2] for w in writes))
            # failures of writes that belong to no message or session: sync() raises them
            error: BaseException | None = next(
                (exc for write, exc in failures if write[3] is None), None
            )
            if failures:
                # before the waiters are resolved: a waiter asks write_failed() at once
                self._report(failures)
            if waiters:
                if error is None and self._unreported is not None:
                    error = self._unreported
                self._unreported = None
                self._resolve(waiters, error)
            elif error is not None and self._unreported is None:
                self._unreported = error

            if isinstance(tail, _Call):
                try:
                    result = tail.fn(conn)
                except BaseException as exc:
                    tail.future.set_exception(exc)
                else:
                    tail.future.set_result(result)
            elif isinstance(tail, _Stop):
                return tail

    def _commit(
        self, conn: sqlite3.Connection, writes: list[_Write]
    ) -> list[tuple[_Write, BaseException]]:
        """Apply one batch in one transaction; return the writes that could not be stored
        (with why), [] when all were."""
        began = time.perf_counter()
        try:
            # IMMEDIATE: take the write lock up front, so a lock problem shows here and not
            # halfway through the batch
            conn.execute("BEGIN IMMEDIATE")
            for op, params, _size, _subject in writes:
                if isinstance(op, str):
                    conn.execute(op, params)
                else:
                    op(conn, params)
            conn.execute("COMMIT")
        except Exception as exc:
            self.failed_batches += 1
            logger.warning(
                "sqlite engine: batch of %d writes failed (%s); retrying one write at a time",
                len(writes),
                type(exc).__name__,
            )
            self._rollback(conn)
            return self._commit_one_by_one(conn, writes)
        self.commit_seconds.observe(time.perf_counter() - began)
        self.commits += 1
        return []

    def _commit_one_by_one(
        self, conn: sqlite3.Connection, writes: list[_Write]
    ) -> list[tuple[_Write, BaseException]]:
        """The batch again, each write inside its own savepoint: a write that fails is
        rolled back alone and the rest commit. When the transaction itself fails (BEGIN,
        COMMIT, or an error after which SQLite rolled everything back, such as a full
        disk), nothing of the batch is stored and every write is reported."""
        failures: list[tuple[_Write, BaseException]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for write in writes:
                op, params, _size, subject = write
                conn.execute("SAVEPOINT one_write")
                try:
                    if isinstance(op, str):
                        conn.execute(op, params)
                    else:
                        op(conn, params)
                except Exception as err:
                    conn.execute("ROLLBACK TO one_write")
                    failures.append((write, err))
                    if subject is not None and subject[0] == "log_append":
                        # the id was issued (readers may have seen it): remember the hole
                        conn.execute(_SQL_LOG_HOLE, (_topic_key(params[1]), params[0]))
                conn.execute("RELEASE one_write")
            conn.execute("COMMIT")
        except Exception as exc:
            self._rollback(conn)
            self.failed_writes += len(writes)
            logger.error(
                "sqlite engine: batch of %d writes rolled back", len(writes), exc_info=True
            )
            return [(write, exc) for write in writes]
        self.commits += 1
        if failures:
            self.failed_writes += len(failures)
            for write, problem in failures:
                # the operation and the error class only: the values are clients' data
                logger.error(
                    "sqlite engine: %s could not be stored (%s); %d other writes of its batch were",
                    write[3][0] if write[3] is not None else "a write",
                    type(problem).__name__,
                    len(writes) - len(failures),
                )
        return failures

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                logger.exception("sqlite engine: rollback failed")

    def _report(self, failures: list[tuple[_Write, BaseException]]) -> None:
        """Hand the failed writes to the event loop (`_record_failures`)."""
        loop = self._loop
        if loop is None:
            return
        reports = [
            WriteFailure(subject[0], subject[1], subject[2], type(exc).__name__)
            for (_, _, _, subject), exc in failures
            if subject is not None
        ]
        if not reports:
            return
        try:
            loop.call_soon_threadsafe(self._record_failures, reports)
        except RuntimeError:
            logger.debug("sqlite engine: event loop closed; failure reports dropped")

    @staticmethod
    def _resolve(waiters: list[_Sync], error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for waiter in waiters:
            by_loop.setdefault(waiter.loop, []).append(waiter.future)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, futures, error)
            except RuntimeError:
                # the loop is closed: nobody can be waiting on these futures any more
                logger.debug("sqlite engine: sync waiter's event loop is closed")


def _check_state(state: str) -> None:
    # Checked at the call site: a bad value must not roll back a batch of other writes.
    if state not in _STATES:
        raise ValueError(f"invalid queue state {state!r}")
