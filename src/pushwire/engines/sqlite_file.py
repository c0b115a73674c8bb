"""One SQLite file shared by the CLI and a running server: how the small stores open it and
write to it (the auth store, engines/auth_store.py, and the gateway store, gateway/store.py).

Both are written rarely and read by several processes: WAL so readers never block the
writer, `synchronous=FULL` because each write is a promise to a user (a created token, an
accepted push), and a schema version the file may not be newer than.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")


def open_wal(
    path: Path, *, busy_timeout: float, schema: str, meta_table: str, version: int, what: str
) -> sqlite3.Connection:
    """Open (creating) `path` in WAL mode with `schema` applied, refusing a file whose
    `meta_table` says its schema is newer than `version`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{path}: cannot use WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(schema)
        found = conn.execute(f"SELECT value FROM {meta_table} WHERE key = 'schema'").fetchone()[0]
        if found > version:
            raise RuntimeError(
                f"{path}: {what} schema version {found} is newer than this pushwire "
                f"understands ({version})"
            )
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        raise
    return conn


def write_transaction(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], _T], also: str | None = None
) -> _T:
    """Run `fn` (then the statement `also`, if any) in one IMMEDIATE transaction: committed
    together, or rolled back together on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        if also is not None:
            conn.execute(also)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
