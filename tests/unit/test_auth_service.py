from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pushwire.core.acl import AclError, AclRule
from pushwire.core.auth import AuthService
from pushwire.core.auth_input import parse_duration
from pushwire.core.auth_settings import AuthSettings
from pushwire.core.identity import Identity
from pushwire.core.loopback import is_loopback
from pushwire.core.passwords import Passwords
from pushwire.core.scope import parse_scope
from pushwire.core.scram import ScramClient, ScramServer, parse_client_first
from pushwire.core.tokens import parse_token
from pushwire.engines.auth_store import MemoryAuthStore, SQLiteAuthStore
from pushwire.model import NotFound


class CountingPasswords(Passwords):
    def __init__(self, **kw: int) -> None:
        super().__init__(**({"time_cost": 1, "memory_cost_kib": 8, "parallelism": 1} | kw))
        self.verifications = 0

    def verify(self, hashed: str, password: str | bytes) -> bool:
        self.verifications += 1
        return super().verify(hashed, password)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_service(
    store: MemoryAuthStore | SQLiteAuthStore | None = None, **settings: object
) -> tuple[AuthService, CountingPasswords, Clock]:
    passwords = CountingPasswords()
    clock = Clock()
    service = AuthService(
        store or MemoryAuthStore(),
        AuthSettings(**settings),  # type: ignore[arg-type]
        passwords=passwords,
        clock=clock,
        monotonic=clock,
    )
    return service, passwords, clock


@pytest.fixture
async def svc() -> AsyncIterator[tuple[AuthService, CountingPasswords, Clock]]:
    service, passwords, clock = make_service()
    await service.start()
    yield service, passwords, clock
    await service.stop()


# -- passwords ---------------------------------------------------------------------------------


async def test_password_login(svc: tuple[AuthService, CountingPasswords, Clock]) -> None:
    service, _, _ = svc
    await service.add_user("alice", "s3cret", ["admin", "ops"])
    ok = await service.authenticate_password("alice", b"s3cret", "10.0.0.1", "c1")
    assert ok.ok and ok.identity == Identity("alice", frozenset({"admin", "ops"}))
    assert ok.identity.is_admin
    for user, password in [("alice", b"wrong"), ("nobody", b"s3cret"), ("alice", b"")]:
        bad = await service.authenticate_password(user, password, "10.0.0.1")
        assert bad.reason == "bad_credentials" and bad.identity is None
        assert "s3cret" not in bad.message and "wrong" not in bad.message
    # a username without any password is a failed login, not anonymous
    assert (await service.authenticate_password("alice", None, "10.0.0.1")).reason == (
        "bad_credentials"
    )


async def test_unknown_user_costs_a_verification(
    svc: tuple[AuthService, CountingPasswords, Clock],
) -> None:
    service, passwords, _ = svc
    before = passwords.verifications
    await service.authenticate_password("ghost", b"x", "10.0.0.1")
    assert passwords.verifications == before + 1  # the dummy check


async def test_verified_credentials_are_cached_until_the_password_changes(
    svc: tuple[AuthService, CountingPasswords, Clock],
) -> None:
    service, passwords, clock = svc
    await service.add_user("alice", "one")
    assert (await service.authenticate_password("alice", b"one", "::1")).ok
    n = passwords.verifications
    assert (await service.authenticate_password("alice", b"one", "::1")).ok
    assert passwords.verifications == n  # no argon2 the second time
    assert not (await service.authenticate_password("alice", b"two", "::1")).ok
    await service.set_password("alice", "two")
    assert not (await service.authenticate_password("alice", b"one", "::1")).ok
    assert (await service.authenticate_password("alice", b"two", "::1")).ok
    n = passwords.verifications
    clock.now += service.settings.credential_cache_ttl + 1
    assert (await service.authenticate_password("alice", b"two", "::1")).ok
    assert passwords.verifications == n + 1  # expired from the cache


async def test_outdated_hash_is_upgraded_after_login() -> None:
    store = MemoryAuthStore()
    weak, _, _ = make_service(store)
    await weak.start()
    await weak.add_user("alice", "pw")
    await weak.stop()
    old_hash = store.get_user("alice").password_hash  # type: ignore[union-attr]
    strong = AuthService(store, passwords=CountingPasswords(time_cost=2))
    await strong.start()
    assert (await strong.authenticate_password("alice", "pw", "::1")).ok
    await strong.stop()  # waits for the background rehash
    new_hash = store.get_user("alice").password_hash  # type: ignore[union-attr]
    assert new_hash != old_hash and "t=2" in new_hash
    assert not strong.passwords.needs_rehash(new_hash)


