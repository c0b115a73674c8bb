"""Users, tokens and ACLs shared by every node through Redis (engines/redis/auth_store.py).

Two `AuthService`s, each on its own `RedisAuthStore` (its own connections), stand for two
nodes on one private redis-server. Node B's generation poll is set to a minute, so what
reaches it quicker than that came through the change notification (pub/sub).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers.redis import RedisServer
from pushwire.core.acl import AclRule
from pushwire.core.auth import AuthService
from pushwire.core.auth_settings import AuthSettings
from pushwire.core.passwords import Passwords
from pushwire.engines.auth_store import Conflict, NotFound, StoredToken, StoredUser
from pushwire.engines.redis.auth_store import RedisAuthStore

SLOW_POLL = 60.0  # node B would notice by polling only after this long
DEADLINE = 10.0  # generous for a loaded box; the notification takes milliseconds


def cheap_passwords() -> Passwords:
    return Passwords(time_cost=1, memory_cost_kib=8, parallelism=1)


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[tuple[AuthService, AuthService]]:
    a = AuthService(RedisAuthStore(redis_server.url), AuthSettings(), passwords=cheap_passwords())
    b = AuthService(
        RedisAuthStore(redis_server.url),
        AuthSettings(watch_interval=SLOW_POLL),
        passwords=cheap_passwords(),
    )
    await a.start()
    await b.start()
    yield a, b
    await b.stop()
    await a.stop()


async def wait_for(cond: object, what: str) -> None:
    assert callable(cond)
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_token_revoked_on_one_node_is_refused_on_the_other(
    nodes: tuple[AuthService, AuthService],
) -> None:
    a, b = nodes
    await a.add_user("alice", "pw-alice")
    new = await a.create_token("alice")
    # node B learns of the user and token through the notification, not its own write
    await wait_for(lambda: new.info.id in b._snapshot.tokens, "node B to see the new token")
    assert (await b.authenticate_token(new.token, "127.0.0.1")).ok

    revoked_on_b: list[str] = []
    b.on_revoked(revoked_on_b.append)
    await a.revoke_token(new.info.id)
    await wait_for(lambda: revoked_on_b == [new.info.id], "node B to report the revocation")
    refused = await b.authenticate_token(new.token, "127.0.0.1")
    assert not refused.ok


async def test_user_removal_and_rules_reach_the_other_node(
    nodes: tuple[AuthService, AuthService],
) -> None:
    a, b = nodes
    await a.add_user("bob", "pw-bob")
    await wait_for(lambda: "bob" in b._snapshot.users, "node B to see bob")
    assert (await b.authenticate_password("bob", "pw-bob", "127.0.0.1")).ok

    rule = await a.add_rule(AclRule("user", "bob", "deny", "write", "secret/#"))
    await wait_for(lambda: rule in b._snapshot.rules, "node B to load the rule")

    gone: list[str] = []
    b.on_user_removed(gone.append)
    await a.remove_user("bob")
    await wait_for(lambda: gone == ["bob"], "node B to report bob removed")
    assert not (await b.authenticate_password("bob", "pw-bob", "127.0.0.1")).ok


def test_store_checks_hold_across_nodes(redis_server: RedisServer) -> None:
    """Conflicts and lookups are decided in Redis, so two nodes cannot both add one thing."""
    one, two = RedisAuthStore(redis_server.url), RedisAuthStore(redis_server.url)
    one.open()
    two.open()
    try:
        user = StoredUser("carol", "hash", ("ops",), 1.0, "scram-v")
        one.add_user(user)
        with pytest.raises(Conflict):
            two.add_user(user)
        assert two.get_user("carol") == user
        with pytest.raises(NotFound):
            two.add_token(StoredToken("t1", "nobody", "h", 1.0))
        token = StoredToken("t1", "carol", "h", 1.0, expires=9.0, scope=("read:a/#",), name="n")
        one.add_token(token)
        two.touch_token("t1", 5.0)
        revoked = two.revoke_token("t1", 6.0)
        assert revoked.revoked == 6.0 and revoked.last_used == 5.0
        # a late touch cannot write the token back unrevoked
        one.touch_token("t1", 7.0)
        assert one.get_token("t1") == StoredToken(
            "t1", "carol", "h", 1.0, 9.0, ("read:a/#",), "n", last_used=7.0, revoked=6.0
        )
        rule = AclRule("role", "ops", "allow", "readwrite", "ops/#")
        stored = one.add_rule(rule)
        with pytest.raises(Conflict):
            two.add_rule(rule)
        assert two.list_rules() == [stored]
        gen = two.generation()
        assert one.remove_user("carol") == ["t1"]
        assert two.generation() > gen
        assert two.snapshot().tokens == {} and two.list_users() == []
        assert two.remove_rule(stored.id or 0) == stored
        with pytest.raises(NotFound):
            one.remove_rule(stored.id or 0)
    finally:
        one.close()
        two.close()


async def test_admin_cli_edits_the_users_every_node_reads(
    nodes: tuple[AuthService, AuthService], redis_server: RedisServer, tmp_path: Path
) -> None:
    """`pushwire user/token` with PUSHWIRE_ENGINE=redis writes to Redis, not to a SQLite
    file no node reads; the nodes hear of it through the change notice."""
    a, b = nodes
    env = {**os.environ, "PUSHWIRE_ENGINE": "redis", "PUSHWIRE_REDIS_URL": redis_server.url}
    argv = [sys.executable, "-m", "pushwire.admin_cli", "user", "add", "erin"]
    done = await asyncio.to_thread(
        subprocess.run,
        [*argv, "--password-stdin", "--data-dir", str(tmp_path / "d")],
        input="pw-erin\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    await wait_for(lambda: "erin" in a._snapshot.users, "node A to see erin")
    await wait_for(lambda: "erin" in b._snapshot.users, "node B to see erin")
    assert not (tmp_path / "d").exists()  # no SQLite store was made on the side
