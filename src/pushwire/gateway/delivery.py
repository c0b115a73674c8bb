"""Push state and delivery: the pending store, batching, presence, acknowledgements.

Design (docs/gateway.md, "Delivery"). The gateway keeps its OWN durable pending store per
(device, app) (`gw_pushes`, journaled by `Journal`) and hands a push to the hub only while
the device's connection is up and subscribed: then it is one ordinary QoS 1 message on
`devices/{device}/{app}`, so the MQTT session, the message log and every transport see it
like any other message. The MQTT session queue alone could not do collapse, expiry,
quota-by-priority and per-push receipts, and a push that waits in the gateway can still be
collapsed, expired, dropped or turned into a wake-up.

A push is `queued` until it is handed to the connection (`sent`, shown as queued), then
`delivered` when the device acknowledges it (MQTT PUBACK through the session's events, or
a WebSocket ack), or it ends `expired`, `collapsed`, `dropped` (quota) or `unregistered`.
Once handed out, a push is the connection's: the persistent MQTT session redelivers it
after a reconnect. On every (re)attach the gateway compares its `sent` pushes with what
the session still holds and sends again what the session lost (a clean session, a crash).

Batching (batching.py), the wake webhook (wake.py) and notices (content.py) are their own
modules; this one keeps the state of every push and moves it.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pushwire.config import Settings
from pushwire.core.acl import DEVICE_ROLE
from pushwire.core.hub import Hub
from pushwire.core.identity import Identity
from pushwire.core.message import Message
from pushwire.core.session import Delivery, Session
from pushwire.core.topics import matches
from pushwire.gateway import content, ids
from pushwire.gateway.batching import BatchHolder
from pushwire.gateway.cluster import DeviceHomes
from pushwire.gateway.journal import Journal, StoreUnavailable
from pushwire.gateway.model import Content, DeviceToken, Push, PushState
from pushwire.gateway.registry import RegistryView
from pushwire.gateway.store import GatewayStore
from pushwire.gateway.sweep_timer import SweepTimer
from pushwire.gateway.wake import WakeScheduler
from pushwire.gateway.webhooks import WebhookSender

log = logging.getLogger("pushwire.gateway")

GATEWAY_ORIGIN = "$pushwire-gateway"
SWEEP_STEP = 0.25  # seconds: the sweeper runs at most this often (batches last-seen writes)
CONTENT_SWEEP = 60.0  # seconds between deletions of expired push content
# PUBLISH framing on top of topic + payload: fixed header, topic length, packet id, props
_PUBLISH_OVERHEAD = 16


def _by_seq(p: Push) -> int:
    return p.seq


def device_topic(device_id: str, app_id: str) -> str:
    return f"devices/{device_id}/{app_id}"


@dataclass(slots=True)
class GatewayStats:
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    final: dict[str, int] = field(default_factory=dict)
    wakeups: int = 0
    sent: int = 0
    notices: int = 0

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


@dataclass(frozen=True, slots=True)
class PushOptions:
    priority: int = 10
    push_type: str = "alert"
    expiration: int | None = None  # None: no header (push_max_ttl applies); 0: now or never
    collapse_id: str | None = None
    push_id: str | None = None


class PushGateway:
    """Pushes in memory (authoritative while running), journaled to the store."""

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        registry: RegistryView,
        store: GatewayStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.registry = registry
        self.store = store
        self.clock = clock
        self.stats = GatewayStats()
        self.journal = Journal(store.apply, registry.call, settings.durability)
        self.webhooks = WebhookSender(
            settings.webhook_timeout, settings.webhook_max_attempts, settings.webhook_backoff
        )
        self.pushes: dict[str, Push] = {}
        self.queued: dict[str, dict[str, Push]] = {}  # device -> push id -> push (waiting)
        self.sent: dict[str, dict[str, Push]] = {}  # device -> push id -> push (handed out)
        self.by_uid: dict[int, Push] = {}  # hub message uid -> push, while sent
        self.ws_online: dict[str, int] = {}  # device -> live WebSocket subscriptions
        self.ws_conns: dict[str, set[tuple[int, str]]] = {}  # device -> (connection, filter)
        self.last_seen: dict[str, float] = {}
        # last_seen values not yet in the store: written together by the sweeper, because
        # one transaction per connect (an fsync each) made a reconnect storm of 10,000
        # devices queue every push behind 10,000 commits
        self._seen_unsaved: dict[str, float] = {}
        self.batches = BatchHolder(settings.push_batch_window, self.flush)
        self.wake = WakeScheduler(
            registry,
            self.webhooks,
            settings.wake_min_interval,
            find=self.pushes.get,
            online=self.online,
            clock=clock,
        )
        self._expiry: list[tuple[float, str]] = []  # (expires_at, push id) of waiting pushes
        self._forget: list[tuple[float, str]] = []  # (forget at, push id) of final pushes
        # (device, app, collapse id) -> (seq, push id) of the newest push with that key that
        # went out, while its record is kept: an older one taken late is collapsed against
        # it, not sent after it (`_collapse`)
        self._collapse_out: dict[tuple[str, str, str], tuple[int, str]] = {}
        self.sweep_timer = SweepTimer(SWEEP_STEP)  # when `_sweeper` wakes (sweep_timer.py)
        # push id -> its hub message, while sent: the message's log id is what a WebSocket
        # ack names (set at publish, or once Redis answered with engine=redis)
        self._sent_msgs: dict[str, Message] = {}
        # device -> filter -> highest log id its WebSocket consumer acknowledged
        self._ws_acks: dict[str, dict[str, int]] = {}
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        # engine=redis: the devices this node is home for (cluster.py); None: all of them
        self.homes: DeviceHomes | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for p in await self.registry.call(self.store.load_pushes):
            self._restore(p)
        log.info("gateway: %d pushes restored", len(self.pushes))
        if self.homes is not None:
            await self.homes.start()
        self._tasks.append(asyncio.create_task(self._sweeper(), name="pushwire-gateway-sweep"))

    def _restore(self, p: Push) -> None:
        """Take a push read back from the store into memory."""
        self._seq = max(self._seq, p.seq)
        self.pushes[p.id] = p
        if p.state in ("sent", "delivered"):
            self._note_out(p)
        if p.final:
            heapq.heappush(self._forget, (p.updated + self.settings.push_record_ttl, p.id))
            self.sweep_timer.due(p.updated + self.settings.push_record_ttl)
        elif p.state == "sent" and p.connection != "ws":
            self.sent.setdefault(p.device_id, {})[p.id] = p
        else:
            # waiting, or sent over a WebSocket (the log position is not kept): wait again
            p.state = "queued"
            self.queued.setdefault(p.device_id, {})[p.id] = p
            if p.expires_at is not None:
                heapq.heappush(self._expiry, (p.expires_at, p.id))
                self.sweep_timer.due(p.expires_at)
            self.wake.schedule(p)

    # -- engine=redis: device homes (cluster.py) ------------------------------------------

    def here(self, device_id: str) -> bool:
        """This node holds the device's pushes (always, unless engine=redis)."""
        return self.homes is None or self.homes.is_home(device_id)

    def adopt(self, device_id: str, pushes: list[Push]) -> None:
        """This node became the device's home: take its pending pushes from the store,
        line them up with the device's session, and send what waits."""
        for p in sorted(pushes, key=lambda p: p.seq):
            if p.id not in self.pushes and not p.final:
                self._restore(p)
        for p in list(self.queued.get(device_id, {}).values()):
            t = self.registry.token(p.token)
            if t is None or t.deleted is not None:
                self.finish(p, "unregistered", "the device token was deleted")
        # pushes other nodes admitted while the home was moving here were each within the
        # quota where they arrived, not together: the offline quota holds here as in `admit`
        for app_id in {p.app_id for p in self.queued.get(device_id, {}).values()}:
            if not self.online(device_id, app_id):
                self._enforce_quota(device_id, app_id)
        session = self.hub.sessions.get(device_id)
        if session is not None and session.link is not None:
            self._reconcile(session)
        if self.online(device_id):
            self.flush(device_id)

    def take_forwarded(self, p: Push, dispatch: bool = True) -> bool:
        """A push another node accepted (durable in the store) for a device homed here.
        It keeps the seq (arrival time) it was given there: delivery follows arrival.
        False when it was known already or final (nothing taken)."""
        if p.id in self.pushes or p.final:
            return False
        self._seq = max(self._seq, p.seq)
        self.admit(p, counted=False)
        if dispatch:
            self.dispatch(p)
        return True

    def drop_device(self, device_id: str) -> None:
        """The device has another home now: forget its unfinished pushes (written out)."""
        for p in [*self.queued.pop(device_id, {}).values(), *self.sent.pop(device_id, {}).values()]:
            self.pushes.pop(p.id, None)
            self._forget_out(p)
            if p.uid is not None:
                self.by_uid.pop(p.uid, None)
            self._sent_msgs.pop(p.id, None)
        self.batches.released(device_id)

    async def find(self, push_id: str) -> Push | None:
        """The push with this id, wherever its record is kept."""
        p = self.pushes.get(push_id)
        if p is None and self.homes is not None:
            p = await self.homes.find(push_id)
        return p

    async def all_pushes(self) -> dict[str, Push]:
        """Every push record kept: this node's, and (engine=redis) every other node's."""
        if self.homes is None:
            return self.pushes
        return {**await self.homes.all_pushes(), **self.pushes}  # ours are the freshest

    async def stop(self) -> None:
        if self.homes is not None:
            await self.homes.stop()
        self.batches.close()
        self.wake.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._save_seen()
        await self.webhooks.close()
        await self.journal.flush()
        self.journal.close()

    async def _sweeper(self) -> None:
        # wakes when something is due (gateway/sweep_timer.py), at most every SWEEP_STEP
        content_at = self.clock() + CONTENT_SWEEP
        while True:
            now = self.clock()
            await self.sweep_timer.sleep(now, self._next_sweep(now, content_at))
            try:
                self.sweep()
                self._save_seen()
                now = self.clock()
                if now >= content_at:
                    content_at = now + CONTENT_SWEEP
                    await self.registry.call(self.store.delete_content_before, now)
            except Exception:
                log.exception("gateway: sweep failed")

    def _next_sweep(self, now: float, content_at: float) -> float:
        """When the next sweep has something to do (the gateway's clock)."""
        if self._seen_unsaved:
            return now
        when = content_at
        if self._expiry:
            when = min(when, self._expiry[0][0])
        if self._forget:
            when = min(when, self._forget[0][0])
        return when

    def sweep(self) -> None:
        """Expire waiting pushes whose time passed; forget old final records."""
        now = self.clock()
        while self._expiry and self._expiry[0][0] <= now:
            _, push_id = heapq.heappop(self._expiry)
            p = self.pushes.get(push_id)
            if (
                p is not None
                and p.state == "queued"
                and p.expires_at is not None
                and p.expires_at <= now
            ):
                self.finish(p, "expired", "expired before delivery")
        while self._forget and self._forget[0][0] <= now:
            _, push_id = heapq.heappop(self._forget)
            p = self.pushes.get(push_id)
            if p is not None and p.final:
                del self.pushes[push_id]
                self.journal.delete(push_id)
                self._forget_out(p)

    # -- presence ------------------------------------------------------------------------

    def is_device(self, client_id: str) -> bool:
        return self.registry.device(client_id) is not None

    def mqtt_online(self, device_id: str, app_id: str) -> Session | None:
        session = self.hub.sessions.get(device_id)
        if session is None or session.link is None:
            return None
        topic = device_topic(device_id, app_id)
        if any(matches(f, topic) for f in session.subscriptions):
            return session
        return None

    def online(self, device_id: str, app_id: str | None = None) -> bool:
        if self.ws_online.get(device_id):
            return True
        if app_id is None:
            session = self.hub.sessions.get(device_id)
            return session is not None and session.link is not None
        return self.mqtt_online(device_id, app_id) is not None

    async def online_anywhere(self, device_id: str) -> bool:
        """Online here, or (engine=redis) connected to another live node."""
        if self.online(device_id):
            return True
        return self.homes is not None and await self.homes.online_elsewhere(device_id)

    async def last_seen_anywhere(self, device_id: str, online: bool) -> float | None:
        """`device_seen`, or (engine=redis) what the node it was connected to last wrote."""
        if online:
            return self.clock()
        seen = self.device_seen(device_id)
        if self.homes is not None:
            stored = await self.homes.last_seen(device_id)
            if stored is not None and (seen is None or stored > seen):
                return stored
        return seen

    def device_seen(self, device_id: str) -> float | None:
        if self.online(device_id):
            return self.clock()
        seen = self.last_seen.get(device_id)
        if seen is not None:
            return seen
        device = self.registry.device(device_id)
        return device.last_seen if device is not None else None

    # core.session.SessionEvents

    def attached(self, session: Session) -> None:
        # is_device inlined: every MQTT connect and disconnect passes here (connect storms)
        if session.client_id not in self.registry.reg.devices:
            return
        self._seen(session.client_id)
        if self.homes is not None and not self.homes.is_home(session.client_id):
            self.homes.claim(session.client_id)  # reconciled and flushed once loaded
            return
        self._reconcile(session)
        self._soon_flush(session.client_id)

    def detached(self, session: Session) -> None:
        device_id = session.client_id
        if device_id not in self.registry.reg.devices:  # is_device, inlined as in attached
            return
        self._seen(device_id)
        if not session.persistent:
            # the session (and what it held) ends with the connection: wait again
            self._requeue_sent(device_id)

    def subscribed(self, session: Session) -> None:
        if self.is_device(session.client_id):
            self._soon_flush(session.client_id)

    def acknowledged(self, session: Session, delivery: Delivery) -> None:
        msg = delivery.message
        if not msg.topic.startswith("devices/"):
            return
        p = self.by_uid.get(msg.uid) or self._push_of(msg)
        if p is None and self.homes is not None and self.homes.claiming(session.client_id):
            self.homes.hold_ack(session, delivery)  # its pushes are being loaded
            return
        # only the device's own acknowledgement counts (an admin reading devices/# acks too);
        # a copy the session held over a restart may be acknowledged while the push waits
        if p is None or p.final or p.device_id != session.client_id:
            return
        link = session.link
        peer = getattr(link, "peer", None)
        self.delivered(p, f"mqtt {session.client_id}" + (f" {peer}" if peer else ""))

    # http.state.WsEvents: a device listening on the JSON WebSocket

    def _ws_device(self, identity: Identity, flt: str) -> str | None:
        device_id = identity.username
        if device_id is None or DEVICE_ROLE not in identity.roles:
            return None
        own = f"devices/{device_id}/"
        return device_id if flt.startswith(own) or flt == own[:-1] else None

    def ws_subscribed(self, identity: Identity, flt: str, conn: int) -> None:
        device_id = self._ws_device(identity, flt)
        if device_id is None:
            return
        self.ws_conns.setdefault(device_id, set()).add((conn, flt))
        self.ws_online[device_id] = len(self.ws_conns[device_id])
        self._seen(device_id)
        if self.homes is not None and not self.homes.is_home(device_id):
            self.homes.claim(device_id)  # flushed once loaded
            return
        self._soon_flush(device_id)

    def ws_unsubscribed(self, identity: Identity, flt: str, conn: int) -> None:
        device_id = self._ws_device(identity, flt)
        if device_id is None:
            return
        conns = self.ws_conns.get(device_id)
        if conns is None:
            return
        conns.discard((conn, flt))
        if conns:
            self.ws_online[device_id] = len(conns)
        else:
            # what was sent stays "sent": the log replays it to a consumer that comes back
            del self.ws_conns[device_id]
            self.ws_online.pop(device_id, None)
            self._ws_acks.pop(device_id, None)
            self._seen(device_id)

    def ws_acked(self, identity: Identity, flt: str, upto: int) -> None:
        """A device's WebSocket consumer acknowledged the log up to id `upto`."""
        device_id = self._ws_device(identity, flt)
        if device_id is None:
            return
        acks = self._ws_acks.setdefault(device_id, {})
        acks[flt] = max(upto, acks.get(flt, upto))
        for p in list(self.sent.get(device_id, {}).values()):
            self._ws_recheck(p)

    def _ws_recheck(self, p: Push) -> None:
        """Delivered if a WebSocket consumer of the device acknowledged the push's log id."""
        sent_msg = self._sent_msgs.get(p.id)
        log_id = None if sent_msg is None else sent_msg.log_id
        if log_id is None or p.state != "sent" or self.pushes.get(p.id) is not p:
            return  # not numbered yet, no longer waiting for an ack, or moved to another node
        topic = device_topic(p.device_id, p.app_id)
        for flt, upto in self._ws_acks.get(p.device_id, {}).items():
            if log_id <= upto and matches(flt, topic):
                self.delivered(p, f"ws {p.device_id}")
                return

    def _seen(self, device_id: str) -> None:
        now = self.clock()
        self.last_seen[device_id] = now
        if not self._seen_unsaved:
            self.sweep_timer.due(now)  # written by the next sweep
        self._seen_unsaved[device_id] = now

    def _save_seen(self) -> None:
        """Write the last_seen values gathered since the last call in one transaction."""
        if self._seen_unsaved:
            seen, self._seen_unsaved = list(self._seen_unsaved.items()), {}
            self.registry.call_soon_store(self.store.touch_devices, seen)
            if self.homes is not None:
                # every node answers whether a device is online (device_api)
                self.homes.save_presence([(d, self.online(d)) for d, _ in seen])

    def _push_of(self, msg: Message) -> Push | None:
        try:
            data = json.loads(msg.payload)
            return self.pushes.get(data["id"]) if isinstance(data, dict) else None
        except (ValueError, KeyError, TypeError):
            return None

    def _reconcile(self, session: Session) -> None:
        """Line the gateway's view up with what the device's session holds: a push the
        session still holds (restored from the store after a restart) counts as sent, not
        waiting, so it is not handed over twice; a push marked sent that the session no
        longer holds (lost with a clean session, or a crash before the session journal
        reached the disk) waits again."""
        device_id = session.client_id
        held: dict[str, Push] = {}
        for d in [*session.inflight.values(), *session.queue]:
            if d.message.topic.startswith("devices/"):
                p = self.by_uid.get(d.message.uid) or self._push_of(d.message)
                if p is not None and not p.final:
                    held[p.id] = p
                    p.uid = d.message.uid  # restored messages get new uids
                    self.by_uid[d.message.uid] = p
        waiting = self.queued.get(device_id, {})
        sent = self.sent.setdefault(device_id, {})
        for p in held.values():
            if waiting.pop(p.id, None) is not None:
                p.state = "sent"
                sent[p.id] = p
                self.journal.put(p)
        if not waiting:
            self.queued.pop(device_id, None)
        for p in sorted(sent.values(), key=lambda p: p.seq):
            if p.id not in held:
                del sent[p.id]
                self._wait_again(p)
        if not sent:
            self.sent.pop(device_id, None)

    def _requeue_sent(self, device_id: str) -> None:
        """The connection's session ended with it: what it held waits in the gateway again."""
        for p in list(self.sent.pop(device_id, {}).values()):
            self._wait_again(p)

    def _wait_again(self, p: Push) -> None:
        p.state = "queued"
        if p.uid is not None:
            self.by_uid.pop(p.uid, None)
            p.uid = None
        self._sent_msgs.pop(p.id, None)
        self.queued.setdefault(p.device_id, {})[p.id] = p
        self.journal.put(p)

    # -- submitting ----------------------------------------------------------------------

    def next_seq(self) -> int:
        if self.homes is not None:
            # pushes of one device come from every node: order them by arrival time
            self._seq = max(self._seq + 1, int(self.clock() * 1_000_000))
        else:
            self._seq += 1
        return self._seq

    def make_push(self, token: DeviceToken, opts: PushOptions, body: bytes, now: float) -> Push:
        expires_at: float | None
        if opts.expiration is None:  # no header: kept for at most push_max_ttl
            expiration = int(now + self.settings.push_max_ttl)
            expires_at = float(expiration)
        elif opts.expiration == 0:
            expiration, expires_at = 0, None
        else:
            expiration, expires_at = opts.expiration, float(opts.expiration)
        return Push(
            id=opts.push_id or ids.new_push_id(),
            app_id=token.app_id,
            device_id=token.device_id,
            token=token.token,
            priority=opts.priority,
            push_type=opts.push_type,
            expiration=expiration,
            collapse_id=opts.collapse_id,
            created=now,
            updated=now,
            seq=self.next_seq(),
            body=body,
            expires_at=expires_at,
        )

    async def accept(self, p: Push, stored: Content | None = None) -> None:
        """Take a new push: collapse, quota, store durably, then deliver or hold."""
        if stored is not None:
            try:
                await self.registry.call(self.store.put_content, stored)
            except Exception as exc:
                raise StoreUnavailable(f"storing content failed: {exc}") from exc
        self.admit(p)
        try:
            await self.journal.durable()
        except StoreUnavailable:
            self.unadmit([p])
            raise
        self.dispatch(p)

    def unadmit(self, pushes: list[Push]) -> None:
        """Pushes whose write failed (refused 503, not acknowledged): forget them, so they are
        not delivered behind the provider's back (it will send them again)."""
        for p in pushes:
            if self.pushes.get(p.id) is p and not p.final:
                del self.pushes[p.id]
                self.queued.get(p.device_id, {}).pop(p.id, None)

    def admit(self, p: Push, counted: bool = True) -> None:
        """Collapse, expiry and quota for a new push, journaled (not yet durable: the caller
        awaits `journal.durable()` once for one push or a whole batch, then `dispatch`).
        A push for a device homed on another node is written for that node instead."""
        now = p.created
        if counted:
            self.stats.accepted += 1
        if not self.here(p.device_id):
            self.journal.forward(p)
            return
        self.pushes[p.id] = p
        waiting = self.queued.setdefault(p.device_id, {})
        if p.collapse_id is not None and self._collapse(p, waiting):
            return
        if p.expires_at is not None and p.expires_at <= now:
            self.finish(p, "expired", "expired on arrival")
        elif p.expiration == 0 and p.expires_at is None and not self.online(p.device_id, p.app_id):
            self.finish(p, "expired", "expiration 0 and the device is offline")
        else:
            waiting[p.id] = p
            if p.expires_at is not None:
                heapq.heappush(self._expiry, (p.expires_at, p.id))
                self.sweep_timer.due(p.expires_at)
            if not self.online(p.device_id, p.app_id):
                # the quota is for storage while offline: an online device takes them now
                # (or within the batch window; the per-app rate bounds that)
                self._enforce_quota(p.device_id, p.app_id)
            self.journal.put(p)

    def _collapse(self, p: Push, waiting: dict[str, Push]) -> bool:
        """Collapse `p` with the device's pushes of its app and collapse id: the one that
        arrived last (highest seq) is kept, against the waiting ones and the newest that
        went out (`_collapse_out`). True when that is not `p` (it is finished).

        On one node pushes are admitted in arrival order, except when one waits on its
        content's write meanwhile. With engine=redis an older push from another node can be
        taken late (its notice or catch-up came after a newer one was accepted here, or
        was even sent): then the newer content stays, and the older is the one replaced."""
        key = (p.app_id, p.collapse_id)
        newer = [o for o in waiting.values() if (o.app_id, o.collapse_id) == key and o.seq > p.seq]
        newest = max(newer, key=_by_seq).id if newer else None
        assert p.collapse_id is not None
        out = self._collapse_out.get((p.device_id, p.app_id, p.collapse_id))
        if newest is None and out is not None and out[0] > p.seq:
            newest = out[1]
        if newest is not None:
            waiting[p.id] = p  # `finish` takes it out again
            self.finish(p, "collapsed", f"replaced by push {newest}")
            return True
        for other in [o for o in waiting.values() if (o.app_id, o.collapse_id) == key]:
            self.finish(other, "collapsed", f"replaced by push {p.id}")
        return False

    def _note_out(self, p: Push) -> None:
        if p.collapse_id is not None:
            key = (p.device_id, p.app_id, p.collapse_id)
            out = self._collapse_out.get(key)
            if out is None or out[0] < p.seq:
                self._collapse_out[key] = (p.seq, p.id)

    def _forget_out(self, p: Push) -> None:
        if p.collapse_id is not None:
            key = (p.device_id, p.app_id, p.collapse_id)
            out = self._collapse_out.get(key)
            if out is not None and out[1] == p.id:
                del self._collapse_out[key]

    def dispatch(self, p: Push) -> None:
        """After the push is durable: send it now, hold it for a batch, or let it wait."""
        if p.state != "queued" or self.pushes.get(p.id) is not p:
            return  # final, or forwarded to the device's home
        if self.homes is not None and self.online(p.device_id, p.app_id):
            # pushes other nodes accepted before this one may still be on their way
            # through the inbox: take them first, so the device gets them in order
            self.homes.catch_up(p.device_id, lambda: self.dispatch_now(p))
            return
        self.dispatch_now(p)

    def dispatch_now(self, p: Push) -> None:
        """Send, hold for a batch or wake, with no catch-up first (the caller made it)."""
        if p.state != "queued" or self.pushes.get(p.id) is not p:
            return
        if self.online(p.device_id, p.app_id):
            if self.batches.holds(p.priority, p.expiration):
                self.batches.hold(p.device_id)
            else:
                self.flush(p.device_id)
        elif p.priority >= 10:
            self.wake.schedule(p)

    def _enforce_quota(self, device_id: str, app_id: str) -> None:
        waiting = [q for q in self.queued.get(device_id, {}).values() if q.app_id == app_id]
        excess = len(waiting) - self.settings.push_queue_quota
        if excess <= 0:
            return
        # the oldest of the lowest priority goes first
        for victim in sorted(waiting, key=lambda q: (q.priority, q.seq))[:excess]:
            self.finish(victim, "dropped", "dropped: the device's queue for the app was full")

    # -- delivering ----------------------------------------------------------------------

    def _soon_flush(self, device_id: str) -> None:
        # after the transport's own reply (CONNACK, SUBACK) has been written
        if self.homes is not None:
            homes = self.homes
            asyncio.get_running_loop().call_soon(
                lambda: homes.catch_up(device_id, lambda: self.flush(device_id))
            )
        else:
            asyncio.get_running_loop().call_soon(self.flush, device_id)

    def flush(self, device_id: str) -> None:
        """Hand every waiting push of the device whose app it listens to to its connection,
        in arrival order: one wake-up."""
        self.batches.released(device_id)
        waiting = self.queued.get(device_id)
        if not waiting:
            return
        # engine=redis: not beyond the last read of the pending set (cluster.py, "Order");
        # a newer push waits for its own catch-up, which flushes again
        upto = None if self.homes is None else self.homes.sendable(device_id)
        now = self.clock()
        sent_any = False
        for p in sorted(waiting.values(), key=lambda p: p.seq):
            if upto is not None and p.seq > upto:
                break
            if p.expires_at is not None and p.expires_at <= now:
                self.finish(p, "expired", "expired before delivery")
                continue
            if not self.online(device_id, p.app_id):
                continue
            self._send(p, now)
            sent_any = True
        if not waiting:
            self.queued.pop(device_id, None)
        if sent_any:
            self.stats.wakeups += 1

    def _send(self, p: Push, now: float) -> None:
        assert p.body is not None
        body = p.body
        limit = self._device_limit(p.device_id)
        topic = device_topic(p.device_id, p.app_id)
        if limit is not None and len(body) + len(topic) + _PUBLISH_OVERHEAD > limit:
            body = self._as_notice(p, body, now)
        message = Message(
            topic,
            body,
            qos=1,
            expires_at=p.expires_at if p.expiration else None,
            origin=GATEWAY_ORIGIN,
        )
        self.queued[p.device_id].pop(p.id, None)
        p.state = "sent"
        p.updated = now
        p.uid = message.uid
        p.connection = "ws" if self.ws_online.get(p.device_id) else None
        self.by_uid[message.uid] = p
        self.sent.setdefault(p.device_id, {})[p.id] = p
        self._note_out(p)
        self.journal.put(p)
        self.stats.sent += 1
        self.hub.publish(message, internal=True)
        self._sent_msgs[p.id] = message
        if message.log_id is None:
            # engine=redis numbers it when Redis answers, and the fan-out may hand it to
            # the device (which may ack it) before that: look at its acks again then
            self.hub.sync_future().add_done_callback(lambda _: self._ws_recheck(p))

    def _device_limit(self, device_id: str) -> int | None:
        session = self.hub.sessions.get(device_id)
        link = session.link if session is not None else None
        declared = getattr(link, "client_max_packet_size", None)
        return declared if isinstance(declared, int) and declared > 0 else None

    def _as_notice(self, p: Push, body: bytes, now: float) -> bytes:
        """The push does not fit the device's declared packet size: store its payload as
        content and send a notice for it."""
        notice, stored = content.as_notice(p, body, now, self.settings.push_content_ttl)
        # queued on the store thread before any fetch of it can be
        self.registry.call_soon_store(self.store.put_content, stored)
        self.stats.notices += 1
        p.body = notice
        return notice

    def delivered(self, p: Push, connection: str) -> None:
        p.delivered_at = self.clock()
        p.connection = connection
        self.finish(p, "delivered", None)

    def finish(self, p: Push, state: PushState, reason: str | None) -> None:
        if p.final:
            return
        now = self.clock()
        self.queued.get(p.device_id, {}).pop(p.id, None)
        self.sent.get(p.device_id, {}).pop(p.id, None)
        if p.uid is not None:
            self.by_uid.pop(p.uid, None)
        self._sent_msgs.pop(p.id, None)
        if state != "delivered":
            p.connection = None
        p.state = state
        p.reason = reason
        p.updated = now
        p.body = None
        self.stats.final[state] = self.stats.final.get(state, 0) + 1
        self.journal.put(p)
        heapq.heappush(self._forget, (now + self.settings.push_record_ttl, p.id))
        self.sweep_timer.due(now + self.settings.push_record_ttl)
        app = self.registry.app(p.app_id)
        if app is not None and app.receipt_url:
            self.webhooks.send("receipt", app.receipt_url, p.record())

    def registry_changed(self) -> None:
        """Tokens deleted elsewhere (`pushwire device remove`): their pushes end."""
        for waiting in list(self.queued.values()):
            for p in list(waiting.values()):
                t = self.registry.token(p.token)
                if t is None or t.deleted is not None:
                    self.finish(p, "unregistered", "the device token was deleted")

    def unregister_token(self, token: str) -> None:
        """A deleted token: what still waits for it will never be delivered."""
        for waiting in list(self.queued.values()):
            for p in list(waiting.values()):
                if p.token == token:
                    self.finish(p, "unregistered", "the device token was deleted")