# -- tokens ------------------------------------------------------------------------------------


async def test_token_login_everywhere(svc: tuple[AuthService, CountingPasswords, Clock]) -> None:
    service, _, _ = svc
    await service.add_user("alice", "pw", ["ops"])
    await service.add_user("bob", "pw")
    new = await service.create_token("alice", name="laptop")
    assert new.token.startswith(f"pw_{new.info.id}_")
    assert parse_token(new.token) == new.info.id
    expected = Identity("alice", frozenset({"ops"}), new.info.id, ())

    bearer = await service.authenticate_token(new.token, "10.0.0.1")
    assert bearer.ok and bearer.identity == expected
    # as the MQTT password: no username, or the token's own user
    for username in (None, "", "alice"):
        r = await service.authenticate_password(username, new.token.encode(), "10.0.0.1")
        assert r.ok and r.identity == expected
    wrong_user = await service.authenticate_password("bob", new.token.encode(), "10.0.0.1")
    assert wrong_user.reason == "bad_credentials"
    tampered = new.token[:-2] + ("AA" if not new.token.endswith("AA") else "BB")
    assert not (await service.authenticate_token(tampered, "10.0.0.2")).ok
    assert not (await service.authenticate_token("pw_nothing", "10.0.0.2")).ok
    assert not (await service.authenticate_token("", "10.0.0.2")).ok
    assert not (await service.authenticate_password(None, b"not-a-token", "10.0.0.2")).ok
    tokens = await service.list_tokens("alice")
    assert [t.id for t in tokens] == [new.info.id] and tokens[0].last_used is not None


async def test_token_expiry_and_revocation(
    svc: tuple[AuthService, CountingPasswords, Clock],
) -> None:
    service, _, clock = svc
    revoked: list[str] = []
    service.on_revoked(revoked.append)
    await service.add_user("alice", "pw")
    short = await service.create_token("alice", expires_in=parse_duration("1h"))
    other = await service.create_token("alice")
    assert (await service.authenticate_token(short.token, "::1")).ok
    clock.now += 3601
    assert not (await service.authenticate_token(short.token, "::1")).ok
    assert revoked == []
    await service.refresh()  # what the watch loop does every second
    assert revoked == [short.info.id]
    await service.refresh()
    assert revoked == [short.info.id]  # reported once

    await service.revoke_token(other.info.id)
    assert revoked == [short.info.id, other.info.id]  # at once for admin API changes
    r = await service.authenticate_token(other.token, "::1")
    assert r.reason == "bad_credentials" and r.message == "invalid or expired token"
    listed = {t.id: t.status(clock.now) for t in await service.list_tokens()}
    assert listed == {short.info.id: "expired", other.info.id: "revoked"}


async def test_removing_a_user_reports_user_and_tokens(
    svc: tuple[AuthService, CountingPasswords, Clock],
) -> None:
    service, _, _ = svc
    revoked: list[str] = []
    removed: list[str] = []
    service.on_revoked(revoked.append)
    service.on_user_removed(removed.append)
    await service.add_user("alice", "pw")
    t = await service.create_token("alice")
    assert await service.remove_user("alice") == [t.info.id]
    assert removed == ["alice"] and revoked == [t.info.id]
    assert not (await service.authenticate_token(t.token, "::1")).ok
    with pytest.raises(NotFound):
        await service.remove_user("alice")


