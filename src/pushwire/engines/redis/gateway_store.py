"""The push gateway's state in Redis: one registry and one set of pushes for every node.

The `GatewayStore` protocol (gateway/store.py) on a Redis server shared by the nodes of an
engine=redis cluster. Keys, under `prefix` ("pw:" by default):

- `gw:gen`            integer, bumped in the MULTI/EXEC of every registry change;
- channel `gw:changed` every registry change PUBLISHes in that transaction a notice naming
                      the new generation and the records it touched (gateway_notices.py), so
                      a node applies just that change (`wait_changes`, `records`); a gap in
                      generations or a new subscription makes it reload everything;
- `gw:apps`, `gw:keys` ("app\\0kid"), `gw:devices`, `gw:tokens`  hashes of JSON records;
- `gw:seen`           hash device -> last seen (bookkeeping kept apart: no generation bump,
                      and a `touch_devices` racing a removal cannot bring a device back);
- `gw:push`           hash push id -> JSON push (every state; a final one until forgotten);
- `gw:pending:<dev>`  set of the device's push ids that are not final;
- `gw:content:<id>`   hash {meta, data} of stored content, expiring at its own time.

Which node holds a device's pushes in memory (its "home") and the per-node inboxes that
carry pushes accepted elsewhere are in gateway_homes.py; both modules share this client.

The methods are synchronous (the gateway runs them on its store thread); Redis is run with
`appendfsync always` (docs/cluster.md), so a transaction that returned is on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, replace
from typing import Any, Final, cast

import redis

from pushwire.engines.redis.gateway_notices import RegistryChange, RegistryNotices, encode_change
from pushwire.gateway.model import (
    App,
    AppKey,
    Content,
    Device,
    DeviceToken,
    Push,
    PushState,
    Registry,
    WakeHook,
)
from pushwire.gateway.store import Conflict, NotFound

DEFAULT_PREFIX: Final = "pw:"


# -- encoding ----------------------------------------------------------------------------


def _app_json(app: App) -> str:
    wake = None if app.wake is None else app.wake.to_dict()
    return json.dumps(
        {
            "app_id": app.app_id,
            "name": app.name,
            "key_hash": app.key_hash,
            "created": app.created,
            "receipt_url": app.receipt_url,
            "wake": wake,
        }
    )


def _app(raw: bytes | str) -> App:
    d = json.loads(raw)
    w = d["wake"]
    wake = None if w is None else WakeHook(w["url"], w["secret"], float(w["after_seconds"]))
    return App(d["app_id"], d["name"], d["key_hash"], d["created"], d["receipt_url"], wake)


def _key(raw: bytes | str) -> AppKey:
    return AppKey(**json.loads(raw))


def _device(raw: bytes | str, seen: bytes | None) -> Device:
    d = json.loads(raw)
    return Device(
        d["device_id"], d["secret_hash"], d["created"], None if seen is None else float(seen)
    )


def _token(raw: bytes | str) -> DeviceToken:
    return DeviceToken(**json.loads(raw))


def push_json(p: Push) -> str:
    d = asdict(p)
    d.pop("uid")  # a hub message uid means something on one node only
    # the device message is kept while the push is not final; latin-1 maps bytes 1:1
    d["body"] = None if p.final or p.body is None else p.body.decode("latin-1")
    return json.dumps(d)


def push_from_json(raw: bytes | str) -> Push:
    d = json.loads(raw)
    body = d.pop("body")
    state = cast(PushState, d.pop("state"))
    return Push(**d, state=state, body=None if body is None else body.encode("latin-1"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


RegistryRecord = App | AppKey | Device | DeviceToken


class RedisGatewayStore:
    """The `GatewayStore` protocol on a Redis server shared by every node."""

    blocking = True

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        p = prefix + "gw:"
        self._gen = p + "gen"
        self.channel = p + "changed"
        self._apps = p + "apps"
        self._keys = p + "keys"
        self._devices = p + "devices"
        self._seen = p + "seen"
        self._tokens = p + "tokens"
        self.pushes_key = p + "push"
        self.pending_prefix = p + "pending:"
        self._content = p + "content:"
        self._client: redis.Redis | None = None
        self._notices = RegistryNotices(url, self.channel)

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, decode_responses=False)
            self._client.ping()  # a wrong URL is a start-up error

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("gateway store is not open")
        return self._client

    # -- change notification -------------------------------------------------------------

    async def wait_changes(self, timeout: float) -> list[RegistryChange | None] | None:
        """The registry changes published on `gw:changed` within `timeout`, or None when
        changes may have been missed (gateway_notices.py): reload then."""
        return await self._notices.wait(timeout)

    async def wait_change(self, timeout: float) -> None:
        """Return when a registry change was published, or after `timeout`."""
        await self._notices.wait(timeout)

    async def close_notifications(self) -> None:
        await self._notices.close()

    # -- registry reads --------------------------------------------------------------------

    def generation(self) -> int:
        return int(cast(bytes | None, self.client.get(self._gen)) or 0)

    def registry(self) -> Registry:
        pipe = self.client.pipeline(transaction=True)  # one consistent view
        pipe.get(self._gen)
        pipe.hgetall(self._apps)
        pipe.hgetall(self._keys)
        pipe.hgetall(self._devices)
        pipe.hgetall(self._seen)
        pipe.hgetall(self._tokens)
        gen, apps, keys, devices, seen, tokens = pipe.execute()
        reg = Registry(int(gen or 0))
        for raw in apps.values():
            a = _app(raw)
            reg.apps[a.app_id] = a
        for raw in keys.values():
            k = _key(raw)
            reg.keys[(k.app_id, k.kid)] = k
        for device_id, raw in devices.items():
            d = _device(raw, seen.get(device_id))
            reg.devices[d.device_id] = d
        for raw in tokens.values():
            t = _token(raw)
            reg.tokens[t.token] = t
        return reg

    def records(
        self, items: Iterable[tuple[str, str]]
    ) -> list[tuple[str, str, RegistryRecord | None]]:
        """The current records named by change notices, (kind, id, record or None when it
        is gone), read in one transaction: what a node applies instead of a reload."""
        wanted = list(items)
        hashes = {"app": self._apps, "key": self._keys, "device": self._devices,
                  "token": self._tokens}  # fmt: skip
        pipe = self.client.pipeline(transaction=True)
        for kind, ident in wanted:
            pipe.hget(hashes[kind], ident)
            if kind == "device":
                pipe.hget(self._seen, ident)
        replies = iter(pipe.execute())
        out: list[tuple[str, str, RegistryRecord | None]] = []
        for kind, ident in wanted:
            raw = next(replies)
            record: RegistryRecord | None = None
            if kind == "device":
                seen = next(replies)
                record = None if raw is None else _device(raw, seen)
            elif raw is not None and kind == "app":
                record = _app(raw)
            elif raw is not None and kind == "key":
                record = _key(raw)
            elif raw is not None:
                record = _token(raw)
            out.append((kind, ident, record))
        return out

    # -- registry writes -------------------------------------------------------------------

    def _write(self, fn: Any, *keys: str) -> int:
        """Run `fn(pipe)` under WATCH `keys` and `gw:gen` (retried when another node wrote
        them); it returns the (kind, id) of the records it changes. Bump the generation in
        its MULTI/EXEC with the notice naming them, and return the new generation."""

        def run(pipe: Any) -> None:
            # gw:gen is watched: the generation this write makes is exactly the next one
            generation = int(pipe.get(self._gen) or 0) + 1
            items: list[tuple[str, str]] = fn(pipe)
            if not pipe.explicit_transaction:
                pipe.multi()
            pipe.incr(self._gen)
            pipe.publish(self.channel, encode_change(generation, items))

        results = cast(list[Any], self.client.transaction(run, *keys, self._gen))
        return int(results[-2])  # [..., INCR, PUBLISH]

    def add_app(self, app: App) -> int:
        def w(pipe: Any) -> list[tuple[str, str]]:
            if pipe.hexists(self._apps, app.app_id):
                raise Conflict(f"app {app.app_id} exists")
            pipe.multi()
            pipe.hset(self._apps, app.app_id, _app_json(app))
            return [("app", app.app_id)]

        return self._write(w, self._apps)

    def remove_app(self, app_id: str, when: float) -> int:
        def w(pipe: Any) -> list[tuple[str, str]]:
            if not pipe.hexists(self._apps, app_id):
                raise NotFound(f"no app {app_id!r}")
            keys = [f for f in pipe.hkeys(self._keys) if f.startswith(app_id.encode() + b"\0")]
            ended = [
                t for t in map(_token, pipe.hvals(self._tokens))
                if t.app_id == app_id and t.deleted is None
            ]  # fmt: skip
            pipe.multi()
            pipe.hdel(self._apps, app_id)
            if keys:
                pipe.hdel(self._keys, *keys)
            for t in ended:
                pipe.hset(self._tokens, t.token, json.dumps(asdict(replace(t, deleted=when))))
            return [
                ("app", app_id),
                *(("key", _text(f)) for f in keys),
                *(("token", t.token) for t in ended),
            ]

        return self._write(w, self._apps, self._keys, self._tokens)

    def set_webhooks(self, app_id: str, receipt_url: str | None, wake: WakeHook | None) -> int:
        def w(pipe: Any) -> list[tuple[str, str]]:
            raw = pipe.hget(self._apps, app_id)
            if raw is None:
                raise NotFound(f"no app {app_id!r}")
            app = replace(_app(raw), receipt_url=receipt_url, wake=wake)
            pipe.multi()
            pipe.hset(self._apps, app_id, _app_json(app))
            return [("app", app_id)]

        return self._write(w, self._apps)

    def add_key(self, key: AppKey) -> int:
        field = f"{key.app_id}\0{key.kid}"

        def w(pipe: Any) -> list[tuple[str, str]]:
            if not pipe.hexists(self._apps, key.app_id):
                raise NotFound(f"no app {key.app_id!r}")
            if pipe.hexists(self._keys, field):
                raise Conflict(f"key {key.kid!r} exists for app {key.app_id}")
            pipe.multi()
            pipe.hset(self._keys, field, json.dumps(asdict(key)))
            return [("key", field)]

        return self._write(w, self._apps, self._keys)

    def revoke_key(self, app_id: str, kid: str, when: float) -> int:
        field = f"{app_id}\0{kid}"

        def w(pipe: Any) -> list[tuple[str, str]]:
            raw = pipe.hget(self._keys, field)
            if raw is None:
                raise NotFound(f"no key {kid!r} for app {app_id!r}")
            key = _key(raw)
            pipe.multi()
            if key.revoked is None:
                pipe.hset(self._keys, field, json.dumps(asdict(replace(key, revoked=when))))
            return [("key", field)]

        return self._write(w, self._keys)

    def add_device(self, device: Device) -> int:
        record = {
            "device_id": device.device_id,
            "secret_hash": device.secret_hash,
            "created": device.created,
        }

        def w(pipe: Any) -> list[tuple[str, str]]:
            if pipe.hexists(self._devices, device.device_id):
                raise Conflict(f"device {device.device_id} exists")
            pipe.multi()
            pipe.hset(self._devices, device.device_id, json.dumps(record))
            if device.last_seen is not None:
                pipe.hset(self._seen, device.device_id, repr(device.last_seen))
            return [("device", device.device_id)]

        return self._write(w, self._devices)

    def remove_device(self, device_id: str, when: float) -> int:
        def w(pipe: Any) -> list[tuple[str, str]]:
            if not pipe.hexists(self._devices, device_id):
                raise NotFound(f"no device {device_id!r}")
            ended = [
                t for t in map(_token, pipe.hvals(self._tokens))
                if t.device_id == device_id and t.deleted is None
            ]  # fmt: skip
            home = pipe.hget(self.prefix + "gw:home", device_id)
            pipe.multi()
            if home is not None:  # the home index by node (gateway_homes.py)
                pipe.srem(self.prefix + "gw:homes:" + _text(home), device_id)
            pipe.hdel(self._devices, device_id)
            pipe.hdel(self._seen, device_id)
            # its home keeps its pushes until they end (unregistered, on the reload)
            pipe.hdel(self.prefix + "gw:home", device_id)
            for t in ended:
                pipe.hset(self._tokens, t.token, json.dumps(asdict(replace(t, deleted=when))))
            return [("device", device_id), *(("token", t.token) for t in ended)]

        return self._write(w, self._devices, self._tokens)

    def touch_devices(self, seen: list[tuple[str, float]]) -> None:
        # bookkeeping: no generation bump; only devices that still exist get a value
        script = (
            "for i = 1, #ARGV, 2 do "
            "if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then "
            "redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end end"
        )
        args = [x for device_id, when in seen for x in (device_id, repr(when))]
        if args:
            self.client.eval(script, 2, self._devices, self._seen, *args)

    def last_seen(self, device_id: str) -> float | None:
        value = cast(bytes | None, self.client.hget(self._seen, device_id))
        return None if value is None else float(value)

    def add_token(self, token: DeviceToken) -> int:
        def w(pipe: Any) -> list[tuple[str, str]]:
            if pipe.hexists(self._tokens, token.token):
                raise Conflict("token exists")
            pipe.multi()
            pipe.hset(self._tokens, token.token, json.dumps(asdict(token)))
            return [("token", token.token)]

        return self._write(w, self._tokens)

    def delete_token(self, token: str, when: float) -> int:
        def w(pipe: Any) -> list[tuple[str, str]]:
            raw = pipe.hget(self._tokens, token)
            if raw is None:
                raise NotFound("no such token")
            t = _token(raw)
            pipe.multi()
            if t.deleted is None:
                pipe.hset(self._tokens, token, json.dumps(asdict(replace(t, deleted=when))))
            return [("token", token)]

        return self._write(w, self._tokens)

    # -- pushes ----------------------------------------------------------------------------

    def apply(self, puts: Iterable[Push], deletes: Iterable[str], durable: bool = True) -> None:
        """Push changes of the devices this node is home for, in one MULTI/EXEC (with
        `appendfsync always` it is on disk when it returns, durable or not)."""
        pipe = self.client.pipeline(transaction=True)
        for p in puts:
            pipe.hset(self.pushes_key, p.id, push_json(p))
            if p.final:
                pipe.srem(self.pending_prefix + p.device_id, p.id)
            else:
                pipe.sadd(self.pending_prefix + p.device_id, p.id)
        dead = list(deletes)
        if dead:
            pipe.hdel(self.pushes_key, *dead)
        if len(pipe):
            pipe.execute()

    def load_pushes(self) -> list[Push]:
        # nothing at start: a node loads a device's pushes when it becomes its home
        # (gateway_homes.py), so two nodes never both hold the same push in memory
        return []

    def get_push(self, push_id: str) -> Push | None:
        raw = cast(bytes | None, self.client.hget(self.pushes_key, push_id))
        return None if raw is None else push_from_json(raw)

    # -- content ---------------------------------------------------------------------------

    def put_content(self, content: Content) -> None:
        c = content
        meta = json.dumps(
            {
                "content_id": c.content_id,
                "device_id": c.device_id,
                "app_id": c.app_id,
                "content_type": c.content_type,
                "created": c.created,
                "expires": c.expires,
            }
        )
        key = self._content + c.content_id
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={"meta": meta, "data": c.data})
        pipe.expireat(key, max(1, int(c.expires) + 1))  # the reader checks the exact time
        pipe.execute()

    def get_content(self, content_id: str) -> Content | None:
        meta, data = cast(
            list[bytes | None], self.client.hmget(self._content + content_id, ["meta", "data"])
        )
        if meta is None or data is None:
            return None
        d = json.loads(meta)
        return Content(
            d["content_id"], d["device_id"], d["app_id"], d["content_type"], data,
            d["created"], d["expires"],
        )  # fmt: skip

    def delete_content_before(self, now: float) -> int:
        return 0  # Redis expires content keys by itself (EXPIREAT in put_content)
