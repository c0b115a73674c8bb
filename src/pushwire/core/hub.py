"""The hub: routes every published message to every matching subscription.

It owns the sessions, the subscription trie and the retained messages, and journals what
must survive to the engine. Transports call `connect`, `publish`, `subscribe`, ... and are
called back through the `Link` attached to a session; the hub never knows which transport a
client came through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from pushwire.core.message import Message
from pushwire.core.pressure import MAX_WAIT, Backpressure
from pushwire.core.readers import ReaderGroup
from pushwire.core.receipt import Receipt
from pushwire.core.retain import RetainedStore
from pushwire.core.retained_stream import RetainedStream
from pushwire.core.routes import Route, RouteCache, Subscriber, build_route
from pushwire.core.session import (
    JOURNALED,
    REFUSED,
    TAKEN,
    Delivery,
    Link,
    ReceiveFilter,
    Session,
    SessionEvents,
    SessionFactory,
    SessionLimits,
    Subscription,
)
from pushwire.core.shared import SharedGroup
from pushwire.core.stats import Stats
from pushwire.core.topics import SubscriptionTrie, split_shared
from pushwire.model import StoredSession
from pushwire.ports import Broker, Engine

log = logging.getLogger(__name__)

# sees every routed message; returns True when it journaled something to the engine
Observer = Callable[[Message], bool]
# sees a run of routed messages at once, in order (see `Hub.hold_observers`)
RunObserver = Callable[[list[Message]], object]
# what Backpressure holds publishers for while the engine's write backlog is over its bound
STORE = "store"


class Hub:
    def __init__(
        self,
        engine: Engine,
        limits: SessionLimits | None = None,
        retained_slice: int = 32,
        route_cache_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.engine = engine
        self.limits = limits or SessionLimits()
        self.stats = Stats()
        self.pressure = Backpressure()
        self.sessions: dict[str, Session] = {}
        # makes every session: a transport with state of its own in a session gives its
        # subclass of Session (the MQTT listener: pushwire.mqtt.session.MqttSession)
        self.session_factory: SessionFactory = Session
        # the one subscription tree: keys are sessions, shared groups that stand for several
        # sessions, and the message log's reader groups (core/readers.py: one per filter
        # HTTP/WebSocket readers listen to, mapped to None)
        self.subscriptions: SubscriptionTrie[Subscriber, Subscription | None] = SubscriptionTrie()
        self.reader_groups = 0  # how many of the trie's entries are reader groups
        self._groups: dict[tuple[str, str], SharedGroup] = {}
        # per-topic delivery plans; any change of the MQTT subscriptions clears them, a
        # reader group changes those of the topics it matches (`add_readers`)
        self._routes = RouteCache(route_cache_bytes)
        self.retained = RetainedStore()
        # retained-tree nodes one subscriber's retained delivery visits per loop turn
        self.retained_slice = retained_slice
        self._retained_streams: dict[Session, RetainedStream] = {}
        # in-process listeners that see every routed message (message log, metrics, ...)
        self._observers: list[Observer] = []
        # each observer's form for a run of messages (`hold_observers`)
        self._run_observers: list[RunObserver] = []
        # while observers are held: the messages routed since, and the observers themselves
        self._held: list[Message] | None = None
        self._live_observers: list[Observer] = self._observers
        # told about sessions going on/off line, subscribing, and acknowledged deliveries
        self.session_events: SessionEvents | None = None
        self._sync_task: asyncio.Future[None] | None = None
        # engine=redis: the message log's `append_cold`, for messages nobody here routes
        # (see `pass_by`); set with the log observer (http/app.py make_log)
        self.cold_sink: Callable[[str, int, float, int], bool] | None = None
        # True while publishers are held for the engine's write backlog (see _watch_store)
        self.store_held = False
        # set by every publish: the message matched sessions at QoS 1/2 and every one of
        # them refused it for a full queue (MQTT 5 answers 0x97 Quota exceeded)
        self.quota_exceeded = False
        # engine=redis: publishes go to the broker, and every node (this one too) routes
        # what the broker hands back (`deliver`), in one order shared by all nodes
        self.broker: Broker | None = None
        # deliveries (subscribers and shared groups reached) routed so far: what a reader
        # counts to bound the fan-out work of one loop turn (mqtt/reading.py)
        self.routed = 0

    # -- start-up ----------------------------------------------------------------------

    async def restore(self) -> None:
        """Load persistent sessions and retained messages from the engine."""
        for message in await self.engine.load_retained():
            self.retained.set(message)
        now = time.time()
        restored = 0
        window = self.limits.queue_memory_window if self.engine.keeps_queue else 0
        for stored in await self.engine.load_sessions(window):
            if self._expired(stored, now):
                self.engine.session_delete(stored.client_id)
                continue
            self._restore_session(stored)
            restored += 1
        log.info("restored %d sessions and %d retained messages", restored, len(self.retained))

    @staticmethod
    def _expired(stored: StoredSession, now: float) -> bool:
        if stored.expiry_interval is None or stored.disconnected_at is None:
            return False
        return stored.disconnected_at + stored.expiry_interval <= now

    def _restore_session(self, stored: StoredSession) -> None:
        session = self.session_factory(
            stored.client_id,
            stored.protocol_level,
            stored.expiry_interval,
            self.engine,
            self.limits,
            self.stats,
            self.pressure,
        )
        session.disconnected_at = stored.disconnected_at or time.time()
        session.owner = stored.owner
        session.events = self.session_events
        for s in stored.subscriptions:
            sub = Subscription(s.filter, s.options, s.subscription_id)
            session.restore_subscription(sub)
            self._index(session, sub)
        for e in stored.queue:
            session.restore_delivery(
                Delivery(e.seq, e.message, e.qos, e.retain, [], e.wire_id, e.state)
            )
        session.restore_stored(
            stored.stored_count,
            stored.stored_bytes,
            stored.stored_first_seq,
            stored.stored_last_seq,
        )
        session.restore_transport_state(stored)
        self.sessions[session.client_id] = session
        self._schedule_expiry(session)

    # -- durability --------------------------------------------------------------------

    def sync_future(self) -> asyncio.Future[None]:
        """A future that resolves once everything journaled so far is durable.

        Every caller in the same loop tick shares one engine sync (one commit)."""
        if self._sync_task is None:
            self._sync_task = asyncio.ensure_future(self._sync_once())
        return self._sync_task

    async def _sync_once(self) -> None:
        # writes issued from here on belong to the next sync; engine.sync() queues its
        # marker before its first await, so nothing journaled before this point is missed
        self._sync_task = None
        await self.engine.sync()

    # -- sessions ----------------------------------------------------------------------

    def connect(
        self,
        client_id: str,
        clean_start: bool,
        protocol_level: int,
        expiry_interval: int | None,
        link: Link,
        owner: str | None = None,
        permissions: ReceiveFilter | None = None,
    ) -> tuple[Session, bool]:
        """Find or create the session of `client_id` for a new connection; a connection still
        attached to it is taken over. Returns (session, session_present)."""
        existing = self.sessions.get(client_id)
        if existing is None:
            # the common case (every clean reconnect after the last one ended): a new session
            session = self.sessions[client_id] = self.session_factory(
                client_id,
                protocol_level,
                expiry_interval,
                self.engine,
                self.limits,
                self.stats,
                self.pressure,
            )
            session.events = self.session_events
            session.owner = owner
            session.permissions = permissions
            if expiry_interval != 0:
                session.journal_session()
            return session, False
        if existing.link is not None:
            old_link = existing.link
            self._stop_retained(existing)
            existing.detach()
            old_link.close_taken_over()
        if existing.expiry_handle is not None:
            existing.expiry_handle.cancel()
            existing.expiry_handle = None
        session_present = False
        if existing.owner != owner and existing.owner is not None:
            # another identity's session: never hand its queue to this one
            log.info("client id %r reused by another user: starting a new session", client_id)
            clean_start = True
        if not clean_start:
            session = existing
            session_present = True
            was_journaled = session.journaled
            session.expiry_interval = expiry_interval
            session.protocol_level = protocol_level
            if was_journaled and not session.journaled:
                # the session now ends with this connection: stop journaling it
                self.engine.session_delete(client_id)
                session.has_row = False
            elif not was_journaled and session.journaled:
                # made persistent by this connection: what it holds so far was never
                # written (its subscriptions above all), so a restart would lose it
                session.owner = owner
                session.journal_everything()
        else:
            self._discard(existing)
            session = self.session_factory(
                client_id,
                protocol_level,
                expiry_interval,
                self.engine,
                self.limits,
                self.stats,
                self.pressure,
            )
            self.sessions[client_id] = session
        session.events = self.session_events
        session.owner = owner
        session.permissions = permissions
        if session_present and permissions is not None:
            # rights may have shrunk since the subscriptions were made
            for flt in list(session.subscriptions):
                if not permissions.can_subscribe(flt):
                    log.info("dropping subscription %r of %r: no longer allowed", flt, client_id)
                    self.unsubscribe(session, flt)
        session.journal_session()
        # the caller attaches `link` once it has answered the connect (CONNACK first)
        return session, session_present

    def disconnect(self, session: Session, link: Link) -> None:
        """The connection `link` of `session` ended (any reason)."""
        if session.link is not link:
            return  # already taken over by a newer connection
        if self._retained_streams:
            self._stop_retained(session)
        session.detach()
        if session.expiry_interval == 0 and not session.stored_count:  # not `journaled`
            self._discard(session)
            return
        session.journal_session()
        self._schedule_expiry(session)

    def _schedule_expiry(self, session: Session) -> None:
        if session.expiry_interval is None or session.link is not None:
            return
        disconnected = session.disconnected_at or time.time()
        delay = max(0.0, disconnected + session.expiry_interval - time.time())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        session.expiry_handle = loop.call_later(delay, self._expire, session)

    def _expire(self, session: Session) -> None:
        session.expiry_handle = None
        if session.link is None and self.sessions.get(session.client_id) is session:
            log.info("session %r expired", session.client_id)
            self._discard(session)

    def _discard(self, session: Session) -> None:
        if self._retained_streams:
            self._stop_retained(session)
        if session.subscriptions:
            for flt in list(session.subscriptions):
                self._unindex(session, flt)
        client_id = session.client_id
        if self.sessions.get(client_id) is session:
            del self.sessions[client_id]
        if session.has_row or session.expiry_interval != 0 or session.stored_count:
            # it was written, or is `journaled` (inlined: every clean disconnect passes here)
            self.engine.session_delete(client_id)
        if session.queued_bytes:
            session.release_all()
        else:
            session.discarded = True  # what release_all does for a session holding nothing
        if session.expiry_handle is not None:
            session.expiry_handle.cancel()
            session.expiry_handle = None

    # -- subscriptions -----------------------------------------------------------------

    def subscribe(self, session: Session, sub: Subscription) -> bool:
        """Add or replace a subscription; True when it is new for the session."""
        new = session.add_subscription(sub)
        self._index(session, sub)
        if self.session_events is not None:
            self.session_events.subscribed(session)
        return new

    def _index(self, session: Session, sub: Subscription) -> None:
        self._routes.clear()
        group_name, flt = split_shared(sub.filter)
        if group_name is None:
            self.subscriptions.add(sub.filter, session, sub)
            return
        group = self._groups.get((group_name, flt))
        if group is None:
            group = self._groups[(group_name, flt)] = SharedGroup(group_name, flt)
            self.subscriptions.add(flt, group, sub)
        group.members[session] = sub

    def _unindex(self, session: Session, full_filter: str) -> None:
        self._routes.clear()
        group_name, flt = split_shared(full_filter)
        if group_name is None:
            self.subscriptions.remove(full_filter, session)
            return
        group = self._groups.get((group_name, flt))
        if group is None:
            return
        group.members.pop(session, None)
        if not group.members:
            del self._groups[(group_name, flt)]
            self.subscriptions.remove(flt, group)

    def send_retained(self, session: Session, sub: Subscription, new: bool) -> None:
        """Offer the retained messages matching a subscription, as its retain_handling asks
        (called after the transport acknowledged the subscription)."""
        handling = sub.options.retain_handling
        if handling == 2 or (handling == 1 and not new) or sub.filter.startswith("$share/"):
            return  # shared subscriptions get no retained messages (MQTT-3.8.4-... 4.8.2)
        link = session.link
        if link is None:
            return  # the subscriber is gone already
        stream = self._retained_streams.get(session)
        if stream is None or stream.link is not link:
            if stream is not None:
                stream.close()
            stream = RetainedStream(session, link, self.retained_slice, self._stream_done)
            self._retained_streams[session] = stream
        # in slices, as fast as the subscriber reads; the first slice runs now
        stream.add(sub, self.retained.walk(sub.filter), self.retained.stamp)

    def _stream_done(self, stream: RetainedStream) -> None:
        if self._retained_streams.get(stream.session) is stream:
            del self._retained_streams[stream.session]

    def _stop_retained(self, session: Session) -> None:
        stream = self._retained_streams.pop(session, None)
        if stream is not None:
            stream.close()

    def unsubscribe(self, session: Session, flt: str) -> bool:
        if not session.remove_subscription(flt):
            return False
        self._unindex(session, flt)
        return True

    @property
    def subscription_count(self) -> int:
        """MQTT subscriptions (shared groups count once), not the log's reader groups."""
        return len(self.subscriptions) - self.reader_groups

    # -- the message log's readers (core/readers.py `ReaderPlane`) ---------------------

    def add_readers(self, group: ReaderGroup) -> None:
        """A filter's first HTTP/WebSocket reader arrived: its group joins the tree, and
        the cached routes of the topics it matches list it (nothing else is rebuilt)."""
        if self.subscriptions.add(group.filter, group, None):
            self.reader_groups += 1
            self._routes.readers_changed(group, True)

    def remove_readers(self, group: ReaderGroup) -> None:
        """A filter's last reader left: its group leaves the tree and the routes."""
        if self.subscriptions.remove(group.filter, group):
            self.reader_groups -= 1
            self._routes.readers_changed(group, False)

    def readers_of(self, topic: str) -> tuple[ReaderGroup, ...]:
        """The reader groups `topic`'s route reaches (the log wakes them after giving the
        message its id): the route the hub routed the message by, from the cache."""
        # the cache read without `RouteCache.get`'s call and LRU touch (the hub's routing
        # of this message touched it): the log asks once per message it wakes readers for
        routes = self._routes
        entry = routes.entries.get(topic)
        if entry is not None and entry[0] == routes.generation:
            return entry[1].readers
        return self.route_of(topic).readers

    def add_observer(self, observer: Observer, run: RunObserver | None = None) -> None:
        """`observer` sees every routed message; `run` (default: `observer` per message)
        sees a run of them at once when `hold_observers` kept them back."""
        self._live_observers.append(observer)
        self._run_observers.append(run or _one_by_one(observer))

    def hold_observers(self, received: bool = False) -> bool:
        """Until `release_observers`, routed messages wait in a list instead of going to the
        observers one by one, which then see the run in one call each (the message log
        appends a run of one topic in one pass: `MessageLog.observe_run`). For a run of
        one read's publishes (mqtt/hub_calls.py `_publish_run`), in the same synchronous
        call: nothing reads the log in between. Only where no ack waits for what the
        observers journal (`route_along` answers "not journaled" meanwhile): a single node
        whose engine promises no durability; elsewhere they are not held. False when they
        are not held by this call (held already, none, or not allowed): only the caller
        that got True releases them.

        `received`: a run the broker handed back (engine=redis, the fan-out reader's
        publish batch): held whatever the engine. Those messages are in Redis already,
        and the acks that wait on them wait for the broker's answer and for the reader to
        have handled their positions (`FanoutReader.reached`), which it tells only after
        it released the run, so no ack waits for what the held log would journal."""
        if (
            self._held is not None
            or not self._live_observers
            or (not received and (self.engine.durable or self.broker is not None))
        ):
            return False
        held: list[Message] = []
        self._held = held
        # route_along's loop then calls the list's append: no test per message
        self._observers = [held.append]  # type: ignore[list-item]
        return True

    def release_observers(self) -> None:
        """Hand the messages held since `hold_observers` to the observers (in order), and
        route the next ones to them one by one again."""
        held = self._held
        if held is None:
            return
        self._held = None
        self._observers = self._live_observers
        if held:
            for run in self._run_observers:
                run(held)

    # -- routing -----------------------------------------------------------------------

    def publish(self, message: Message, internal: bool = False) -> bool:
        """Route a message; True when something was journaled (sync before acknowledging).
        `internal` messages ($SYS) are not counted as received.

        With a broker (engine=redis) the message is sent to it and routed when it comes
        back (`deliver`); always journaled then: the broker's answer is what an ack waits
        for. `$` topics ($SYS) are this node's own and are routed here at once."""
        if not internal:
            self.stats.messages_received += 1
        if self.broker is not None and not message.topic.startswith("$"):
            self.quota_exceeded = False
            self.broker.broker_publish(message)
            self._watch_store()
            return True
        return self._route(message)

    def submit(self, message: Message, internal: bool = False) -> Receipt:
        """`publish`, answered with a receipt: the position once known, and the future to
        wait for before acknowledging (None: nothing to wait for)."""
        if self.broker is None:
            # `publish` inlined for a single node (every QoS 1/2 MQTT publish passes here)
            if not internal:
                self.stats.messages_received += 1
            journaled = self._route(message)
        else:
            journaled = self.publish(message, internal)
        durable = self.sync_future() if journaled and self.engine.durable else None
        return Receipt(message, durable, self)

    def deliver(self, message: Message) -> None:
        """Route a message the broker handed back (published on any node; counted as
        received by the node it was published on)."""
        self._route(message)

    def pass_by(self, topic: str, position: int, created_at: float, size: int) -> bool:
        """engine=redis: a message (not retained) the broker hands back that no session or
        reader of this node subscribes to goes to the log's cold sink (`cold_sink`: its
        id, time and size) instead of being decoded and routed. False: route it
        (`deliver`). Only while the sink's log is the one observer: every other observer
        sees every message."""
        sink = self.cold_sink
        if sink is None or len(self._live_observers) != 1:
            return False
        route = self._routes.get(topic)
        if route is None:
            route = build_route(self.subscriptions.match_values(topic))
            self._routes.put(topic, route)
        if route.targets or route.groups or route.readers:
            return False
        return sink(topic, position, created_at, size)

    def pass_along(
        self, topic: str, route: Route, position: int, created_at: float, size: int
    ) -> bool:
        """`pass_by` with the topic's route already looked up (`route_of`): the Redis
        fan-out reader looks it up once for both this test and `route_along`."""
        if route.targets or route.groups or route.readers:
            return False
        sink = self.cold_sink
        if sink is None or len(self._live_observers) != 1:
            return False
        return sink(topic, position, created_at, size)

    def publish_refused(self, message: Message) -> bool:
        """After the sync: the broker did not take `message` (Redis unreachable), so it
        reached nobody and must not be acknowledged."""
        return self.broker is not None and self.engine.write_failed(message)

    def _route(self, message: Message) -> bool:
        route = self._routes.get(message.topic)
        if route is None:
            route = build_route(self.subscriptions.match_values(message.topic))
            self._routes.put(message.topic, route)
        return self.route_along(message, route)

    def route_of(self, topic: str) -> Route:
        """The route of `topic` now (cached): a batch of publishes to one topic looks it up
        once (mqtt/hub_calls.py `_publish_run`); valid until the subscriptions change."""
        route = self._routes.get(topic)
        if route is None:
            route = build_route(self.subscriptions.match_values(topic))
            self._routes.put(topic, route)
        return route

    def route_along(self, message: Message, route: Route) -> bool:
        """`_route` with the topic's route already looked up (`route_of`); True when
        something was journaled. Counted as received by the caller."""
        journaled = False
        self.quota_exceeded = False
        if message.retain:
            journaled = self._update_retained(message)
        single = route.single
        if single is not None:
            # one subscriber (every QoS 1 and fan-in publish to one subscriber passes here):
            # nothing to share, so no wire cache (its link encodes the one copy with its
            # packet id in one go, and observes the delivery latency itself)
            self.routed += 1
            session = single.session
            origin = message.origin
            grant = (
                single.own if origin is not None and origin == session.client_id else single.every
            )
            if grant is not None:
                gqos = grant.qos
                mqos = message.qos
                done = session.offer(
                    message,
                    gqos if gqos < mqos else mqos,
                    message.retain and grant.retain_as_published,
                    grant.ids,
                    None,
                )
                if done & REFUSED:
                    self.quota_exceeded = True
                if done & JOURNALED:
                    journaled = True
        elif route.width:
            self.routed += route.width
            journaled = self._deliver(message, route) or journaled
        for observer in self._observers:
            if observer(message):
                journaled = True
        if not self.store_held and self.engine.backlogged:
            self._watch_store()
        return journaled

    # -- the store's write backlog -----------------------------------------------------

    def _watch_store(self) -> None:
        """Payloads wait in the engine's write queue until the disk takes them; when the
        publishers outrun the disk that queue is the one buffer that grows, so publishers
        are held (as for a subscriber that keeps up, core/pressure.py) until it is half
        drained. QoS 0 publishers too: they fill it as much as the others."""
        if self.store_held or not self.engine.backlogged:
            return
        self.store_held = True
        self.stats.store_backlogged += 1
        self.pressure.mark(STORE)
        self.engine.when_drained(self._store_drained)

    def _store_drained(self) -> None:
        self.store_held = False
        self.pressure.relieve(STORE)

    async def wait_store(self) -> None:
        """Hold an HTTP/WebSocket publisher while the store is backlogged (at most
        MAX_WAIT: a stuck disk must not hang requests)."""
        if not self.store_held:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def release() -> None:
            if not future.done():
                future.set_result(None)

        self.pressure.wait(release)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, MAX_WAIT)

    def _deliver(self, message: Message, route: Route) -> bool:
        """One copy per session, at the highest QoS its matching subscriptions grant, with
        every matching subscription identifier (MQTT-3.3.4-2/3). A route to one subscriber
        only is taken in `route_along` itself."""
        origin = message.origin
        mqos = message.qos
        mretain = message.retain
        wire_cache: dict[Any, Any] = {}
        sent_before = self.stats.messages_sent
        done = 0  # Session.offer's bits of every session, ORed
        if not route.groups:
            for t in route.targets:
                session = t.session
                grant = t.own if origin is not None and origin == session.client_id else t.every
                if grant is None:
                    continue  # only no_local subscriptions match its own message
                qos = grant.qos if grant.qos < mqos else mqos
                retain = mretain and grant.retain_as_published
                done |= session.offer(message, qos, retain, grant.ids, wire_cache)
            self._observe_fanout(message, sent_before)
            if done & REFUSED and not done & TAKEN:
                self.quota_exceeded = True
            return bool(done & JOURNALED)
        # shared groups pick a member per message; fold the picks into the plain targets
        best: dict[Session, tuple[int, bool, list[int]]] = {}
        for t in route.targets:
            grant = t.own if origin is not None and origin == t.session.client_id else t.every
            if grant is not None:
                best[t.session] = (
                    min(mqos, grant.qos),
                    mretain and grant.retain_as_published,
                    grant.ids,
                )
        for group, _ in route.groups:
            picked = group.pick()
            if picked is None:
                continue
            session, sub = picked
            opts = sub.options
            if opts.no_local and origin == session.client_id:
                continue
            qos = min(mqos, opts.qos)
            retain = mretain and opts.retain_as_published
            sid = sub.subscription_id
            prev = best.get(session)
            if prev is None:
                best[session] = (qos, retain, [sid] if sid else [])
            else:
                ids = prev[2] if not sid or sid in prev[2] else [*prev[2], sid]
                best[session] = (max(qos, prev[0]), retain or prev[1], ids)
        for session, (qos, retain, ids) in best.items():
            done |= session.offer(message, qos, retain, ids, wire_cache)
        self._observe_fanout(message, sent_before)
        if done & REFUSED and not done & TAKEN:
            self.quota_exceeded = True
        return bool(done & JOURNALED)

    def _observe_fanout(self, message: Message, sent_before: int) -> None:
        """Every copy a fan-out wrote left in the same loop turn: one observation of the
        delivery latency for all of them (the links it passed its wire cache to leave that
        to it), so a wide fan-out pays for the histogram once."""
        sent = self.stats.messages_sent - sent_before
        if sent:
            self.stats.delivery_latency.observe_n(time.time() - message.created_at, sent)

    def _update_retained(self, message: Message) -> bool:
        # $SYS is regenerated at every start; keep it out of the journal
        journal = not message.topic.startswith("$SYS/")
        if not message.payload:
            if self.retained.clear(message.topic) and journal:
                self.engine.retained_delete(message.topic)
                return True
            return False
        self.retained.set(message)
        if journal:
            self.engine.retained_put(message)
        return journal


def _one_by_one(observer: Observer) -> RunObserver:
    def run(messages: list[Message]) -> None:
        for message in messages:
            observer(message)

    return run