async def test_changes_made_by_another_process_reach_the_watch_loop(tmp_path: Path) -> None:
    """The CLI is a second store on the same database file: its changes must reach a running
    service through the watch loop alone."""
    service, _, _ = make_service(SQLiteAuthStore.in_data_dir(tmp_path), watch_interval=0.02)
    revoked: asyncio.Queue[str] = asyncio.Queue()
    removed: asyncio.Queue[str] = asyncio.Queue()
    service.on_revoked(revoked.put_nowait)
    service.on_user_removed(removed.put_nowait)
    await service.start()
    cli = SQLiteAuthStore.in_data_dir(tmp_path)
    cli.open()
    try:
        await service.add_user("alice", "pw")
        await service.add_user("bob", "pw")
        t1 = await service.create_token("alice")
        t2 = await service.create_token("bob")
        assert (await service.authenticate_token(t1.token, "::1")).ok

        cli.revoke_token(t1.info.id, 1.0)
        assert await asyncio.wait_for(revoked.get(), 10) == t1.info.id
        assert not (await service.authenticate_token(t1.token, "::1")).ok

        cli.remove_user("bob")
        assert await asyncio.wait_for(removed.get(), 10) == "bob"
        assert await asyncio.wait_for(revoked.get(), 10) == t2.info.id
        assert not (await service.authenticate_password("bob", b"pw", "::1")).ok

        identity = Identity("alice")
        assert service.can_publish(identity, "a/b")  # no rules yet: open
        cli.add_rule(AclRule("user", "alice", "allow", "read", "a/#"))
        for _ in range(1000):
            if not service.can_publish(identity, "a/b"):
                break
            await asyncio.sleep(0.01)
        assert not service.can_publish(identity, "a/b")
        assert service.can_subscribe(identity, "a/#")
    finally:
        cli.close()
        await service.stop()


# -- failed logins -----------------------------------------------------------------------------


async def test_failed_logins_are_rate_limited_per_ip_and_user(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pushwire.auth")
    service, passwords, clock = make_service(login_failures_burst=3, login_failures_window=30)
    await service.start()
    await service.add_user("alice", "Tr0ub4dor")
    await service.add_user("bob", "b0b-secret")
    for _ in range(3):
        r = await service.authenticate_password("alice", b"n0tThat", "203.0.113.9")
        assert r.reason == "bad_credentials"
    n = passwords.verifications
    limited = await service.authenticate_password("alice", b"Tr0ub4dor", "203.0.113.9")
    assert limited.reason == "rate_limited" and limited.identity is None
    assert limited.retry_after is not None and limited.retry_after > 0
    assert passwords.verifications == n  # refused without hashing anything
    # another user behind the same address (a reverse proxy) is not locked out ...
    assert (await service.authenticate_password("bob", b"b0b-secret", "203.0.113.9")).ok
    assert (await service.authenticate_token("pw_x", "203.0.113.9")).reason == "bad_credentials"
    # ... nor is alice from other addresses
    assert (await service.authenticate_password("alice", b"Tr0ub4dor", "203.0.113.10")).ok
    # the bucket refills: one attempt per window / burst seconds
    clock.now += 10
    assert (await service.authenticate_password("alice", b"Tr0ub4dor", "203.0.113.9")).ok
    assert service.stats.logins_rate_limited == 1
    await service.stop()
    assert "203.0.113.9" in caplog.text and "alice" in caplog.text
    assert "Tr0ub4dor" not in caplog.text and "n0tThat" not in caplog.text


async def test_one_address_spraying_many_usernames_is_rate_limited() -> None:
    service, passwords, _ = make_service(
        login_failures_burst=3, login_failures_address_burst=5, login_failures_window=30
    )
    await service.start()
    await service.add_user("alice", "Tr0ub4dor")
    for i in range(5):
        r = await service.authenticate_password(f"user{i}", b"guess", "203.0.113.9")
        assert r.reason == "bad_credentials"
    n = passwords.verifications
    for name, secret in (("user9", b"guess"), ("alice", b"Tr0ub4dor")):
        r = await service.authenticate_password(name, secret, "203.0.113.9")
        assert r.reason == "rate_limited"
    assert passwords.verifications == n  # no argon2 work once the address is over budget
    assert (await service.authenticate_password("alice", b"Tr0ub4dor", "198.51.100.7")).ok
    await service.stop()


async def test_successful_logins_do_not_use_up_the_budget() -> None:
    service, _, _ = make_service(login_failures_burst=2)
    await service.start()
    await service.add_user("alice", "pw")
    for _ in range(10):
        assert (await service.authenticate_password("alice", b"pw", "198.51.100.1")).ok
    await service.stop()


async def test_credentials_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    service, _, _ = make_service()
    await service.start()
    await service.add_user("alice", "hunter2")
    t = await service.create_token("alice")
    await service.revoke_token(t.info.id)
    await service.authenticate_password("alice", b"hunter3", "10.1.1.1")
    await service.authenticate_password("alice", t.token, "10.1.1.1")
    await service.authenticate_password(t.token, b"x", "10.1.1.1")  # token pasted as username
    await service.authenticate_token(t.token, "10.1.1.1")
    await service.authenticate_token(t.token[:-1], "10.1.1.1")
    await service.stop()
    secret = t.token.split("_", 2)[2]
    assert caplog.records
    assert "hunter" not in caplog.text
    assert secret not in caplog.text and secret[:-1] not in caplog.text
    assert t.info.id in caplog.text  # the id is what logs show


# -- anonymous ---------------------------------------------------------------------------------

LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "[::1]", "::1%lo"]
REMOTE = ["10.0.0.1", "192.0.2.7", "2001:db8::1", "::ffff:10.0.0.1", "", "unix", "::"]


