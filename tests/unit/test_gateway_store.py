"""The gateway stores: the memory and SQLite registries behave alike; the SQLite store
journals pushes and content and a second connection (the CLI) sees changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pushwire.gateway import ids
from pushwire.gateway.admin import GatewayAdmin
from pushwire.gateway.model import Content, Push, WakeHook
from pushwire.gateway.store import (
    Conflict,
    GatewayStore,
    MemoryGatewayStore,
    NotFound,
    SQLiteGatewayStore,
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayStore]:
    s: GatewayStore = (
        MemoryGatewayStore() if request.param == "memory" else SQLiteGatewayStore(tmp_path / "db")
    )
    s.open()
    yield s
    s.close()


def test_registry_operations_bump_the_generation(store: GatewayStore) -> None:
    admin = GatewayAdmin(store, clock=lambda: 1000.0)
    gen0 = store.generation()
    new = admin.create_app("mail")
    assert new.generation == gen0 + 1 == store.generation()
    assert ids.APP_ID_RE.fullmatch(new.app.app_id)
    assert ids.API_KEY_RE.fullmatch(new.api_key)
    assert new.app.key_hash == ids.hash_secret(new.api_key) != new.api_key
    dev = admin.register_device()
    assert ids.DEVICE_ID_RE.fullmatch(dev.device.device_id)
    assert dev.device.secret_hash == ids.hash_secret(dev.secret)
    token, _ = admin.create_token(dev.device.device_id, new.app.app_id)
    assert ids.DEVICE_TOKEN_RE.fullmatch(token.token)
    admin.set_webhooks(new.app.app_id, "http://x/r", WakeHook("http://x/w", "s", 5.0))
    reg = store.registry()
    assert reg.generation == store.generation()
    assert reg.apps[new.app.app_id].wake == WakeHook("http://x/w", "s", 5.0)
    assert reg.tokens[token.token].deleted is None
    _, when = admin.delete_token(token.token)
    assert store.registry().tokens[token.token].deleted == when == 1000.0
    admin.remove_device(dev.device.device_id)
    assert dev.device.device_id not in store.registry().devices
    with pytest.raises(NotFound):
        admin.remove_device(dev.device.device_id)
    with pytest.raises(ValueError):
        admin.set_webhooks(new.app.app_id, "ftp://nope", None)
    with pytest.raises(ValueError):
        admin.create_app("")


def test_keys_are_checked_added_and_revoked(store: GatewayStore) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    admin = GatewayAdmin(store)
    app = admin.create_app("a").app
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    key, _ = admin.add_key(app.app_id, pem, "k1")
    with pytest.raises(Conflict):
        admin.add_key(app.app_id, pem, "k1")
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="P-256"):
        admin.add_key(app.app_id, rsa_pem, "k2")
    with pytest.raises(ValueError):
        admin.add_key(app.app_id, b"not a key", "k3")
    with pytest.raises(ValueError):
        admin.add_key(app.app_id, pem, "bad kid!")
    admin.revoke_key(app.app_id, "k1")
    assert store.registry().keys[(app.app_id, "k1")].revoked is not None
    assert key.kid == "k1"


def _push(n: int, **kw: object) -> Push:
    fields: dict[str, object] = {
        "id": ids.new_push_id(),
        "app_id": "app_x",
        "device_id": "dev_x",
        "token": "pwt_x",
        "priority": 10,
        "push_type": "alert",
        "expiration": 0,
        "collapse_id": None,
        "created": float(n),
        "updated": float(n),
        "seq": n,
        "body": b'{"n": %d}' % n,
    }
    fields.update(kw)
    return Push(**fields)  # type: ignore[arg-type]


def test_sqlite_journal_survives_reopen_in_order(tmp_path: Path) -> None:
    path = tmp_path / "db"
    s = SQLiteGatewayStore(path)
    s.open()
    a, b, c = _push(1), _push(2), _push(3)
    s.apply([c, a, b], [])
    b.state = "delivered"
    b.delivered_at = 5.0
    s.apply([b], [c.id])
    s.put_content(Content("pwc_1", "dev_x", "app_x", "text/plain", b"hi", 1.0, 10.0))
    s.close()
    again = SQLiteGatewayStore(path)
    again.open()
    loaded = again.load_pushes()
    assert [p.id for p in loaded] == [a.id, b.id]
    assert loaded[0].body == a.body and loaded[0].state == "queued"
    assert loaded[1].state == "delivered" and loaded[1].body is None  # final: no body kept
    got = again.get_content("pwc_1")
    assert got is not None and got.data == b"hi"
    assert again.delete_content_before(20.0) == 1
    assert again.get_content("pwc_1") is None
    again.close()


def test_a_second_connection_sees_cli_changes(tmp_path: Path) -> None:
    server_side, cli_side = SQLiteGatewayStore(tmp_path / "db"), SQLiteGatewayStore(tmp_path / "db")
    server_side.open()
    cli_side.open()
    before = server_side.generation()
    app = GatewayAdmin(cli_side).create_app("from-cli").app
    assert server_side.generation() == before + 1
    assert app.app_id in server_side.registry().apps
    server_side.close()
    cli_side.close()
