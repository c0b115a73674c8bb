"""Users, tokens and ACL rules in Redis: one set of credentials for every node (engine=redis).

Keys (all under `prefix`, "pw:" by default):

- `auth:gen`     integer, bumped in the same MULTI/EXEC as every change (not by `touch_token`);
- `auth:users`   hash username -> JSON user;
- `auth:tokens`  hash token id -> JSON token (without `last_used`);
- `auth:used`    hash token id -> last use (bookkeeping kept apart, so a `touch_token` racing a
                 revocation can never write the token back unrevoked);
- `auth:rules`   hash rule id -> JSON rule; `auth:rule_id` the id counter (never reused);
- channel `auth:changed`: every change PUBLISHes the new generation in its transaction.

The methods are synchronous (the `AuthStore` protocol; `blocking` is True, so the auth service
runs them on its store thread). A node notices a change made anywhere in two ways: the
service's watch loop reads `auth:gen` (one GET) every `watch_interval`, and, sooner,
`wait_change` returns as soon as the `auth:changed` message arrives, which is how a
revocation on one node reaches every other node well within a second. The poll stays the
backstop for messages missed while the pub/sub connection was down (Redis pub/sub does not
replay). Multi-key checks (a token's user exists, a rule is not a duplicate) run under
WATCH, so two nodes adding the same thing at once cannot both succeed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, cast

import redis

from pushwire.core.acl import AclRule
from pushwire.engines.auth_store import (
    AuthSnapshot,
    Conflict,
    NotFound,
    StoredToken,
    StoredUser,
)
from pushwire.engines.redis.notices import ChangeNotices

DEFAULT_PREFIX = "pw:"


def _user_json(user: StoredUser) -> str:
    return json.dumps(
        {
            "username": user.username,
            "password_hash": user.password_hash,
            "roles": list(user.roles),
            "created": user.created,
            "scram": user.scram,
        }
    )


def _user(raw: str | bytes) -> StoredUser:
    d = json.loads(raw)
    return StoredUser(
        d["username"], d["password_hash"], tuple(d["roles"]), d["created"], d["scram"]
    )


def _token_json(token: StoredToken) -> str:
    return json.dumps(
        {
            "id": token.id,
            "username": token.username,
            "secret_hash": token.secret_hash,
            "created": token.created,
            "expires": token.expires,
            "scope": list(token.scope),
            "name": token.name,
            "revoked": token.revoked,
        }
    )


def _token(raw: str | bytes, last_used: str | bytes | None) -> StoredToken:
    d = json.loads(raw)
    return StoredToken(
        id=d["id"],
        username=d["username"],
        secret_hash=d["secret_hash"],
        created=d["created"],
        expires=d["expires"],
        scope=tuple(d["scope"]),
        name=d["name"],
        last_used=None if last_used is None else float(last_used),
        revoked=d["revoked"],
    )


def _rule_json(rule: AclRule) -> str:
    return json.dumps(
        {
            "id": rule.id,
            "subject_kind": rule.subject_kind,
            "subject": rule.subject,
            "access": rule.access,
            "permission": rule.permission,
            "filter": rule.filter,
        }
    )


def _rule(raw: str | bytes) -> AclRule:
    d = json.loads(raw)
    return AclRule(
        d["subject_kind"], d["subject"], d["access"], d["permission"], d["filter"], d["id"]
    )


class RedisAuthStore:
    """The `AuthStore` protocol on a Redis server shared by every node."""

    blocking = True

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._gen = f"{prefix}auth:gen"
        self._users = f"{prefix}auth:users"
        self._tokens = f"{prefix}auth:tokens"
        self._used = f"{prefix}auth:used"
        self._rules = f"{prefix}auth:rules"
        self._rule_id = f"{prefix}auth:rule_id"
        self.channel = f"{prefix}auth:changed"
        self._client: redis.Redis | None = None
        self._notices = ChangeNotices(url, self.channel, "auth")

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, decode_responses=True)
            self._client.ping()  # a wrong URL is a start-up error, not a first-login error

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _r(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("auth store is not open")
        return self._client

    # -- change notification -------------------------------------------------------------

    async def wait_change(self, timeout: float) -> None:
        """Return when another change was published on `auth:changed`, or after
        `timeout` (engines/redis/notices.py)."""
        await self._notices.wait(timeout)

    async def close_notifications(self) -> None:
        await self._notices.close()

    # -- reads ---------------------------------------------------------------------------

    def generation(self) -> int:
        return int(cast(str | None, self._r().get(self._gen)) or 0)

    def snapshot(self) -> AuthSnapshot:
        pipe = self._r().pipeline(transaction=True)  # one consistent view
        pipe.get(self._gen)
        pipe.hgetall(self._users)
        pipe.hgetall(self._tokens)
        pipe.hgetall(self._used)
        pipe.hgetall(self._rules)
        gen, users, tokens, used, rules = pipe.execute()
        return AuthSnapshot(
            int(gen or 0),
            {name: _user(raw) for name, raw in users.items()},
            {tid: _token(raw, used.get(tid)) for tid, raw in tokens.items()},
            tuple(sorted((_rule(raw) for raw in rules.values()), key=lambda r: r.id or 0)),
        )

    def get_user(self, username: str) -> StoredUser | None:
        raw = cast(str | None, self._r().hget(self._users, username))
        return None if raw is None else _user(raw)

    def list_users(self) -> list[StoredUser]:
        users = cast(dict[str, str], self._r().hgetall(self._users))
        return sorted((_user(raw) for raw in users.values()), key=lambda u: u.username)

    def get_token(self, token_id: str) -> StoredToken | None:
        pipe = self._r().pipeline(transaction=True)
        pipe.hget(self._tokens, token_id)
        pipe.hget(self._used, token_id)
        raw, used = pipe.execute()
        return None if raw is None else _token(raw, used)

    def list_tokens(self, username: str | None = None) -> list[StoredToken]:
        pipe = self._r().pipeline(transaction=True)
        pipe.hgetall(self._tokens)
        pipe.hgetall(self._used)
        tokens, used = pipe.execute()
        found = [_token(raw, used.get(tid)) for tid, raw in tokens.items()]
        found = [t for t in found if username in (None, t.username)]
        return sorted(found, key=lambda t: (t.created, t.id))

    def list_rules(self) -> list[AclRule]:
        rules = cast(dict[str, str], self._r().hgetall(self._rules))
        return sorted((_rule(raw) for raw in rules.values()), key=lambda r: r.id or 0)

    # -- writes --------------------------------------------------------------------------

    def _bump(self, pipe: Any) -> None:
        """Queue the generation bump and its notification in the write's transaction."""
        pipe.incr(self._gen)
        pipe.publish(self.channel, "changed")

    def _watched(self, fn: Any, *keys: str) -> Any:
        """Run `fn(pipe)` under WATCH `keys`, retried when another node wrote them meanwhile."""
        return self._r().transaction(fn, *keys, value_from_callable=True)

    def add_user(self, user: StoredUser) -> None:
        def write(pipe: Any) -> None:
            if pipe.hexists(self._users, user.username):
                raise Conflict(f"user {user.username!r} exists")
            pipe.multi()
            pipe.hset(self._users, user.username, _user_json(user))
            self._bump(pipe)

        self._watched(write, self._users)

    def update_user(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        roles: tuple[str, ...] | None = None,
        scram: str | None = None,
    ) -> StoredUser:
        def write(pipe: Any) -> StoredUser:
            raw = pipe.hget(self._users, username)
            if raw is None:
                raise NotFound(f"no user {username!r}")
            user = _user(raw)
            if password_hash is not None:
                user = replace(user, password_hash=password_hash, scram=scram)
            if roles is not None:
                user = replace(user, roles=tuple(roles))
            pipe.multi()
            pipe.hset(self._users, username, _user_json(user))
            self._bump(pipe)
            return user

        return cast(StoredUser, self._watched(write, self._users))

    def remove_user(self, username: str) -> list[str]:
        def write(pipe: Any) -> list[str]:
            if not pipe.hexists(self._users, username):
                raise NotFound(f"no user {username!r}")
            tokens = pipe.hgetall(self._tokens)
            ids = [tid for tid, raw in tokens.items() if json.loads(raw)["username"] == username]
            pipe.multi()
            pipe.hdel(self._users, username)
            if ids:
                pipe.hdel(self._tokens, *ids)
                pipe.hdel(self._used, *ids)
            self._bump(pipe)
            return ids

        return cast(list[str], self._watched(write, self._users, self._tokens))

    def add_token(self, token: StoredToken) -> None:
        def write(pipe: Any) -> None:
            if not pipe.hexists(self._users, token.username):
                raise NotFound(f"no user {token.username!r}")
            if pipe.hexists(self._tokens, token.id):
                raise Conflict(f"token {token.id!r} exists")
            pipe.multi()
            pipe.hset(self._tokens, token.id, _token_json(token))
            if token.last_used is not None:
                pipe.hset(self._used, token.id, repr(token.last_used))
            self._bump(pipe)

        self._watched(write, self._users, self._tokens)

    def revoke_token(self, token_id: str, when: float) -> StoredToken:
        def write(pipe: Any) -> StoredToken:
            raw = pipe.hget(self._tokens, token_id)
            if raw is None:
                raise NotFound(f"no token {token_id!r}")
            token = _token(raw, pipe.hget(self._used, token_id))
            if token.revoked is not None:
                return token
            token = replace(token, revoked=when)
            pipe.multi()
            pipe.hset(self._tokens, token_id, _token_json(token))
            self._bump(pipe)
            return token

        return cast(StoredToken, self._watched(write, self._tokens))

    def touch_token(self, token_id: str, when: float) -> None:
        # bookkeeping only: no generation bump; a token removed meanwhile leaves no trace
        # because only an existing token's field is set
        script = (
            "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then "
            "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end"
        )
        self._r().eval(script, 2, self._tokens, self._used, token_id, repr(when))

    def add_rule(self, rule: AclRule) -> AclRule:
        def write(pipe: Any) -> AclRule:
            for raw in pipe.hvals(self._rules):
                dup = _rule(raw)
                if dup.key == rule.key:
                    raise Conflict(f"an equal rule exists (id {dup.id}): {rule}")
            # the counter moves outside the transaction: a retried attempt skips an id, which
            # is harmless (ids must be unique and never reused, not dense)
            stored = rule.with_id(int(self._r().incr(self._rule_id)))
            pipe.multi()
            pipe.hset(self._rules, str(stored.id), _rule_json(stored))
            self._bump(pipe)
            return stored

        return cast(AclRule, self._watched(write, self._rules))

    def remove_rule(self, rule_id: int) -> AclRule:
        def write(pipe: Any) -> AclRule:
            raw = pipe.hget(self._rules, str(rule_id))
            if raw is None:
                raise NotFound(f"no acl rule {rule_id}")
            pipe.multi()
            pipe.hdel(self._rules, str(rule_id))
            self._bump(pipe)
            return _rule(raw)

        return cast(AclRule, self._watched(write, self._rules))
