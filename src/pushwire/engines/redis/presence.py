"""Who is connected where, and which nodes are alive (engine=redis).

Keys (under `prefix`, "pw:" by default):

- `node:<id>`       this node's heartbeat: a JSON figure set (connected clients, messages in
                    and out, ...) written every `interval` with a TTL of `timeout`. A node
                    whose key expired is dead: its client-id locks (sessions.py) may be taken
                    and its offline sessions adopted;
- `nodes`           set of node ids ever seen (dead ones are pruned when the figures are read);
- `where`           hash client id -> node id that holds its live connection.

The heartbeat is a plain SET with PX, so a node killed with -9 disappears after `timeout`
without anybody cleaning up after it. A node that is alive but slow (a loaded event loop,
a GC pause, a Redis hiccup) can lapse the same way, and other nodes then take what it held.
So a node also knows whether it still holds its own heartbeat: its *lease* runs `timeout`
from when it sent its last answered beat (never later than Redis lets the key expire), and
a beat that finds the key gone, or sent after the lease ran out, is a *lapse*: the
listeners (`on_lapse`; the gateway's device homes, gateway/cluster.py) look again at
what they hold. `cluster_figures` reads every live node's last
figures: per-node values and their totals (summed where a sum means something: connected
clients and message counters; uptime and the like stay per node).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

import redis
import redis.asyncio

from pushwire.engines.redis.calls import CallBatch
from pushwire.model import ClusterFigures
from pushwire.ports import Presence

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "pw:"

# figures that add up across nodes; anything else a node reports stays per node
SUMMABLE = ("clients_connected", "messages_in", "messages_out", "bytes_in", "bytes_out")


def node_key(prefix: str, node_id: str) -> str:
    return f"{prefix}node:{node_id}"


_OFFLINE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class RedisPresence:
    """Node heartbeats and the client -> node directory on one Redis server."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        node_id: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        interval: float = 1.0,
        timeout: float = 5.0,
        figures: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        if timeout <= interval:
            raise ValueError("the node timeout must be longer than the heartbeat interval")
        self.client = client
        self.node_id = node_id
        self.prefix = prefix
        self.interval = interval
        self.timeout = timeout
        # what this node reports with every heartbeat (set by the server: its own stats)
        self.figures = figures or dict
        self._where = f"{prefix}where"
        self._nodes = f"{prefix}nodes"
        self._offline = client.register_script(_OFFLINE)
        self.calls = CallBatch(client)  # client places of one loop turn, one round trip
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # monotonic time until which this node surely holds its heartbeat key (`holds_lease`)
        self.lease_until = 0.0
        self._lapse_listeners: list[Callable[[], None]] = []
        self.lapses = 0  # beats that found this node's heartbeat lapsed

    # -- heartbeat ---------------------------------------------------------------------------

    async def beat(self) -> bool:
        """Write this node's heartbeat and figures once (the loop calls it every interval).
        False when the heartbeat had lapsed before it: the key was gone, or the lease ran
        out before this beat's reply came (the first beat of a node is one too)."""
        sent = time.monotonic()
        key = node_key(self.prefix, self.node_id)
        # one transaction: the key cannot expire between the look and the write unseen
        pipe = self.client.pipeline(transaction=True)
        pipe.exists(key)
        pipe.set(key, json.dumps(self.figures()), px=int(self.timeout * 1000))
        pipe.sadd(self._nodes, self.node_id)
        existed = (await pipe.execute())[0]
        # Judged when the reply is read, not when the beat was sent: while a late reply
        # was on its way the lease had already run out, `sendable` (gateway/cluster.py)
        # refused to send, and only a lapse makes the gateway flush what it held back.
        held = bool(existed) and time.monotonic() < self.lease_until
        # Redis set the key's TTL when it received the SET, after `sent`
        self.lease_until = sent + self.timeout
        return held

    def holds_lease(self) -> bool:
        """This node's heartbeat key surely exists now: no other node can have taken what
        it holds because it looked dead."""
        return time.monotonic() < self.lease_until

    def on_lapse(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every beat that found the heartbeat lapsed (the key is
        back by then, so nothing more is taken from this node until the next lapse)."""
        self._lapse_listeners.append(listener)

    async def start(self) -> None:
        """First heartbeat now (a start-up error if Redis is unreachable), then a loop."""
        await self.beat()
        self._task = asyncio.create_task(self._loop(), name="pushwire-presence")

    async def _loop(self) -> None:
        # `_stopping`, not only the cancellation: redis-py may turn a cancellation in the
        # middle of a command into a connection error, which this loop would swallow
        while not self._stopping:
            await asyncio.sleep(self.interval)
            try:
                held = await self.beat()
            except (redis.RedisError, OSError) as exc:
                # the node keeps serving; other nodes will see it as dead after `timeout`
                if not self._stopping:
                    log.warning("presence: heartbeat to Redis failed: %s", exc)
                continue
            if not held and not self._stopping:
                self.lapses += 1
                log.warning(
                    "presence: this node's heartbeat lapsed (other nodes may have taken "
                    "what it held); looking again at what it holds"
                )
                for listener in self._lapse_listeners:
                    try:
                        listener()
                    except Exception:  # the heartbeat must go on whatever a listener does
                        log.exception("presence: a lapse listener failed")

    async def stop(self) -> None:
        """Stop beating and leave at once (other nodes need not wait for the TTL)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(redis.RedisError, OSError):
            await self.client.delete(node_key(self.prefix, self.node_id))

    async def alive(self, node_id: str) -> bool:
        return bool(await self.client.exists(node_key(self.prefix, node_id)))

    # -- clients ---------------------------------------------------------------------------

    async def client_online(self, client_id: str) -> None:
        # with the other connections' of this loop turn, in one round trip (connect storms)
        await self.calls.command("HSET", self._where, client_id, self.node_id)

    async def client_offline(self, client_id: str) -> None:
        """Forget the client's place unless another node has it by now (takeover)."""
        await self.calls.script(self._offline, [self._where], [client_id, self.node_id])

    async def where(self, client_id: str) -> str | None:
        node = await self.client.hget(self._where, client_id)
        if node is None:
            return None
        node_id = node.decode() if isinstance(node, bytes) else str(node)
        return node_id if await self.alive(node_id) else None

    # -- figures -----------------------------------------------------------------------------

    async def cluster_figures(self) -> ClusterFigures:
        """Every live node's last reported figures, and the totals of the summable ones."""
        ids = sorted(
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await self.client.smembers(self._nodes)
        )
        raw = await self.client.mget([node_key(self.prefix, n) for n in ids]) if ids else []
        result = ClusterFigures()
        dead = []
        for node_id, value in zip(ids, raw, strict=True):
            if value is None:
                dead.append(node_id)
                continue
            result.nodes[node_id] = {k: float(v) for k, v in json.loads(value).items()}
        if dead:
            await self.client.srem(self._nodes, *dead)
        for name in SUMMABLE:
            values = [f[name] for f in result.nodes.values() if name in f]
            if values:
                result.totals[name] = sum(values)
        result.totals["nodes"] = len(result.nodes)
        return result


# RedisPresence is the Presence port (checked by mypy)
_PORT: type[Presence] = RedisPresence