def test_is_loopback() -> None:
    assert all(is_loopback(ip) for ip in LOOPBACK)
    assert not any(is_loopback(ip) for ip in REMOTE)


async def test_anonymous_auto_loopback_only_until_users_exist() -> None:
    service, _, _ = make_service()
    await service.start()
    for ip in LOOPBACK:
        r = service.admit_anonymous(ip)
        assert r.ok and r.identity is not None and r.identity.anonymous, ip
        assert (await service.authenticate_password(None, None, ip)).ok
    for ip in REMOTE:
        r = service.admit_anonymous(ip)
        assert r.reason == "not_authorized" and r.identity is None, ip
    await service.add_user("alice", "pw")
    for ip in LOOPBACK + REMOTE:
        assert service.admit_anonymous(ip).reason == "not_authorized", ip
    await service.remove_user("alice")
    assert service.admit_anonymous("127.0.0.1").ok
    await service.stop()


@pytest.mark.parametrize(("mode", "admitted"), [("on", True), ("off", False)])
async def test_anonymous_on_and_off(mode: str, admitted: bool) -> None:
    service, _, _ = make_service(anonymous=mode)
    await service.start()
    for with_users in (False, True):
        if with_users:
            await service.add_user("alice", "pw")
        for ip in LOOPBACK + REMOTE:
            assert service.admit_anonymous(ip).ok is admitted, (ip, with_users)
    await service.stop()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        AuthService(MemoryAuthStore(), AuthSettings(anonymous="maybe"))  # type: ignore[arg-type]
    with pytest.raises(AclError):
        AuthService(MemoryAuthStore(), seed_rules=[{"user": "x", "access": "allow"}])


# -- authorization -----------------------------------------------------------------------------


async def test_token_scope_narrows_the_users_rights(
    svc: tuple[AuthService, CountingPasswords, Clock],
) -> None:
    service, _, _ = svc
    await service.add_user("alice", "pw", ["admin"])
    await service.add_rule(AclRule("user", "alice", "allow", "readwrite", "#"))
    await service.add_rule(AclRule("all", None, "deny", "read", "news/secret/#"))
    full = (await service.authenticate_password("alice", b"pw", "::1")).identity
    assert full is not None and full.is_admin
    scoped_token = await service.create_token(
        "alice", scope=["read:news/#", "write:users/%u/#", "readwrite:%c/#"]
    )
    scoped = (await service.authenticate_token(scoped_token.token, "::1")).identity
    assert scoped is not None and scoped.scope and not scoped.is_admin

    assert service.can_publish(full, "anything")
    assert service.can_subscribe(scoped, "news/#")
    assert service.can_subscribe(scoped, "$share/g/news/+")
    assert not service.can_subscribe(scoped, "#")
    assert not service.can_publish(scoped, "news/x")  # read-only in the scope
    assert service.can_publish(scoped, "users/alice/x")
    assert not service.can_receive(scoped, "users/alice/x")  # write-only in the scope
    assert not service.can_receive(scoped, "news/secret/x")  # the ACL still applies
    assert service.can_publish(scoped, "dev1/x", "dev1")
    assert not service.can_publish(scoped, "dev1/x", "dev2")
    # $SYS: the admin role reads it, but a scope must name it
    assert service.can_subscribe(full, "$SYS/#")
    assert not service.can_subscribe(scoped, "$SYS/#")
    decision = service.check_publish(scoped, "news/x")
    assert not decision.allowed and "scope" in decision.reason

    admin_token = await service.create_token("alice", scope=["admin", "read:$SYS/#"])
    admin_scoped = (await service.authenticate_token(admin_token.token, "::1")).identity
    assert admin_scoped is not None and admin_scoped.is_admin
    assert service.can_subscribe(admin_scoped, "$SYS/#")
    assert not service.can_publish(admin_scoped, "a")
    with pytest.raises(ValueError):
        await service.create_token("alice", scope=["delete:#"])
    with pytest.raises(ValueError):
        await service.create_token("alice", scope=["read:a/#/b"])


