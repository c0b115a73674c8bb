"""Device homes and node inboxes: which node holds a device's pushes, and how pushes accepted
elsewhere reach it (engine=redis; the gateway side is gateway/cluster.py).

Every device has at most one *home*: the node that keeps its waiting and sent pushes in
memory, hands them to the device's connection, sees its acknowledgements, expires,
collapses and drops them. A device's home is the node it last connected to; a push
accepted on another node is written to Redis and announced in the home's inbox. Keys
(under `prefix`, "pw:" by default, next to gateway_store.py's):

- `gw:home`          hash device -> node id of its home;
- `gw:homes:<node>`  set of the devices whose home is that node (the index by node, kept
                     in the same scripts as `gw:home`), and `gw:home-nodes` the set of
                     nodes that have one: the dead-home check reads these, never the table;
- `gw:inbox:<node>`  list of notices for that node, each "kind\\ndevice\\narg":
    `push`    a push (arg: its id) for a device of yours was written to Redis: take it;
    `device`  you are the device's home now: load its pending pushes from Redis;
    `release` the device moved (arg: its new home): write out and drop its pushes.

Every script that names a home checks that node's heartbeat key (`node:<id>`, kept by
engines/redis/presence.py); a dead home's devices go to the node that needs them. A live
node whose heartbeat merely lapsed (a slow node) may lose devices so, and its inbox is
dropped with a dead node's; it finds out with `recheck` after its next beat (see
gateway/cluster.py, "A lapse"). The
write of a push and the notice to its home are one script (one MULTI), so a node killed
right after its 200 cannot leave a push without its notice; a notice lost with a dead
home loses nothing either, because the pending set is read again by the next home.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Final, cast

import redis
import redis.asyncio

from pushwire.engines.redis.client import UNAVAILABLE, connect
from pushwire.engines.redis.gateway_store import RedisGatewayStore, push_from_json, push_json
from pushwire.gateway.model import Push

log = logging.getLogger("pushwire.gateway")

# make ARGV[1]... `node` the home of `device` in KEYS[1] and in the per-node index
# `gw:homes:<node>` (plus `gw:home-nodes`, the nodes that have an index), so a dead node's
# devices are found without reading the whole home table; ARGV[2] is the prefix
_SET_HOME: Final = """
local function set_home(device, node)
  local old = redis.call('HGET', KEYS[1], device)
  if old and old ~= node then
    redis.call('SREM', ARGV[2] .. 'gw:homes:' .. old, device)
  end
  redis.call('HSET', KEYS[1], device, node)
  redis.call('SADD', ARGV[2] .. 'gw:homes:' .. node, device)
  redis.call('SADD', ARGV[2] .. 'gw:home-nodes', node)
end
"""

# the home of KEYS[1][device]: itself if alive or this node (ARGV[1]); else this node takes it
_HOME_OF: Final = (
    _SET_HOME
    + """
local function home_of(device)
  local h = redis.call('HGET', KEYS[1], device)
  if h and (h == ARGV[1] or redis.call('EXISTS', ARGV[2] .. 'node:' .. h) == 1) then
    return h
  end
  set_home(device, ARGV[1])
  return ARGV[1]
end
"""
)

# KEYS: home hash, push hash; ARGV: node, prefix, then (id, device, json) per push
_FORWARD: Final = (
    _HOME_OF
    + """
for i = 3, #ARGV, 3 do
  local id, device = ARGV[i], ARGV[i + 1]
  redis.call('HSET', KEYS[2], id, ARGV[i + 2])
  redis.call('SADD', ARGV[2] .. 'gw:pending:' .. device, id)
  local h = home_of(device)
  redis.call('RPUSH', ARGV[2] .. 'gw:inbox:' .. h, 'push\\n' .. device .. '\\n' .. id)
end
return 0
"""
)

# KEYS: home hash; ARGV: node, prefix, device, kind, arg -> the node told
_NOTIFY: Final = (
    _HOME_OF
    + """
local h = home_of(ARGV[3])
redis.call('RPUSH', ARGV[2] .. 'gw:inbox:' .. h, ARGV[4] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[5])
return h
"""
)

# KEYS: home hash; ARGV: node, prefix, device -> the live old home asked to release, or false
_CLAIM: Final = (
    _SET_HOME
    + """
local old = redis.call('HGET', KEYS[1], ARGV[3])
set_home(ARGV[3], ARGV[1])
if old and old ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. 'node:' .. old) == 1 then
  redis.call('RPUSH', ARGV[2] .. 'gw:inbox:' .. old, 'release\\n' .. ARGV[3] .. '\\n' .. ARGV[1])
  return old
