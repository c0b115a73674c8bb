"""Persistent MQTT sessions that follow their client from node to node (engine=redis).

One node at a time holds a client id (engines/redis/sessions.py: `lock:<client id>`): it
alone routes to, queues for and writes that session, online or offline. When the client
connects to another node, that node `claim`s it before it answers CONNECT: the holder is
kicked, closes the old connection exactly as a takeover within one node does
(`close_taken_over`), makes the session's writes durable, forgets the session (without
deleting it) and lets go; the claimant loads it from Redis with its subscriptions, queue
and inflight messages and puts it in its hub, and `Hub.connect` then finds it as if it had
always been there.

Who queues for an OFFLINE persistent session: its holder, the node that last had the
client (or adopted the session). Every node receives every message from the fan-out, so
the holder sees each publish wherever it was made and queues it under the lock, and the
publisher's acknowledgement waits for the history write (the Redis stream) that makes the
message itself durable. If the holder dies (kill -9), its heartbeat lapses after
`cluster_node_timeout` and the first live node to look (`adopt` runs every heartbeat
interval, and every start-up) takes the lock and loads the session. See docs/cluster.md
for the window this leaves and how the history closes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import redis

from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.core.session import Session
from pushwire.core.topics import matches, split_shared
from pushwire.engines.base import StoredSession
from pushwire.engines.redis.presence import RedisPresence
from pushwire.engines.redis.sessions import RedisSessionStore
from pushwire.model import ClusterFigures

log = logging.getLogger(__name__)


class SessionHandover:
    def __init__(
        self, hub: Hub, store: RedisSessionStore, presence: RedisPresence, adopt_interval: float
    ) -> None:
        self.hub = hub
        self.store = store
        self.presence = presence
        self.adopt_interval = adopt_interval
        self.sessions_handed_over = 0  # kicked away from this node
        self.sessions_taken_over = 0  # loaded from another node (or a dead one)
        self.replayed = 0  # fan-out messages offered to taken sessions (their last holder's gap)
        self._task: asyncio.Task[None] | None = None
        # every live node's last heartbeat figures and their totals ($SYS, /metrics)
        self.figures = ClusterFigures()
        self.publish_sys = False  # the server turns it on with sys_interval > 0
        # per client id, the last presence/lock update in flight: they run in order
        self._chains: dict[str, asyncio.Future[None]] = {}
        self._claiming: set[str] = set()
        self._taking: dict[str, asyncio.Future[None]] = {}  # client id -> its take, running
        self._stopping = False

    async def start(self) -> None:
        """Heartbeat first (the locks this node takes are only good while it beats), then
        listen for kicks, then look for orphans now and then."""
        await self.presence.start()
        await self.store.start_kicks(self.let_go)
        self.figures = await self.presence.cluster_figures()
        self._task = asyncio.create_task(self._adopt_loop(), name="pushwire-adopt")

    async def stop(self) -> None:
        if self._chains:
            await asyncio.gather(*self._chains.values(), return_exceptions=True)
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.store.close()
        await self.presence.stop()

    # -- this node takes a client ----------------------------------------------------------

    async def claim(self, client_id: str) -> bool:
        """Make this node the holder of `client_id` before its CONNECT is answered. False
        when the holder did not let go in time (the CONNECT is refused: never two holders)."""
        self._claiming.add(client_id)
        try:
            previous = self._chains.get(client_id)
            if previous is not None:  # the last connection's goodbye first
                await asyncio.gather(previous, return_exceptions=True)
            claimed = await self.store.claim_connection(client_id)
            if not claimed.taken:
                log.warning("client %r: its node did not hand it over in time", client_id)
                return False
            # no stored row (a clean session's client id, or a new one): nothing to load
            if claimed.stored and client_id not in self.hub.sessions:
                stored = await self.store.load_session(client_id)
                if stored is not None:
                    await self._take(stored)
            self.store.previous_holders.pop(client_id, None)
            return True
        finally:
            self._claiming.discard(client_id)

    # -- the presence directory, and locks of sessions that ended --------------------------

    def connected(self, client_id: str) -> None:
        """A connection of `client_id` was accepted here (CONNACK sent)."""
        self._chain(client_id, lambda: self.presence.client_online(client_id))

    def gone(self, client_id: str) -> None:
        """A connection of `client_id` ended here. A session that ended with it (clean or
        expired: no longer in the hub) gives its lock back, so locks do not pile up in
        Redis for every client id ever seen; a persistent one stays held (it is queued for
        here)."""

        async def run() -> None:
            await self.presence.client_offline(client_id)
            if client_id not in self.hub.sessions and client_id not in self._claiming:
                await self.store.release(client_id)

        self._chain(client_id, run)

    def _chain(self, client_id: str, step: Callable[[], Awaitable[None]]) -> None:
        previous = self._chains.get(client_id)

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await step()
            except (redis.RedisError, OSError) as exc:
                log.warning("presence of client %r not updated: %s", client_id, exc)

        task = asyncio.ensure_future(run())
        self._chains[client_id] = task

        def done(t: asyncio.Future[None]) -> None:
            if self._chains.get(client_id) is t:
                del self._chains[client_id]

        task.add_done_callback(done)

    async def _take(self, stored: StoredSession) -> bool:
        """Install a session taken from another node (or a dead one), with what its last
        holder did not queue: the fan-out entries after the position it recorded, up to the
        position this node routes from now on, offered through its subscriptions in order
        before anything newer. False when it was here already."""
        client_id = stored.client_id
        busy = self._taking.get(client_id)
        if busy is not None:
            # the adopt loop and a client's claim can take one session at once: the first
            # installs it with its replay; a second would find no predecessor left (the
            # first popped it), install it without one, and the first would then drop its
            # replay as "here already"
            await asyncio.shield(busy)
            return False
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._taking[client_id] = done
        try:
            after = await self.store.replay_from(client_id)
            missed: list[Message] = []
            if after is not None:
                while True:  # until no fan-out entry came in while reading
                    upto = self.store.position()
                    missed = await self.store.read_fanout(after, upto)
                    if self.store.position() == upto:
                        break
            if client_id in self.hub.sessions:
                return False
            self._install(stored)
            session = self.hub.sessions.get(client_id)
            if session is not None and missed:
                for message in missed:
                    offer_through_subscriptions(session, message)
                self.replayed += len(missed)
            return True
        finally:
            del self._taking[client_id]
            done.set_result(None)

    def _install(self, stored: StoredSession) -> None:
        if self.hub._expired(stored, time.time()):
            self.hub.engine.session_delete(stored.client_id)
            return
        self.hub._restore_session(stored)
        self.sessions_taken_over += 1

    # -- another node takes a client from this one -----------------------------------------

    async def let_go(self, client_id: str) -> None:
        """The kick: close the connection, write the session, forget it here."""
        hub = self.hub
        session = hub.sessions.get(client_id)
        if session is None:
            return
        link = session.link
        if link is not None:
            hub._stop_retained(session)
            session.detach()
            link.close_taken_over()
        # stop routing to it first, so nothing is queued here after the last sync; the
        # claimant replays what comes after this position
        for flt in list(session.subscriptions):
            hub._unindex(session, flt)
        position = self.store.position()
        if hub.sessions.get(client_id) is session:
            del hub.sessions[client_id]
        if session.expiry_handle is not None:
            session.expiry_handle.cancel()
            session.expiry_handle = None
        if session.journaled:
            session.journal_session()  # disconnected_at: the expiry clock runs from here
        await hub.sync_future()
        await self.store.mark_handed(client_id, position)
        session.release_all()
        self.sessions_handed_over += 1

    # -- orphans of dead nodes -------------------------------------------------------------

    async def adopt(self) -> int:
        """Take every stored session whose holder is gone; how many were taken."""
        taken = 0
        for stored in await self.store.load_sessions(adopting=True):
            if await self._take(stored):
                taken += 1
        if taken:
            log.info("adopted %d sessions of nodes that stopped", taken)
        return taken

    async def _adopt_loop(self) -> None:
        # redis-py may turn a cancellation in the middle of a command into a connection
        # error, which the loop would swallow: `_stopping` ends it whatever the error was
        while not self._stopping:
            await asyncio.sleep(self.adopt_interval)
            try:
                await self.refresh_figures()
                await self.adopt()
            except (redis.RedisError, OSError) as exc:
                if not self._stopping:
                    log.warning("adopting sessions failed: %s", exc)

    # -- cluster figures -------------------------------------------------------------------

    async def refresh_figures(self) -> None:
        self.figures = await self.presence.cluster_figures()
        if self.publish_sys:
            publish_cluster_sys(self.hub, self.presence.node_id, self.figures)


def cluster_sys_values(node_id: str, figures: ClusterFigures) -> dict[str, str]:
    """Cluster totals under $SYS/broker/cluster/ and each node's own figures under
    $SYS/broker/nodes/<node id>/: both mean the same whichever node publishes them, so
    they can share one retained topic space."""
    values = {"$SYS/broker/node_id": node_id}
    for name, value in figures.totals.items():
        values[f"$SYS/broker/cluster/{SYS_NAMES.get(name, name)}"] = str(int(value))
    for node, own in figures.nodes.items():
        for name, value in own.items():
            values[f"$SYS/broker/nodes/{node}/{SYS_NAMES.get(name, name)}"] = str(int(value))
    return values


# figure name -> its $SYS path, in mosquitto's words where it has one
SYS_NAMES = {
    "clients_connected": "clients/connected",
    "messages_in": "messages/received",
    "messages_out": "messages/sent",
    "bytes_in": "bytes/received",
    "bytes_out": "bytes/sent",
}


def publish_cluster_sys(hub: Hub, node_id: str, figures: ClusterFigures) -> None:
    for topic, value in cluster_sys_values(node_id, figures).items():
        previous = hub.retained.get(topic)
        if previous is not None and previous.payload == value.encode():
            continue  # unchanged: don't wake subscribers
        hub.publish(Message(topic, value.encode(), 0, True), internal=True)


def offer_through_subscriptions(session: Session, message: Message) -> None:
    """Offer one message to one session as the hub's routing would: at the highest QoS of
    its matching subscriptions (a shared one counts as the session's own: it was the
    member when its holder stopped), with their identifiers, honouring no local."""
    qos = -1
    retain = False
    ids: list[int] = []
    own = message.origin is not None and message.origin == session.client_id
    for sub in session.subscriptions.values():
        _, flt = split_shared(sub.filter)
        if not matches(flt, message.topic) or (own and sub.options.no_local):
            continue
        qos = max(qos, min(message.qos, sub.options.qos))
        retain = retain or (message.retain and sub.options.retain_as_published)
        if sub.subscription_id:
            ids.append(sub.subscription_id)
    if qos >= 0:
        session.offer(message, qos, retain, ids, None)
