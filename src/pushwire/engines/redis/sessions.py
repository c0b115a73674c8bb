"""Persistent MQTT sessions in Redis, a lock per client id, and the cross-node takeover kick.

Keys (under `prefix`, "pw:" by default; C is the client id):

- `sess`      hash C -> JSON row (protocol level, expiry interval, disconnected at, owner);
- `subs:C`    hash filter -> JSON subscription (options, subscription id);
- `qi:C`      sorted set of queued seqs (score = seq): the delivery order;
- `qe:C`      hash seq -> JSON entry: the position of its message, or the message inline
              (see below);
- `qs:C`      hash seq -> "packet_id:state" (inflight state, rewritten without the body);
- `in:C`      set of inbound QoS 2 packet ids (PUBREC sent, PUBREL not yet seen);
- `lock:C`    the node id that holds C: the only node that routes to, queues for and writes
              the session. Held while the client is online AND while it is offline;
- `holds:<node id>` set of the client ids that node holds, and `holders` the set of node
              ids with such a set: the holder index, changed by the same scripts that move
              a lock (take, hand over, release), so it never disagrees with the locks;
- channel `kick:<node id>`: "<claimant node>" LF "<C>": hand C to the claimant (its client
              connected there).

Durability (same contract as the SQLite engine): every write method is non-blocking and
appended to a batch; the batch is sent as ONE MULTI/EXEC pipeline on the next loop tick
(write-behind, group commit), batches strictly in call order. `sync()` resolves once the
batch holding every earlier write has been answered by Redis; with `appendfsync always`
that answer means on disk. A batch Redis refuses or never answers (unreachable) fails
every write in it: `write_failed` / `session_failed_since` say so and the caller does not
acknowledge (MQTT reason code), it never acks falsely.

Message bodies are stored once per position, not per queue entry: `bodies` (hash position
-> encoded message, engines/redis/codec.py) with `refs` (hash position -> how many queue
entries refer to it), both kept by the scripts that put and delete entries and sessions,
in the same transaction, so a body goes with the last entry that refers to it. Positions,
unlike uids (unique within one process only, core/message.py), are unique in the cluster.
A message without a position (node-local, e.g. `$SYS`) is stored inline in its entry.

Who holds a session. `lock:C` is taken by an atomic script that succeeds when the lock is
free, already ours, or held by a node whose heartbeat (presence.py `node:<id>`, a key with
a TTL) has lapsed: a node killed with -9 loses its sessions to whoever asks next.
`claim(C)` (a client connects here) asks the holder to let go with a kick and waits until
it did, up to `takeover_timeout` (longer than the node timeout, so a dead holder is
covered too). The holder's `on_kick` closes the connection as a takeover within one node
does, makes the session's writes durable, forgets the session, and hands the lock straight
to the claimant (never free in between, so no third node adopts it meanwhile); the
claimant then `load_session`s it: subscriptions, queue and inflight messages.
`load_sessions` adopts every session whose holder is dead. A running node does so every
heartbeat from the index: it reads the holders set, checks their heartbeats and reads only
the dead nodes' sets, so a round with no dead node costs two round trips however many
sessions live nodes hold. At start-up it also takes its own id's set and sweeps the session
ids once (1,000 to a round trip, one MGET of their locks) for free locks and dead holders
the index does not know.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio

from pushwire.core.message import Message
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.base import (
    FailureListener,
    QueueState,
    StoredQueueEntry,
    StoredSession,
    StoredSubscription,
    WriteFailure,
)
from pushwire.engines.redis.batch import fanout_messages
from pushwire.engines.redis.calls import CallBatch
from pushwire.engines.redis.codec import decode, encode
from pushwire.engines.redis.keys import FANOUT, stream_id
from pushwire.engines.redis.presence import node_key
from pushwire.engines.serialize import dump_properties, load_properties

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "pw:"
# how many failed message uids `write_failed` remembers (callers ask right after sync)
_FAILED_MEMORY = 10_000
# how often a claimant looks at the lock again while the holder lets go
_CLAIM_POLL = 0.02
_KICK_AGAIN = 1.0

# Every script that moves `lock:C` moves C between the holder index sets in the same step
# (`holds:<node>`: the client ids that node holds; `holders`: the nodes that have such a
# set), so adopting a dead node's sessions reads only its set.

# KEYS[1] lock:C; ARGV[1] this node, ARGV[2] the node-key prefix, ARGV[3] "1" when a lock
# this node holds already counts as taken, ARGV[4] the holds-set prefix, ARGV[5] C,
# ARGV[6] the holders set, ARGV[7] the node in whose set C was found ("" if none): C leaves
# that set when it turns out not to be that node's (any more), ARGV[8] the sessions hash,
# or "" not to look. Returns {1, previous holder or "", 1 if C has a stored session row
# (looked for with ARGV[8]) else 0} when taken, {0, holder} when a live node has it (or
# this node, with ARGV[3] "0"). One round trip tells a CONNECT whether it must load a
# session at all: a clean one whose client id has no row needs nothing more.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or (holder == ARGV[1] and ARGV[3] == '1')
    or (holder ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. holder) == 0) then
  redis.call('SET', KEYS[1], ARGV[1])
  if holder and holder ~= ARGV[1] then
    redis.call('SREM', ARGV[4] .. holder, ARGV[5])
  end
  if ARGV[7] ~= '' and ARGV[7] ~= ARGV[1] then
    redis.call('SREM', ARGV[4] .. ARGV[7], ARGV[5])
  end
  redis.call('SADD', ARGV[4] .. ARGV[1], ARGV[5])
  redis.call('SADD', ARGV[6], ARGV[1])
  local stored = 0
  if ARGV[8] ~= '' then stored = redis.call('HEXISTS', ARGV[8], ARGV[5]) end
  return {1, holder or '', stored}
end
if ARGV[7] ~= '' and holder ~= ARGV[7] then
  redis.call('SREM', ARGV[4] .. ARGV[7], ARGV[5])
end
return {0, holder}
"""

