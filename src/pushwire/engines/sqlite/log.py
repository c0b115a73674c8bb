"""The SQLite engine's message log (core/log.py): entries, per-topic eviction marks,
consumer cursors and holes. Its tables are created by `load_log` (schema.LOG_SCHEMA)."""

from __future__ import annotations

import sqlite3
from typing import Final

from pushwire.core.message import MESSAGE_OVERHEAD, Message
from pushwire.engines.base import StoredConsumer, StoredLog, StoredLogEntry
from pushwire.engines.sqlite.rows import message_from_row as _message_from_row
from pushwire.engines.sqlite.rows import props_text as _props_text
from pushwire.engines.sqlite.rows import topic_key as _topic_key
from pushwire.engines.sqlite.schema import LOG_SCHEMA as _LOG_SCHEMA
from pushwire.engines.sqlite.schema import migrate_consumers as _migrate_consumers
from pushwire.engines.sqlite.writer import GroupCommitWriter

_SQL_LOG_APPEND: Final = """
INSERT OR REPLACE INTO log (id, topic, uid, payload, qos, retain, properties, expires_at,
                            created_at, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SQL_LOG_TRIM: Final = "DELETE FROM log WHERE topic = ? AND id <= ?"
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


def _w_log_trim(conn: sqlite3.Connection, params: tuple[str, int, float]) -> None:
    topic, upto, upto_time = params
    conn.execute(_SQL_LOG_HOLES_TRIM, (_topic_key(topic), upto))
    try:
        topic.encode("utf-8")
    except UnicodeEncodeError:
        return  # a topic SQLite cannot hold as text has no other rows (only holes)
    conn.execute(_SQL_LOG_TRIM, (topic, upto))
    conn.execute(_SQL_LOG_EVICTED, (topic, upto, upto_time))


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


class LogStore(GroupCommitWriter):
    """Mixin of the engine: the message log half of the engine protocol (engines/base.py)."""

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
