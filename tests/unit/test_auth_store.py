from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushwire.core.acl import AclRule
from pushwire.core.message import Message
from pushwire.engines.auth_store import (
    AuthStore,
    Conflict,
    MemoryAuthStore,
    NotFound,
    SQLiteAuthStore,
    StoredToken,
    StoredUser,
    make_auth_store,
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuthStore]:
    s: AuthStore
    s = MemoryAuthStore() if request.param == "memory" else SQLiteAuthStore(tmp_path / "p.db")
    s.open()
    yield s
    s.close()


def user(name: str, roles: tuple[str, ...] = ()) -> StoredUser:
    return StoredUser(name, "$argon2id$fake", roles, 1.0)


def token(token_id: str, username: str, **kw: object) -> StoredToken:
    return StoredToken(token_id, username, "ab" * 32, 2.0, **kw)  # type: ignore[arg-type]


def test_users(store: AuthStore) -> None:
    g0 = store.generation()
    store.add_user(user("bob", ("admin", "ops")))
    assert store.generation() > g0
    with pytest.raises(Conflict):
        store.add_user(user("bob"))
    assert store.get_user("bob") == user("bob", ("admin", "ops"))
    assert store.get_user("nobody") is None
    updated = store.update_user("bob", password_hash="$new", roles=("ops",))
    assert updated.password_hash == "$new" and updated.roles == ("ops",)
    assert store.get_user("bob") == updated
    with pytest.raises(NotFound):
        store.update_user("nobody", roles=())
    store.add_user(user("alice"))
    assert [u.username for u in store.list_users()] == ["alice", "bob"]


def test_tokens(store: AuthStore) -> None:
    with pytest.raises(NotFound):
        store.add_token(token("t1", "bob"))  # no such user
    store.add_user(user("bob"))
    store.add_user(user("eve"))
    store.add_token(token("t1", "bob", scope=("read:a/#",), name="laptop", expires=99.0))
    store.add_token(token("t2", "eve"))
    with pytest.raises(Conflict):
        store.add_token(token("t1", "bob"))
    got = store.get_token("t1")
    assert got is not None and got.scope == ("read:a/#",) and got.name == "laptop"
    assert got.expires == 99.0 and got.revoked is None
    assert [t.id for t in store.list_tokens()] == ["t1", "t2"]
    assert [t.id for t in store.list_tokens("eve")] == ["t2"]

    g = store.generation()
    store.touch_token("t1", 50.0)
    assert store.generation() == g  # bookkeeping does not count as a change
    assert store.get_token("t1").last_used == 50.0  # type: ignore[union-attr]

    revoked = store.revoke_token("t1", 60.0)
    assert revoked.revoked == 60.0
    assert store.generation() > g
    g = store.generation()
    assert store.revoke_token("t1", 70.0).revoked == 60.0  # idempotent
    with pytest.raises(NotFound):
        store.revoke_token("nope", 1.0)

    assert store.remove_user("eve") == ["t2"]
    assert store.get_token("t2") is None
    assert store.generation() > g
    with pytest.raises(NotFound):
        store.remove_user("eve")


def test_rules(store: AuthStore) -> None:
    r1 = store.add_rule(AclRule("user", "bob", "allow", "read", "a/#"))
    r2 = store.add_rule(AclRule("anonymous", None, "deny", "write", "#"))
    assert r1.id is not None and r2.id is not None and r2.id > r1.id
    with pytest.raises(Conflict):
        store.add_rule(AclRule("anonymous", None, "deny", "write", "#"))
    assert store.list_rules() == [r1, r2]
    assert store.remove_rule(r1.id) == r1
    with pytest.raises(NotFound):
        store.remove_rule(r1.id)
    r3 = store.add_rule(AclRule("user", "bob", "allow", "read", "a/#"))
    assert r3.id is not None and r3.id > r2.id  # ids are never reused
    snap = store.snapshot()
    assert snap.rules == (r2, r3)
    assert snap.generation == store.generation()


def test_snapshot(store: AuthStore) -> None:
    store.add_user(user("bob"))
    store.add_token(token("t1", "bob"))
    snap = store.snapshot()
    assert set(snap.users) == {"bob"} and set(snap.tokens) == {"t1"}
    store.add_user(user("eve"))
    assert "eve" not in snap.users  # a snapshot is a copy


