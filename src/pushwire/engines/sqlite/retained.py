"""The SQLite engine's retained messages: a table keyed by topic holding the whole message
(not a reference into `messages`)."""

from __future__ import annotations

import sqlite3
from typing import Final

from pushwire.core.message import Message, bump_uid_floor
from pushwire.engines.sqlite.rows import message_from_row as _message_from_row
from pushwire.engines.sqlite.rows import props_text as _props_text
from pushwire.engines.sqlite.schema import max_uid as _max_uid
from pushwire.engines.sqlite.writer import GroupCommitWriter

_SQL_RETAINED_PUT: Final = """
INSERT OR REPLACE INTO retained (topic, uid, payload, qos, retain, properties, expires_at,
                                 created_at, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SQL_RETAINED_DELETE: Final = "DELETE FROM retained WHERE topic = ?"


def _read_retained(conn: sqlite3.Connection) -> tuple[list[Message], int]:
    messages = [
        _message_from_row(*row)
        for row in conn.execute(
            "SELECT topic, payload, qos, retain, properties, expires_at, created_at, uid,"
            " origin FROM retained ORDER BY topic"
        )
    ]
    return messages, _max_uid(conn)


class RetainedStore(GroupCommitWriter):
    """Mixin of the engine: the retained half of the engine protocol (engines/base.py)."""

    async def load_retained(self) -> list[Message]:
        messages, max_uid = await self._call(_read_retained)
        bump_uid_floor(max_uid)
        return messages

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
