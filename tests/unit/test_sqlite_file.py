"""The shared way the auth and gateway stores open and write their SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pushwire.engines.sqlite_file import open_wal, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', 1);
CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL);
"""


def _open(path: Path, version: int = 1) -> sqlite3.Connection:
    return open_wal(
        path, busy_timeout=1.0, schema=SCHEMA, meta_table="meta", version=version, what="test"
    )


def test_opens_in_wal_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    conn = _open(tmp_path / "sub" / "x.db")  # the folder is created
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("UPDATE meta SET value = 2 WHERE key = 'schema'")
    conn.close()
    with pytest.raises(RuntimeError, match="test schema version 2 is newer"):
        _open(tmp_path / "sub" / "x.db")
    _open(tmp_path / "sub" / "x.db", version=2).close()


def test_write_transaction_commits_together_or_not_at_all(tmp_path: Path) -> None:
    conn = _open(tmp_path / "x.db")
    write_transaction(
        conn, lambda c: c.execute("INSERT INTO t VALUES (1)"), "INSERT INTO t VALUES (2)"
    )

    def fails(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (3)")
        raise ValueError("refused")

    with pytest.raises(ValueError):
        write_transaction(conn, fails, "INSERT INTO t VALUES (4)")
    assert [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")] == [1, 2]
    assert not conn.in_transaction
    conn.close()