def test_two_sqlite_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    a = SQLiteAuthStore.in_data_dir(tmp_path)
    b = SQLiteAuthStore.in_data_dir(tmp_path)
    a.open()
    b.open()
    try:
        g = b.generation()
        a.add_user(user("bob"))
        assert b.generation() != g
        assert b.get_user("bob") is not None
        rule = b.add_rule(AclRule("all", None, "allow", "read", "#"))
        assert a.snapshot().rules == (rule,)
    finally:
        a.close()
        b.close()


async def test_sqlite_store_coexists_with_the_main_engine(tmp_path: Path) -> None:
    from pushwire.engines.sqlite import SQLiteEngine

    path = tmp_path / "pushwire.db"
    auth = SQLiteAuthStore(path)
    auth.open()
    engine = SQLiteEngine(path)
    await engine.open()
    try:
        auth.add_user(user("bob"))
        engine.retained_put(Message(topic="a/b", payload=b"x", retain=True))
        await engine.sync()
        g = auth.generation()
        engine.retained_put(Message(topic="a/c", payload=b"y", retain=True))
        await engine.sync()
        assert auth.generation() == g  # the engine's writes are not auth changes
        assert len(await engine.load_retained()) == 2
        assert auth.get_user("bob") is not None
    finally:
        await engine.close()
        auth.close()
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"auth_users", "auth_tokens", "auth_acl", "auth_meta", "retained"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_sqlite_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    store = SQLiteAuthStore(tmp_path / "p.db")
    store.open()
    store.close()
    conn = sqlite3.connect(tmp_path / "p.db")
    conn.execute("UPDATE auth_meta SET value = 99 WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        SQLiteAuthStore(tmp_path / "p.db").open()


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = SQLiteAuthStore(tmp_path / "p.db")
    with pytest.raises(RuntimeError):
        store.generation()


def test_make_auth_store(tmp_path: Path) -> None:
    assert isinstance(make_auth_store(memory=True), MemoryAuthStore)
    s = make_auth_store(memory=False, data_dir=tmp_path)
    assert isinstance(s, SQLiteAuthStore) and s.path == tmp_path / "pushwire.db"
    with pytest.raises(ValueError):
        make_auth_store(memory=False)


def test_scram_verifier_is_stored_and_replaced_with_the_password(store: AuthStore) -> None:
    store.add_user(StoredUser("carol", "$argon2id$old", (), 1.0, "SCRAM-SHA-256$old"))
    assert store.get_user("carol") == StoredUser(
        "carol", "$argon2id$old", (), 1.0, "SCRAM-SHA-256$old"
    )
    assert store.update_user("carol", roles=("ops",)).scram == "SCRAM-SHA-256$old"
    updated = store.update_user("carol", password_hash="$argon2id$new", scram="SCRAM-SHA-256$new")
    assert updated.scram == "SCRAM-SHA-256$new"
    # a new hash without a verifier removes the old one: the old password must not live on
    assert store.update_user("carol", password_hash="$argon2id$newer").scram is None
    assert store.snapshot().users["carol"].scram is None


_SCHEMA_1_USERS = """
CREATE TABLE auth_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO auth_meta VALUES ('schema', 1), ('generation', 3);
CREATE TABLE auth_users (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, roles TEXT NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO auth_users VALUES ('old', '$argon2id$before', '["ops"]', 5.0);
"""


def test_schema_1_file_gains_the_scram_column(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "p.db")
    conn.executescript(_SCHEMA_1_USERS)
    conn.close()
    store = SQLiteAuthStore(tmp_path / "p.db")
    store.open()
    try:
        assert store.get_user("old") == StoredUser("old", "$argon2id$before", ("ops",), 5.0, None)
        store.update_user("old", password_hash="$argon2id$after", scram="SCRAM-SHA-256$x")
        assert store.get_user("old") == StoredUser(
            "old", "$argon2id$after", ("ops",), 5.0, "SCRAM-SHA-256$x"
        )
    finally:
        store.close()
    again = SQLiteAuthStore(tmp_path / "p.db")  # a second open finds it migrated
    again.open()
    again.close()
    check = sqlite3.connect(tmp_path / "p.db")
    assert check.execute("SELECT value FROM auth_meta WHERE key = 'schema'").fetchone()[0] == 2
    check.close()
