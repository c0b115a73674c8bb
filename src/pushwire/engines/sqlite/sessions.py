"""The SQLite engine's sessions: session rows, subscriptions, the per-session message
queue (bodies stored once per uid in `messages`, collected by triggers with their last
reference) and the inbound QoS 2 packet ids."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any, Final

from pushwire.core.message import MESSAGE_OVERHEAD, Message, bump_uid_floor
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.base import QueueState, StoredQueueEntry, StoredSession, StoredSubscription
from pushwire.engines.sqlite.rows import message_from_row as _message_from_row
from pushwire.engines.sqlite.rows import props_text as _props_text
from pushwire.engines.sqlite.schema import max_uid as _max_uid
from pushwire.engines.sqlite.writer import GroupCommitWriter, Params

logger = logging.getLogger(__name__)

_STATES: Final = frozenset({"queued", "sent", "released"})

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
_SQL_SESSION_DELETE: Final = (
    "DELETE FROM sessions WHERE client_id = ?",
    "DELETE FROM subscriptions WHERE client_id = ?",
    "DELETE FROM queue WHERE client_id = ?",  # the delete trigger collects the bodies
    "DELETE FROM inbound_qos2 WHERE client_id = ?",
)


def _w_queue_put(conn: sqlite3.Connection, params: tuple[Params, Params]) -> None:
    # body first: the upsert's trigger must see the new uid already referenced
    conn.execute(_SQL_MESSAGE_PUT, params[0])
    conn.execute(_SQL_QUEUE_PUT, params[1])


def _w_session_delete(conn: sqlite3.Connection, params: Params) -> None:
    for sql in _SQL_SESSION_DELETE:
        conn.execute(sql, params)


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


class SessionStore(GroupCommitWriter):
    """Mixin of the engine: the session half of the engine protocol (engines/base.py)."""

    # uid -> serialized properties of the last queued message: fan-out queues the same
    # message for many sessions in a row, and only its first queue_put stores a body.
    _props_cache: tuple[int, str | None]

    async def load_sessions(self, queue_window: int = 0) -> list[StoredSession]:
        sessions, max_uid = await self._call(lambda conn: _read_sessions(conn, queue_window))
        bump_uid_floor(max_uid)
        return sessions

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
            entry.wire_id,
            entry.state,
        )
        self._write(_w_queue_put, (body, row), ("queue_put", m, client_id), len(m.payload))

    def queue_update(
        self, client_id: str, seq: int, wire_id: int | None, state: QueueState
    ) -> None:
        _check_state(state)
        self._write(
            _SQL_QUEUE_UPDATE,
            (wire_id, state, client_id, seq),
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


def _check_state(state: str) -> None:
    # Checked at the call site: a bad value must not roll back a batch of other writes.
    if state not in _STATES:
        raise ValueError(f"invalid queue state {state!r}")