# KEYS[1] lock:C; ARGV[1] this node, ARGV[2] the claimant, ARGV[3] the holds-set prefix,
# ARGV[4] C, ARGV[5] the holders set: hand our lock straight to the claimant, so no third
# node can take it in between (the lock is never free during a takeover)
_HAND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SREM', ARGV[3] .. ARGV[1], ARGV[4])
  redis.call('SADD', ARGV[3] .. ARGV[2], ARGV[4])
  redis.call('SADD', ARGV[5], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] lock:C; ARGV[1] this node, ARGV[2] the holds-set prefix, ARGV[3] C: let go only
# of our own lock
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SREM', ARGV[2] .. ARGV[1], ARGV[3])
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] holds:<node>, KEYS[2] the holders set; ARGV[1] the node, ARGV[2] its heartbeat
# key: a dead node whose set is empty leaves the holders set (it is not looked at again
# until it holds something, which only a live node can do)
_FORGET = """
if redis.call('SCARD', KEYS[1]) == 0 and redis.call('EXISTS', ARGV[2]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# Queue entries of messages with a position (every message that came through the fan-out)
# refer to one shared body, `bodies` (hash position -> encoded message), counted in `refs`
# (hash position -> queue entries referring to it): positions are unique in the cluster,
# unlike uids. The scripts below keep the count with the entries, in the same transaction.
_UNREF = """
local function unref(raw)
  local ref = cjson.decode(raw)['ref']
  if ref then
    if redis.call('HINCRBY', KEYS[5], ref, -1) <= 0 then
      redis.call('HDEL', KEYS[5], ref)
      redis.call('HDEL', KEYS[4], ref)
    end
  end
end
"""

# KEYS[1] qe:C, KEYS[2] qs:C, KEYS[3] qi:C, KEYS[4] bodies, KEYS[5] refs; ARGV[1] seq,
# ARGV[2] the entry (JSON), ARGV[3] its state, ARGV[4] the position it refers to ("" for
# an entry with its message inline), ARGV[5] the encoded message
_QUEUE_PUT = (
    _UNREF
    + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then unref(old) end
if ARGV[4] ~= '' then
  redis.call('HSETNX', KEYS[4], ARGV[4], ARGV[5])
  redis.call('HINCRBY', KEYS[5], ARGV[4], 1)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
return 0
"""
)

