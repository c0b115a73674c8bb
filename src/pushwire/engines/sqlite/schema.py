"""The SQLite engine's schema: the tables (and the version they carry), the additive
migrations of older stores, and opening the one connection the writer thread owns."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1

SCHEMA: Final = f"""
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

# -- message log (core/log.py) -------------------------------------------------------------
# Additive: its tables are created by `load_log` (the first thing the log does at start-up),
# so the schema above and its version are untouched.

LOG_SCHEMA: Final = """
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


def add_session_owner(conn: sqlite3.Connection) -> None:
    """Stores from before sessions recorded their owner: add the column (NULL: no owner
    recorded, the next connection takes the session as before). Additive, so the schema
    version stays."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
    if "owner" not in columns:
        conn.execute("ALTER TABLE sessions ADD COLUMN owner TEXT")


def migrate_consumers(conn: sqlite3.Connection) -> None:
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


def max_uid(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT max(coalesce((SELECT max(uid) FROM messages), 0),"
        " coalesce((SELECT max(uid) FROM retained), 0))"
    ).fetchone()
    return int(row[0])


def connect(path: Path, durable: bool) -> sqlite3.Connection:
    """Open `path` for the writer thread: WAL mode, the synchronous level `durable` asks for,
    the schema created or checked (a newer version than this code knows is refused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the sqlite3 module issues no implicit BEGIN/COMMIT; the
    # writer brackets each batch itself.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{path}: cannot use WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        # Only this thread writes; a wait can only come from an outside reader
        # checkpointing or a second process, which should fail loudly, not hang.
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path}: schema version {version} is newer than this pushwire"
                f" understands ({SCHEMA_VERSION})"
            )
        conn.executescript(SCHEMA)
        add_session_owner(conn)
    except BaseException:
        conn.close()
        raise
    return conn
