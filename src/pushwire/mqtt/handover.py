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

import redis

from pushwire.core.hub import Hub
from pushwire.engines.base import StoredSession
from pushwire.engines.redis.presence import RedisPresence
from pushwire.engines.redis.sessions import RedisSessionStore

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
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Heartbeat first (the locks this node takes are only good while it beats), then
        listen for kicks, then look for orphans now and then."""
        await self.presence.start()
        await self.store.start_kicks(self.let_go)
        self._task = asyncio.create_task(self._adopt_loop(), name="pushwire-adopt")

    async def stop(self) -> None:
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
        if not await self.store.claim(client_id):
            log.warning("client %r: its node did not hand it over in time", client_id)
            return False
        if client_id not in self.hub.sessions:
            stored = await self.store.load_session(client_id)
            if stored is not None and client_id not in self.hub.sessions:
                self._install(stored)
        return True

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
        # stop routing to it first, so nothing is queued here after the last sync
        for flt in list(session.subscriptions):
            hub._unindex(session, flt)
        if hub.sessions.get(client_id) is session:
            del hub.sessions[client_id]
        if session.expiry_handle is not None:
            session.expiry_handle.cancel()
            session.expiry_handle = None
        if session.journaled:
            session.journal_session()  # disconnected_at: the expiry clock runs from here
        await hub.sync_future()
        session.release_all()
        self.sessions_handed_over += 1

    # -- orphans of dead nodes -------------------------------------------------------------

    async def adopt(self) -> int:
        """Take every stored session whose holder is gone; how many were taken."""
        taken = 0
        for stored in await self.store.load_sessions(skip=set(self.hub.sessions)):
            if stored.client_id not in self.hub.sessions:
                self._install(stored)
                taken += 1
        if taken:
            log.info("adopted %d sessions of nodes that stopped", taken)
        return taken

    async def _adopt_loop(self) -> None:
        while True:
            await asyncio.sleep(self.adopt_interval)
            try:
                await self.adopt()
            except (redis.RedisError, OSError) as exc:
                log.warning("adopting sessions failed: %s", exc)