# KEYS as _QUEUE_PUT; ARGV[1] seq
_QUEUE_DELETE = (
    _UNREF
    + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then unref(old) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 0
"""
)

# KEYS as _QUEUE_PUT, then the session's other keys to delete; ARGV[1] the sessions hash,
# ARGV[2] C
_SESSION_DELETE = (
    _UNREF
    + """
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do unref(raw) end
redis.call('HDEL', ARGV[1], ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], unpack(KEYS, 6))
return 0
"""
)

# how many session ids one start-up round trip looks at (HSCAN count, MGET of their locks)
_SWEEP_CHUNK = 1000

KickHandler = Callable[[str], Awaitable[None]]


# -- encoding ---------------------------------------------------------------------------------


def _message_json(m: Message) -> dict[str, Any]:
    return {
        "topic": m.topic,
        "payload": base64.b64encode(m.payload).decode("ascii"),
        "qos": m.qos,
        "retain": m.retain,
        "properties": dump_properties(m.properties) if m.properties else None,
        "expires_at": m.expires_at,
        "created_at": m.created_at,
        "uid": m.uid,
        "log_id": m.log_id,
        "origin": m.origin,
    }


def _message(d: dict[str, Any]) -> Message:
    return Message(
        topic=d["topic"],
        payload=base64.b64decode(d["payload"]),
        qos=d["qos"],
        retain=d["retain"],
        properties=load_properties(d["properties"]) if d["properties"] else {},
        expires_at=d["expires_at"],
        created_at=d["created_at"],
        uid=d["uid"],
        log_id=d["log_id"],
        origin=d["origin"],
    )


def _state(wire_id: int | None, state: QueueState) -> str:
    return f"{'' if wire_id is None else wire_id}:{state}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _queue_script(pipe: Any, script: Any, keys: list[str], args: list[Any]) -> None:
    """Queue a registered script on a transaction pipeline (the pipeline loads it first
    if Redis does not know it), as `AsyncScript.__call__` does, without awaiting."""
    pipe.scripts.add(script)
    pipe.evalsha(script.sha, len(keys), *keys, *args)


@dataclass(frozen=True, slots=True)
class Claim:
    """What `claim_connection` found."""

    taken: bool  # this node holds the client id now
    stored: bool  # a session of it is stored in Redis (load it before answering)


@dataclass(slots=True)
class _Op:
    name: str  # the engine method, for WriteFailure.op
    client_id: str
    message: Message | None
    apply: Callable[[Any], None]  # queues its commands on the pipeline


class RedisSessionStore:
    """The SessionStore port (plus its share of the Journal) on one Redis server."""

    keeps_queue = False  # the whole queue is loaded: memory bounded by the persistent limits

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = DEFAULT_PREFIX,
        node_id: str = "",
        *,
        takeover_timeout: float = 6.0,
    ) -> None:
        if not node_id:
            raise ValueError("a Redis session store needs this node's id")
        self.client = client
        self.prefix = prefix
        self.node_id = node_id
        self.takeover_timeout = takeover_timeout
        self._sess = f"{prefix}sess"
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._hand = client.register_script(_HAND)
        self._forget = client.register_script(_FORGET)
        self._queue_put = client.register_script(_QUEUE_PUT)
        self._queue_delete = client.register_script(_QUEUE_DELETE)
        self._session_delete = client.register_script(_SESSION_DELETE)
        # lock scripts of one loop turn (a connect storm) share one round trip
        self.calls = CallBatch(client)
        self._bodies = f"{prefix}bodies"  # position -> encoded message, shared by queues
        self._refs = f"{prefix}refs"  # position -> queue entries that refer to it
        self._holds = f"{prefix}holds:"  # + node id: set of the client ids it holds
        self._holders = f"{prefix}holders"  # set of node ids that have a holds set
        self._pending: list[_Op] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._failures = 0  # count of failed writes so far: marks compare against it
        self._failed_sessions: dict[str, int] = {}
        self._failed_uids: OrderedDict[int, None] = OrderedDict()
        self._listeners: list[FailureListener] = []
        self._pubsub: redis.asyncio.client.PubSub | None = None
        self._kick_task: asyncio.Task[None] | None = None
        self._kicks: set[asyncio.Task[None]] = set()
        self.kicks_handled = 0
        self._stopping = False
        # the fan-out position this node has routed up to (RedisEngine sets it to its
        # reader's): each write batch records it in `queued`, so whoever takes a session of
        # this node next replays what came after (replay_from)
        self.position: Callable[[], int] = lambda: 0
        self._queued = f"{prefix}queued"  # hash node id -> position its sessions are queued to
        self._upto = f"{prefix}upto"  # hash client id -> position it was handed over at
        self._marks_good = True  # False after a failed write: the mark stops moving
        self.previous_holders: dict[str, str] = {}  # client id -> holder before try_lock

    def _k(self, kind: str, client_id: str) -> str:
        return f"{self.prefix}{kind}:{client_id}"

    # -- write-behind ----------------------------------------------------------------------

    def _write(
        self, name: str, client_id: str, apply: Callable[[Any], None], m: Message | None = None
    ) -> None:
        self._pending.append(_Op(name, client_id, m, apply))
        self._wake()

    def _wake(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        # started on the next tick: every write of the current tick is in the first batch
        while self._pending or self._waiters:
            batch, self._pending = self._pending, []
            waiters, self._waiters = self._waiters, []
            # every message routed up to here queued its writes in this batch or before
            position = self.position()
            if batch:
                await self._send(batch, position)
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _send(self, batch: list[_Op], position: int = 0) -> None:
        pipe = self.client.pipeline(transaction=True)
        spans: list[tuple[_Op, int, int]] = []
        for op in batch:
            start = len(pipe.command_stack)
            op.apply(pipe)
            spans.append((op, start, len(pipe.command_stack)))
        if self._marks_good:
            # a failed write froze the mark: a taker replays more (duplicates), never less.
            # Position 0 is recorded too: a node whose reader had routed nothing yet when
            # it wrote a session must leave "replay from the start", not "nothing known"
            pipe.hset(self._queued, self.node_id, str(position))
        try:
            results = await pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as exc:
            # unreachable or the transaction refused: nothing of the batch is known stored
            for op in batch:
                self._failed(op, str(exc) or type(exc).__name__)
            return
        for op, start, end in spans:
            errors = [r for r in results[start:end] if isinstance(r, Exception)]
            if errors:
                self._failed(op, str(errors[0]))

    def _failed(self, op: _Op, error: str) -> None:
        self._failures += 1
        self._marks_good = False
        self._failed_sessions[op.client_id] = self._failures
        if op.message is not None:
            self._failed_uids[op.message.uid] = None
            while len(self._failed_uids) > _FAILED_MEMORY:
                self._failed_uids.popitem(last=False)
        failure = WriteFailure(op.name, op.message, op.client_id, error)
        for listener in self._listeners:
            listener(failure)

    async def sync(self) -> None:
        """Once every write issued before the call is answered by Redis (or failed)."""
        if not self._pending and (self._flusher is None or self._flusher.done()):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake()
        await waiter

    def write_failed(self, message: Message) -> bool:
        return message.uid in self._failed_uids

    def failure_mark(self) -> int:
        return self._failures

    def session_failed_since(self, client_id: str, mark: int) -> bool:
        return self._failed_sessions.get(client_id, 0) > mark

    def add_failure_listener(self, listener: FailureListener) -> None:
        self._listeners.append(listener)

    # -- SessionStore writes ---------------------------------------------------------------

    def session_put(
        self,
        client_id: str,
        protocol_level: int,
        expiry_interval: int | None,
        disconnected_at: float | None,
        owner: str | None = None,
    ) -> None:
        row = json.dumps(
            {
                "protocol_level": protocol_level,
                "expiry_interval": expiry_interval,
                "disconnected_at": disconnected_at,
                "owner": owner,
            }
        )
        self._write("session_put", client_id, lambda p: p.hset(self._sess, client_id, row))

    def _queue_keys(self, client_id: str) -> list[str]:
        return [
            self._k("qe", client_id),
            self._k("qs", client_id),
            self._k("qi", client_id),
            self._bodies,
            self._refs,
        ]

    def session_delete(self, client_id: str) -> None:
        keys = self._queue_keys(client_id) + [self._k(k, client_id) for k in ("subs", "in")]

        def apply(p: Any) -> None:
            _queue_script(p, self._session_delete, keys, [self._sess, client_id])

        self._write("session_delete", client_id, apply)

    def subscription_put(self, client_id: str, sub: StoredSubscription) -> None:
        o = sub.options
        value = json.dumps(
            {
                "qos": o.qos,
                "no_local": o.no_local,
                "retain_as_published": o.retain_as_published,
                "retain_handling": o.retain_handling,
                "subscription_id": sub.subscription_id,
            }
        )
        key = self._k("subs", client_id)
        self._write("subscription_put", client_id, lambda p: p.hset(key, sub.filter, value))

    def subscription_delete(self, client_id: str, flt: str) -> None:
        key = self._k("subs", client_id)
        self._write("subscription_delete", client_id, lambda p: p.hdel(key, flt))

    def queue_put(self, client_id: str, entry: StoredQueueEntry) -> None:
        m = entry.message
        row: dict[str, Any] = {"qos": entry.qos, "retain": entry.retain}
        ref, blob = "", b""
        if m.log_id is not None:
            # a position: the body is stored once for every queue it is in (`bodies`)
            ref, blob = str(m.log_id), encode(m)
            row["ref"] = ref
        else:  # no position ($SYS, node-local): the message goes inline
            row["message"] = _message_json(m)
        args = [str(entry.seq), json.dumps(row), _state(entry.wire_id, entry.state), ref, blob]
        keys = self._queue_keys(client_id)

        def apply(p: Any) -> None:
            _queue_script(p, self._queue_put, keys, args)

        self._write("queue_put", client_id, apply, m)

    def queue_update(
        self, client_id: str, seq: int, wire_id: int | None, state: QueueState
    ) -> None:
        key, value = self._k("qs", client_id), _state(wire_id, state)
        self._write("queue_update", client_id, lambda p: p.hset(key, str(seq), value))

    def queue_delete(self, client_id: str, seq: int) -> None:
        keys = self._queue_keys(client_id)

        def apply(p: Any) -> None:
            _queue_script(p, self._queue_delete, keys, [str(seq)])

        self._write("queue_delete", client_id, apply)

    def queue_load(
        self, client_id: str, from_seq: int, limit: int
    ) -> asyncio.Future[list[StoredQueueEntry]]:
        # keeps_queue is False: load_session(s) hands back the whole queue
        done: asyncio.Future[list[StoredQueueEntry]] = asyncio.get_running_loop().create_future()
        done.set_result([])
        return done

    def inbound_qos2_put(self, client_id: str, packet_id: int) -> None:
        key = self._k("in", client_id)
        self._write("inbound_qos2_put", client_id, lambda p: p.sadd(key, packet_id))

    def inbound_qos2_delete(self, client_id: str, packet_id: int) -> None:
        key = self._k("in", client_id)
        self._write("inbound_qos2_delete", client_id, lambda p: p.srem(key, packet_id))

    # -- loading ---------------------------------------------------------------------------

    async def load_session(self, client_id: str) -> StoredSession | None:
        """The stored session of `client_id` as of every write issued before the call."""
        await self.sync()
        pipe = self.client.pipeline(transaction=True)  # one consistent view
        pipe.hget(self._sess, client_id)
        pipe.hgetall(self._k("subs", client_id))
        pipe.zrange(self._k("qi", client_id), 0, -1)
        pipe.hgetall(self._k("qe", client_id))
        pipe.hgetall(self._k("qs", client_id))
        pipe.smembers(self._k("in", client_id))
        row, subs, order, entries, states, inbound = await pipe.execute()
        if row is None:
            return None
        refs = sorted({e["ref"] for e in map(json.loads, entries.values()) if "ref" in e})
        # the shared bodies: only this node writes C, and a body lives while C refers to it
        blobs = (
            dict(zip(refs, await self.client.hmget(self._bodies, refs), strict=True))
            if refs
            else {}
        )
        r = json.loads(row)
        session = StoredSession(
            client_id,
            r["protocol_level"],
            r["expiry_interval"],
            r["disconnected_at"],
            owner=r["owner"],
        )
        for flt, raw in sorted(subs.items()):
            s = json.loads(raw)
            options = SubscriptionOptions(
                s["qos"], s["no_local"], s["retain_as_published"], s["retain_handling"]
            )
            session.subscriptions.append(
                StoredSubscription(_text(flt), options, s["subscription_id"])
            )
        entries = {_text(k): v for k, v in entries.items()}
        states = {_text(k): _text(v) for k, v in states.items()}
        for member in order:
            seq = _text(member)
            raw = entries.get(seq)
            if raw is None:
                continue
            e = json.loads(raw)
            pid_text, _, state = states.get(seq, ":queued").partition(":")
            if "ref" in e:
                blob = blobs.get(e["ref"])
                if blob is None:  # cannot be while the entry refers to it; never crash
                    log.error("session %r: body of position %s missing", client_id, e["ref"])
                    continue
                message = decode(blob)
                message.log_id = int(e["ref"])
            else:
                message = _message(e["message"])
            session.queue.append(
                StoredQueueEntry(
                    int(seq),
                    message,
                    e["qos"],
                    e["retain"],
                    int(pid_text) if pid_text else None,
                    cast(QueueState, state),
                )
            )
        session.inbound_qos2 = sorted(int(_text(p)) for p in inbound)
        return session

    async def load_sessions(
        self, queue_window: int = 0, *, adopting: bool = False
    ) -> list[StoredSession]:
        """Take every stored session no live node holds, and load those.

        `adopting` (a running node, every heartbeat): read the holder index only. One
        SMEMBERS of the holders set and one EXISTS per holding node tell the dead nodes;
        only their sets are read, one lock script per session in them. With no dead node
        that is two round trips, whatever the number of sessions. This node's own locks
        are left alone (those sessions are in its hub, or on their way to another node).

        At start-up (the default) it also takes the sessions this node id holds already (a
        restarted worker keeps its slot's id), then sweeps the session ids once, 1,000 to a
        round trip with one MGET of their locks, for sessions whose lock is free or whose
        holder is dead but not indexed (written by a version without the index): lock
        scripts run only for those. The window is ignored (keeps_queue is False: whole
        queues are loaded)."""
        loaded: list[StoredSession] = []
        taken: set[str] = set()
        others = [h for h in await self.holders() if h != self.node_id]
        dead = await self._dead(others)
        if not adopting:
            await self._take_all(self.node_id, True, loaded, taken)
        for node in dead:
            await self._take_all(node, False, loaded, taken)
            await self._forget(
                keys=[self._holds + node, self._holders], args=[node, node_key(self.prefix, node)]
            )
        if not adopting:
            await self._sweep(loaded, taken)
        return loaded

    async def holders(self) -> list[str]:
        """The nodes that hold (or held, and are not yet adopted from) any client id."""
        return sorted(_text(n) for n in await self.client.smembers(self._holders))

    async def held_by(self, node_id: str) -> set[str]:
        """The client ids the index says `node_id` holds."""
        return {_text(c) for c in await self.client.smembers(self._holds + node_id)}

    async def _dead(self, nodes: list[str]) -> list[str]:
        if not nodes:
            return []
        pipe = self.client.pipeline(transaction=False)
        for node in nodes:
            pipe.exists(node_key(self.prefix, node))
        beating = await pipe.execute()
        return [node for node, alive in zip(nodes, beating, strict=True) if not alive]

    async def _take_all(
        self, node: str, own: bool, loaded: list[StoredSession], taken: set[str]
    ) -> None:
        """Take and load every session in `node`'s holds set."""
        async for raw in self.client.sscan_iter(self._holds + node, count=_SWEEP_CHUNK):
            client_id = _text(raw)
            if client_id not in taken:
                await self._take(client_id, own, node, loaded, taken)

    async def _take(
        self,
        client_id: str,
        own: bool,
        found_in: str,
        loaded: list[StoredSession],
        taken: set[str],
    ) -> None:
        if await self.try_lock(client_id, own=own, found_in=found_in) is None:
            return
        taken.add(client_id)
        session = await self.load_session(client_id)
        if session is not None:
            loaded.append(session)
        else:  # no session behind the lock (a clean one, or deleted meanwhile)
            await self.release(client_id)

    async def _sweep(self, loaded: list[StoredSession], taken: set[str]) -> None:
        """Start-up: sessions whose lock is free, or a dead node's that the index missed."""
        cursor = 0
        alive: dict[str, bool] = {self.node_id: True}
        while True:
            cursor, rows = await self.client.hscan(self._sess, cursor, count=_SWEEP_CHUNK)
            ids = [_text(k) for k in rows if _text(k) not in taken]
            locks = await self.client.mget([self._k("lock", c) for c in ids]) if ids else []
            for client_id, raw in zip(ids, locks, strict=True):
                holder = None if raw is None else _text(raw)
                if holder is not None and holder not in alive:
                    alive[holder] = bool(await self.client.exists(node_key(self.prefix, holder)))
                if holder is None or holder == self.node_id or not alive[holder]:
                    await self._take(client_id, True, "", loaded, taken)
            if cursor == 0:
                return

    # -- locks and the takeover kick -------------------------------------------------------

    async def try_lock(self, client_id: str, *, own: bool = True, found_in: str = "") -> str | None:
        """Take `lock:C` if free, a dead node's, or (`own`) ours already. Returns the
        previous holder ("" if none) when taken, None when a live node holds it.
        `found_in`: the node whose holds set listed C (it leaves that set if stale)."""
        taken = await self._lock(client_id, own=own, found_in=found_in)
        return None if taken is None else taken[0]

    async def _lock(
        self, client_id: str, *, own: bool = True, found_in: str = "", look: bool = False
    ) -> tuple[str, bool] | None:
        """try_lock, plus (`look`) whether C has a stored session row: (previous holder,
        stored) when taken. One script run, sent with the other calls of this loop turn."""
        reply = await self.calls.script(
            self._acquire,
            [self._k("lock", client_id)],
            [
                self.node_id,
                node_key(self.prefix, ""),
                "1" if own else "0",
                self._holds,
                client_id,
                self._holders,
                found_in,
                self._sess if look else "",
            ],
        )
        if not reply[0]:
            return None
        holder = _text(reply[1])
        if holder != self.node_id or client_id not in self.previous_holders:
            # taking a lock this node already holds (a client's claim while the adopt loop
            # is still loading the session it took from a dead node) keeps the real
            # predecessor: the replay must start from that node's recorded position
            self.previous_holders[client_id] = holder
        return holder, bool(reply[2])

    async def holder(self, client_id: str) -> str | None:
        raw = await self.client.get(self._k("lock", client_id))
        return None if raw is None else _text(raw)

    async def claim(self, client_id: str) -> bool:
        """Take `client_id` for a connection to this node: kick whichever live node holds it
        and wait until it let go (or died). False after `takeover_timeout`."""
        return (await self.claim_connection(client_id)).taken

    async def claim_connection(self, client_id: str) -> Claim:
        """`claim`, and whether a session of `client_id` is stored (to be loaded before
        CONNACK). A client id nobody holds costs one script run in a batched round trip.
        As `load_session`, it sees every write this node issued before the call (no wait
        when none is pending, as for clean sessions, which write nothing)."""
        await self.sync()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.takeover_timeout
        kicked: tuple[str, float] | None = None  # whom, when
        while True:
            taken = await self._lock(client_id, look=True)
            if taken is not None:
                return Claim(True, taken[1])
            holder = await self.holder(client_id)
            # kick again now and then: a kick sent while the holder was resubscribing is lost
            if holder is not None and (
                kicked is None or kicked[0] != holder or loop.time() - kicked[1] > _KICK_AGAIN
            ):
                await self.client.publish(self._k("kick", holder), f"{self.node_id}\n{client_id}")
                kicked = (holder, loop.time())
            if loop.time() >= deadline:
                return Claim(False, False)
            await asyncio.sleep(_CLAIM_POLL)

    async def mark_handed(self, client_id: str, position: int) -> None:
        """This node stopped queueing for `client_id` at fan-out `position` (a kick)."""
        await self.client.hset(self._upto, client_id, str(position))

    async def replay_from(self, client_id: str) -> int | None:
        """The fan-out position after which the session just taken may have missed
        messages: where its last holder handed it over, or where that holder's writes were
        queued to. None: nothing known (a new session, or the holder never recorded one)."""
        handed = await self.client.hget(self._upto, client_id)
        if handed is not None:
            await self.client.hdel(self._upto, client_id)
            return int(handed)
        holder = self.previous_holders.pop(client_id, "")
        if not holder:
            return None
        queued = await self.client.hget(self._queued, holder)
        return None if queued is None else int(queued)

    async def read_fanout(self, after: int, upto: int) -> list[Message]:
        """The messages at positions after..upto of the fan-out stream (its entries are
        publish batches, id = their last position)."""
        if upto <= after:
            return []
        entries: Any = await self.client.xrange(FANOUT, stream_id(after + 1), "+")
        found = []
        for _entry_id, fields in entries:
            for position, blob in fanout_messages(fields):
                if after < position <= upto:
                    message = decode(blob)
                    message.log_id = position
                    found.append(message)
        return found

    async def release(self, client_id: str) -> None:
        """Let go of `client_id` (after its writes were made durable)."""
        await self.sync()
        await self.calls.script(
            self._release, [self._k("lock", client_id)], [self.node_id, self._holds, client_id]
        )

    async def hand_over(self, client_id: str, claimant: str) -> None:
        """Give `client_id` to node `claimant` (after its writes were made durable)."""
        await self.sync()
        await self._hand(
            keys=[self._k("lock", client_id)],
            args=[self.node_id, claimant, self._holds, client_id, self._holders],
        )

    async def start_kicks(self, on_kick: KickHandler) -> None:
        """Listen for kicks addressed to this node: `on_kick(C)` must close C's connection,
        make its writes durable and forget the session; the lock is released after it."""
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._k("kick", self.node_id))
        self._kick_task = asyncio.create_task(self._read_kicks(on_kick), name="pushwire-kicks")

    async def _read_kicks(self, on_kick: KickHandler) -> None:
        assert self._pubsub is not None
        # `_stopping`: redis-py may turn the cancellation into a connection error
        while not self._stopping:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except (redis.RedisError, OSError) as exc:
                if self.stopping():
                    break
                # the claimant keeps kicking until its deadline; try to listen again
                log.warning("sessions: kick channel lost (%s); resubscribing", exc)
                await asyncio.sleep(0.5)
                with contextlib.suppress(redis.RedisError, OSError):
                    await self._pubsub.subscribe(self._k("kick", self.node_id))
                continue
            if msg is None or msg.get("type") != "message":
                continue
            claimant, _, client_id = _text(msg["data"]).partition("\n")
            task = asyncio.create_task(self._kicked(client_id, claimant, on_kick))
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)

    def stopping(self) -> bool:
        return self._stopping

    async def _kicked(self, client_id: str, claimant: str, on_kick: KickHandler) -> None:
        try:
            await on_kick(client_id)
            await self.hand_over(client_id, claimant)
            self.kicks_handled += 1
        except Exception:
            log.exception("sessions: handing %r over to another node failed", client_id)

    async def close(self) -> None:
        """Stop listening for kicks and write what is pending (locks stay: the sessions
        stay ours until this node's heartbeat lapses or it is asked for them)."""
        self._stopping = True
        if self._kick_task is not None:
            self._kick_task.cancel()
            await asyncio.gather(self._kick_task, *self._kicks, return_exceptions=True)
            self._kick_task = None
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None
        await self.sync()