async def test_rule_changes_invalidate_cached_decisions(
    svc: tuple[AuthService, CountingPasswords, Clock],
) -> None:
    service, _, _ = svc
    bob = Identity("bob")
    perms = service.permissions(bob, "c1")
    assert perms is service.permissions(bob, "c1")
    assert perms.can_receive("a/b") and perms.can_publish("a/b")  # open: no rules
    rule = await service.add_rule(AclRule("all", None, "allow", "read", "#"))
    assert perms.can_receive("a/b") and not perms.can_publish("a/b")
    deny = await service.add_rule(AclRule("user", "bob", "deny", "read", "a/#"))
    assert not perms.can_receive("a/b")
    assert perms.can_subscribe("#")  # the narrower deny is enforced at delivery
    assert not perms.can_subscribe("a/+")
    assert service.check_receive(bob, "a/b").rule_id == deny.id
    await service.remove_rule(deny.id)  # type: ignore[arg-type]
    assert perms.can_receive("a/b")
    await service.remove_rule(rule.id)  # type: ignore[arg-type]
    assert perms.can_publish("a/b")  # back to open
    assert [r.id for r in await service.list_rules()] == []


async def test_receive_cache_is_bounded() -> None:
    service, _, _ = make_service(acl_cache_size=8)
    await service.start()
    perms = service.permissions(Identity("bob"))
    for i in range(100):
        assert perms.can_receive(f"t/{i}")
    assert len(perms._recv) <= 8
    await service.stop()


async def test_seeded_rules_are_added_once(tmp_path: Path) -> None:
    seed: list[dict[str, Any]] = [
        {"role": "admin", "access": "allow", "permission": "readwrite", "filter": "#"},
        {"anonymous": True, "access": "allow", "permission": "read", "filter": "public/#"},
        {"all": True, "access": "deny", "permission": "write", "filter": "ro/#"},
    ]
    for _ in range(2):
        service = AuthService(
            SQLiteAuthStore.in_data_dir(tmp_path), seed_rules=seed, passwords=CountingPasswords()
        )
        await service.start()
        rules = await service.list_rules()
        assert [r.key for r in rules] == [AclRule.from_config(e).key for e in seed]
        assert service.can_subscribe(Identity(None), "public/#")
        assert not service.can_subscribe(Identity(None), "other/#")
        await service.stop()


async def test_admin_operations_validate_input(
    svc: tuple[AuthService, CountingPasswords, Clock],
) -> None:
    service, _, _ = svc
    for bad in ["", "a/b", "a+b", "#", "x:y", " x", "$SYS", "pw_abc", "a\nb"]:
        with pytest.raises(ValueError):
            await service.add_user(bad, "pw")
    with pytest.raises(ValueError):
        await service.add_user("ok", "pw", ["bad role"])
    with pytest.raises(ValueError):
        await service.add_user("ok", "")
    with pytest.raises(NotFound):
        await service.create_token("ghost")
    with pytest.raises(NotFound):
        await service.set_password("ghost", "pw")
    info = await service.add_user("ok", "pw", ["ops", "ops", "dev"])
    assert info.roles == ("ops", "dev")
    assert [u.username for u in await service.list_users()] == ["ok"]
    assert (await service.set_roles("ok", ["admin"])).roles == ("admin",)


def test_parse_helpers() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("90") == 90
    assert parse_duration("never") is None
    for bad in ["", "d", "1y", "-1h", "0h"]:
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_scope(["read:a/#", "admin", "read:a/#"]) == ("read:a/#", "admin")
    for bad in ["a/#", "read:", "write:$share/g/a", "all:#"]:
        with pytest.raises(ValueError):
            parse_scope([bad])