end
redis.call('RPUSH', ARGV[2] .. 'gw:inbox:' .. ARGV[1], 'device\\n' .. ARGV[3] .. '\\n')
return false
"""
)

# KEYS: home hash, push hash; ARGV: node, pending key, device -> false when not our device
_LOAD: Final = """
if redis.call('HGET', KEYS[1], ARGV[3]) ~= ARGV[1] then return false end
local ids = redis.call('SMEMBERS', ARGV[2])
if #ids == 0 then return {} end
local out = {}
local raw = redis.call('HMGET', KEYS[2], unpack(ids))
for i = 1, #ids do
  if raw[i] then out[#out + 1] = raw[i] else redis.call('SREM', ARGV[2], ids[i]) end
end
return out
"""

# KEYS: online hash; ARGV: node, then (device, "1" online | "0" offline) pairs; an offline
# device is forgotten only if this node had it (it may be online elsewhere by now)
_ONLINE: Final = """
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '1' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
  elseif redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 0
"""

# KEYS: home hash; ARGV: node, prefix, device, dead node -> 1 when taken (an index entry
# of the dead node that no longer holds is dropped)
_TAKE: Final = (
    _SET_HOME
    + """
local h = redis.call('HGET', KEYS[1], ARGV[3])
if h == ARGV[4] and redis.call('EXISTS', ARGV[2] .. 'node:' .. ARGV[4]) == 0 then
  set_home(ARGV[3], ARGV[1])
  return 1
end
if h ~= ARGV[4] then redis.call('SREM', ARGV[2] .. 'gw:homes:' .. ARGV[4], ARGV[3]) end
return 0
"""
)

# KEYS: home-nodes set; ARGV: node, prefix -> the stopped nodes still named home of devices.
# Costs one command per node that has homes, whatever the number of devices; a stopped
# node whose index emptied is forgotten. What a stopped node left in its inbox is in the
# pending sets as well: the inbox is dropped here, in the same script as the heartbeat
# check, so never once the node beats again (a slow node's later notices stay)
_DEAD_HOMES: Final = """
local dead = {}
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if n ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. 'node:' .. n) == 0 then
    if redis.call('SCARD', ARGV[2] .. 'gw:homes:' .. n) == 0 then
      redis.call('SREM', KEYS[1], n)
    else
      redis.call('DEL', ARGV[2] .. 'gw:inbox:' .. n)
      dead[#dead + 1] = n
    end
  end
end
return dead
"""

# how many devices one round trip of `recheck` looks at
_RECHECK_CHUNK: Final = 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisDeviceHomes:
    """The gateway's `HomeLink` (gateway/cluster.py) on Redis. The sync methods run on the
    gateway's store thread with the store's client; the inbox is read on the event loop."""

    def __init__(self, store: RedisGatewayStore, node_id: str, timeout: float) -> None:
        self.store = store
        self.node_id = node_id
        self.timeout = timeout
        self.prefix = store.prefix
        self._home = store.prefix + "gw:home"
        self._online = store.prefix + "gw:online"  # device -> node holding its connection
        self._homes = store.prefix + "gw:homes:"  # + node: set of the devices it is home of
        self._home_nodes = store.prefix + "gw:home-nodes"  # nodes with such a set
        self.inbox = f"{store.prefix}gw:inbox:{node_id}"
        self._reader: redis.asyncio.Redis | None = None

    def _eval(self, script: str, keys: list[str], *args: str | bytes) -> object:
        return self.store.client.eval(script, len(keys), *keys, *args)

    # -- on the store thread ---------------------------------------------------------------

    def forward(self, pushes: Iterable[Push]) -> None:
        """Write new pushes for devices homed elsewhere, each announced to its home (or,
        for a device without a live home, to this node, which becomes its home)."""
        args: list[str] = []
        for p in pushes:
            args += [p.id, p.device_id, push_json(p)]
        if args:
            keys = [self._home, self.store.pushes_key]
            self._eval(_FORWARD, keys, self.node_id, self.prefix, *args)

    def claim(self, device_id: str) -> str | None:
        """Make this node the device's home. Returns the live old home that was asked to
        release it (it sends `device` when done), or None (`device` is in our inbox)."""
        old = self._eval(_CLAIM, [self._home], self.node_id, self.prefix, device_id)
        return None if not old else _text(cast(bytes, old))

    def notify(self, device_id: str, kind: str, arg: str = "") -> str:
        """Send a notice to the device's home (taking it when it has no live home)."""
        to = self._eval(_NOTIFY, [self._home], self.node_id, self.prefix, device_id, kind, arg)
        return _text(cast(bytes, to))

    def device_pushes(self, device_id: str) -> list[Push] | None:
        """The device's pending pushes, or None when this node is not its home."""
        pending = self.store.pending_prefix + device_id
        raw = self._eval(
            _LOAD, [self._home, self.store.pushes_key], self.node_id, pending, device_id
        )
        if raw is None:
            return None
        return [push_from_json(r) for r in cast(list[bytes], raw)]

    def homed_here(self) -> list[str]:
        """At start: the devices this node (restarted under its id) is still home of. The
        whole table is read once here, and this node's index rebuilt from it (a table
        written before the index existed is indexed so)."""
        homes = cast(dict[bytes, bytes], self.store.client.hgetall(self._home))
        mine = [_text(d) for d, n in homes.items() if _text(n) == self.node_id]
        if mine:
            pipe = self.store.client.pipeline(transaction=True)
            pipe.sadd(self._homes + self.node_id, *mine)
            pipe.sadd(self._home_nodes, self.node_id)
            pipe.execute()
        return mine

    def orphans(self) -> list[tuple[str, str]]:
        """(device, dead home) of every device whose home stopped: one script when no
        node died (gw:home-nodes), then the dead nodes' own indexes."""
        raw = self._eval(_DEAD_HOMES, [self._home_nodes], self.node_id, self.prefix)
        dead = [_text(n) for n in cast(list[bytes], raw)]
        if not dead:
            return []
        out: list[tuple[str, str]] = []
        for n in dead:
            members = cast(set[bytes], self.store.client.smembers(self._homes + n))
            out += [(_text(d), n) for d in sorted(members)]
        return out

    def recheck(self, devices: list[str]) -> tuple[list[str], dict[str, list[str]]]:
        """After this node's heartbeat lapsed: which of `devices` (homed here, as far as
        this node knows) are homed elsewhere now, and the pending push ids of the others
        (their inbox notices may have been dropped with the inbox of a node that looked
        dead). Read after the beat that ended the lapse: nobody takes them any more."""
        client = self.store.client
        lost: list[str] = []
        kept: list[str] = []
        for i in range(0, len(devices), _RECHECK_CHUNK):
            chunk = devices[i : i + _RECHECK_CHUNK]
            homes = cast(list[bytes | None], client.hmget(self._home, chunk))
            for device_id, home in zip(chunk, homes, strict=True):
                mine = home is not None and _text(home) == self.node_id
                (kept if mine else lost).append(device_id)
        pending: dict[str, list[str]] = {}
        for i in range(0, len(kept), _RECHECK_CHUNK):
            chunk = kept[i : i + _RECHECK_CHUNK]
            pipe = client.pipeline(transaction=False)
            for device_id in chunk:
                pipe.smembers(self.store.pending_prefix + device_id)
            for device_id, members in zip(chunk, pipe.execute(), strict=True):
                pending[device_id] = [_text(m) for m in members]
        return lost, pending

    def take(self, device_id: str, dead: str) -> bool:
        """Become the home of a device whose home `dead` stopped (unless somebody did)."""
        return bool(self._eval(_TAKE, [self._home], self.node_id, self.prefix, device_id, dead))

    def set_online(self, changes: Iterable[tuple[str, bool]]) -> None:
        """Record which devices are connected to this node now, and which no longer are."""
        args = [x for device_id, up in changes for x in (device_id, "1" if up else "0")]
        if args:
            self._eval(_ONLINE, [self._online], self.node_id, *args)

    def online_node(self, device_id: str) -> str | None:
        """The live node a device is connected to, if any."""
        node = cast(bytes | None, self.store.client.hget(self._online, device_id))
        if node is None or not self.alive(_text(node)):
            return None
        return _text(node)

    def last_seen(self, device_id: str) -> float | None:
        return self.store.last_seen(device_id)

    def get_push(self, push_id: str) -> Push | None:
        return self.store.get_push(push_id)

    def pending_ids(self, device_id: str) -> list[str]:
        members = cast(
            set[bytes], self.store.client.smembers(self.store.pending_prefix + device_id)
        )
        return [_text(m) for m in members]

    def get_pushes(self, push_ids: list[str]) -> list[Push]:
        if not push_ids:
            return []
        raw = cast(list[bytes | None], self.store.client.hmget(self.store.pushes_key, push_ids))
        return [push_from_json(r) for r in raw if r is not None]

    def all_pushes(self) -> list[Push]:
        raw = cast(list[bytes], self.store.client.hvals(self.store.pushes_key))
        return [push_from_json(r) for r in raw]

    def alive(self, node_id: str) -> bool:
        return bool(self.store.client.exists(f"{self.prefix}node:{node_id}"))

    # -- on the event loop -------------------------------------------------------------------

    async def next_notice(self, wait: float) -> tuple[str, str, str] | None:
        """The next notice in this node's inbox (kind, device, arg), waiting up to `wait`."""
        if self._reader is None:
            self._reader = connect(self.store.url, self.timeout, blocking_reads=wait)
        try:
            got = await self._reader.blpop([self.inbox], timeout=wait)
        except UNAVAILABLE:
            await self._drop_reader()
            raise
        if got is None:
            return None
        kind, device, arg = _text(got[1]).split("\n", 2)
        return kind, device, arg

    async def close(self) -> None:
        await self._drop_reader()

    async def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await reader.aclose()