async def test_client_certificate_names(svc: tuple[AuthService, CountingPasswords, Clock]) -> None:
    service, _, _ = svc
    await service.add_user("alice", "pw", ["admin"])
    r = service.authenticate_certificate("alice", "10.0.0.1")
    assert r.ok and r.identity == Identity("alice", frozenset({"admin"}))
    r = service.authenticate_certificate("device-7", "10.0.0.1")
    assert r.ok and r.identity == Identity("device-7")
    for bad in ["", "a/b", "+", "$SYS"]:
        assert service.authenticate_certificate(bad, "10.0.0.1").reason == "not_authorized"


# -- SCRAM verifiers (MQTT 5 enhanced authentication) -------------------------------------


def _scram_ok(service: AuthService, username: str, password: str) -> bool:
    """A whole SCRAM exchange against the service's stored verifier."""
    client = ScramClient(username, password)
    start = service.scram_start(username, "192.0.2.1")
    assert start.credentials is not None, start
    server = ScramServer(parse_client_first(client.first()), start.credentials)
    ok, _ = server.final(client.final(server.server_first_message()))
    return service.scram_finish(username, "192.0.2.1", start, ok).ok


async def test_every_way_of_setting_a_password_stores_a_scram_verifier() -> None:
    service, _, _ = make_service(scram_iterations=5000)
    await service.start()
    await service.add_user("api", "one")  # the HTTP admin API's path
    service.admin.add_user("cli", "two")  # the `pushwire user add` path
    await service.refresh()
    assert _scram_ok(service, "api", "one") and _scram_ok(service, "cli", "two")
    assert "$5000:" in (service.snapshot.users["api"].scram or "")
    await service.set_password("api", "three")
    service.admin.set_password("cli", "four")
    await service.refresh()
    assert not _scram_ok(service, "api", "one") and _scram_ok(service, "api", "three")
    assert not _scram_ok(service, "cli", "two") and _scram_ok(service, "cli", "four")
    # a hash given without its verifier (made elsewhere) leaves no stale verifier behind
    service.admin.set_password("cli", None, password_hash=service.passwords.hash("five"))
    await service.refresh()
    assert service.snapshot.users["cli"].scram is None
    assert service.scram_start("cli", "192.0.2.1").no_verifier
    await service.stop()


async def test_rehash_after_login_keeps_the_scram_verifier() -> None:
    store = MemoryAuthStore()
    weak, _, _ = make_service(store)
    await weak.start()
    await weak.add_user("alice", "pw")
    await weak.stop()
    verifier = store.get_user("alice").scram  # type: ignore[union-attr]
    assert verifier is not None
    strong = AuthService(store, passwords=CountingPasswords(time_cost=2))
    await strong.start()
    assert (await strong.authenticate_password("alice", "pw", "::1")).ok
    await strong.stop()  # waits for the background rehash
    user = store.get_user("alice")
    assert user is not None and "t=2" in user.password_hash
    assert user.scram == verifier  # same password: the verifier stays valid


async def test_a_memory_store_change_reaches_the_watch_without_a_poll() -> None:
    """A MemoryAuthStore sees every change (no other process writes it): the watch waits
    for its notice, not for the next `watch_interval` poll (here far away), so a change
    made on the store directly (not through the service) still applies at once."""
    store = MemoryAuthStore()
    service = AuthService(store, AuthSettings(watch_interval=600))
    revoked: asyncio.Queue[str] = asyncio.Queue()
    service.on_revoked(revoked.put_nowait)
    await service.start()
    try:
        await service.add_user("alice", "pw")
        t = await service.create_token("alice")
        store.revoke_token(t.info.id, 1.0)
        assert await asyncio.wait_for(revoked.get(), 10) == t.info.id
        # from another thread too
        t2 = await service.create_token("alice")
        await asyncio.to_thread(store.revoke_token, t2.info.id, 1.0)
        assert await asyncio.wait_for(revoked.get(), 10) == t2.info.id
    finally:
        await service.stop()


async def test_a_token_expiry_wakes_the_watch_of_a_store_that_is_not_polled() -> None:
    """Not polled, the watch still wakes when the next token expires (real clock)."""
    store = MemoryAuthStore()
    service = AuthService(store, AuthSettings(watch_interval=0.05))  # housekeeping: 3 s
    revoked: asyncio.Queue[str] = asyncio.Queue()
    service.on_revoked(revoked.put_nowait)
    await service.start()
    try:
        await service.add_user("alice", "pw")
        t = await service.create_token("alice", expires_in=0.3)
        assert await asyncio.wait_for(revoked.get(), 10) == t.info.id
    finally:
        await service.stop()
