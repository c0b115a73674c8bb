"""The gateway across nodes (engine=redis): every device's pushes live on one node, its home.

A device's *home* is the node it last connected to (MQTT attach or a device WebSocket
subscription). The home keeps the device's waiting and sent pushes in memory, exactly as a
single server does (delivery.py): collapse, quota, expiry, batching, wake-ups and
acknowledgements all happen in one place, so they stay coherent. Redis holds every push
(engines/redis/gateway_store.py) and names each device's home (gateway_homes.py):

- a push accepted on a node that is not the device's home is written to Redis and
  announced in the home's inbox in one script, before the 200; the home takes it like one
  accepted there (collapse, quota, dispatch). A device with no live home gets this node;
- a device that connects to another node makes that node its home (`claim`): the old home
  writes out and drops the device's pushes (`release`), then the new home loads them from
  Redis, lines them up with what the device's session holds, and sends the rest;
- a home killed with -9 leaves its devices' pushes in Redis: whichever node the device
  connects to next, or the first node whose periodic look finds the dead home, loads them.

A push is thus handed out by one node at a time; a move may send one again that the old
home had sent and not seen acknowledged (at least once, like the MQTT session it rides on).

Order: a push acknowledged on another node before the provider posted the next one to the
home is in the device's pending set in Redis before the home makes that next push; the
home reads the set (`catch_up`) before it sends. A send must not outrun that read: a flush
started by an older push's catch-up, whose read was taken before the other node's push
existed, would otherwise send a push accepted here since ahead of it (seen on a loaded CI
machine). So each read takes a ticket, a seq (`next_seq`) higher than every push made here
before it and lower than every one made after, and a device's pushes go out only up to the
ticket of its last completed read (`sendable`); newer ones wait for their own catch-up.

A lapse: a home that is alive but slow (a loaded event loop, a GC pause, a Redis hiccup)
can miss its heartbeat (engines/redis/presence.py); other nodes then count it dead and take
the homes of its devices (a push posted to them, their dead-home check), though it still
holds the devices' connections. Such a push would wait on the new home while the device,
connected here, never got it, even after it reconnected here (this node still thought
itself home and claimed nothing). So a home sends only while it holds its heartbeat's
lease (`sendable`: never after its key may have expired), and after a beat that found the
heartbeat lapsed it looks again at every device it is home of (`_recover`): one taken
meanwhile is written out and dropped here, then claimed back if it is still connected here
(its new home writes out and lets go, this node loads it, as on a connect) or else left
to its new home, which is sent a `release` so that it loads it again from Redis (its copy
may be stale: acknowledged here meanwhile; what this node accepted meanwhile had no
notice); one kept has its pending set read again (its notices may have gone with the
inbox of a node that looked dead). Nothing is sent until that is done, so the pushes go
out in order (by seq) after the lapse as before it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from pushwire.core.session import Delivery, Session
from pushwire.gateway.model import Push

if TYPE_CHECKING:
    from pushwire.gateway.delivery import PushGateway

log = logging.getLogger("pushwire.gateway")

INBOX_WAIT = 1.0  # seconds one inbox read blocks (the loop's cancellation point)
CLAIM_RETRY = 2.0  # a claim not answered in this long is made again (a lost notice)


class HomeLink(Protocol):
    """Where device homes and node inboxes live (engines/redis/gateway_homes.py). The
    synchronous methods block: they run on the gateway's store thread."""

    node_id: str

    def forward(self, pushes: Iterable[Push]) -> None: ...
    def claim(self, device_id: str) -> str | None: ...
    def notify(self, device_id: str, kind: str, arg: str = "") -> str: ...
    def device_pushes(self, device_id: str) -> list[Push] | None: ...
    def homed_here(self) -> list[str]: ...
    def orphans(self) -> list[tuple[str, str]]: ...
    def take(self, device_id: str, dead: str) -> bool: ...
    def alive(self, node_id: str) -> bool: ...
    def get_push(self, push_id: str) -> Push | None: ...
    def pending_ids(self, device_id: str) -> list[str]: ...
    def get_pushes(self, push_ids: list[str]) -> list[Push]: ...
    def all_pushes(self) -> list[Push]: ...
    def set_online(self, changes: Iterable[tuple[str, bool]]) -> None: ...
    def recheck(self, devices: list[str]) -> tuple[list[str], dict[str, list[str]]]: ...
    def online_node(self, device_id: str) -> str | None: ...
    def last_seen(self, device_id: str) -> float | None: ...
    async def next_notice(self, wait: float) -> tuple[str, str, str] | None: ...
    async def close(self) -> None: ...


class Heartbeat(Protocol):
    """This node's heartbeat (engines/redis/presence.py RedisPresence)."""

    def holds_lease(self) -> bool: ...
    def on_lapse(self, listener: Callable[[], None]) -> None: ...


class DeviceHomes:
    """This node's side of the device homes: which devices it is home for, its claims in
    progress, and the loop that reads its inbox."""

    def __init__(
        self, gateway: PushGateway, link: HomeLink, check_interval: float, orphan_interval: float
    ) -> None:
        self.gw = gateway
        self.link = link
        self.check_interval = check_interval
        self.orphan_interval = orphan_interval
        self.homes: set[str] = set()
        self.claims: dict[str, float] = {}  # device -> when this node last claimed it
        # acknowledgements that came while the device's pushes were being loaded
        self._early_acks: dict[str, list[tuple[Session, Delivery]]] = {}
        # device -> the seq up to which its pushes may be sent: the ticket of the last read
        # of its pending set (see "Order" above; `sendable`)
        self._caught_up: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.moves = 0  # devices this node took over from another home
        self.home_checks = 0  # rounds of the dead-home check (gateway_homes.py orphans)
        # set by `stop`: the inbox loop ends on it too, because redis-py's asyncio BLPOP can
        # swallow the task's cancellation (seen as a stop that waited forever on a task left
        # "cancelling" in its next read); the read's own timeout (INBOX_WAIT) bounds the wait
        self._stopping = False
        # engine=redis with presence: pushes go out only while it holds (see "A lapse")
        self._heartbeat: Heartbeat | None = None
        self._recovering = 0  # lapse recoveries running: nothing is sent meanwhile
        self.recoveries = 0  # lapses of this node's heartbeat it recovered from
        self.lost = 0  # devices whose home another node took during such a lapse
        # devices found homed elsewhere after a lapse, not yet written out and claimed back
        # or released (kept across a failed step of `_recover`, which takes it again)
        self._giving_up: dict[str, None] = {}
        # pushes the recoveries took from pending sets, dispatched when the last one ends
        self._recovered: list[Push] = []

    @property
    def node_id(self) -> str:
        return self.link.node_id

    def is_home(self, device_id: str) -> bool:
        return device_id in self.homes

    def claiming(self, device_id: str) -> bool:
        return device_id in self.claims

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        # a node restarted under the same node id is still named home of its devices
        for device_id in await self.gw.registry.call(self.link.homed_here):
            await self._load(device_id)
        self._tasks = [
            asyncio.create_task(self._inbox_loop(), name="pushwire-gateway-inbox"),
            asyncio.create_task(self._check_loop(), name="pushwire-gateway-homes"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        self._tasks = []
        await self.link.close()

    def stopping(self) -> bool:
        return self._stopping

    def follow(self, heartbeat: Heartbeat) -> None:
        """Be home only while this node's heartbeat holds, and look again at every
        device homed here after it lapsed (see "A lapse" above)."""
        self._heartbeat = heartbeat
        heartbeat.on_lapse(self.lapsed)

    def lapsed(self) -> None:
        """This node's heartbeat lapsed (the beat that found it so has just renewed it)."""
        if self._stopping:
            return
        self._recovering += 1  # at once: nothing goes out before `_recover` looked
        self._spawn(self._recover())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- claims ----------------------------------------------------------------------------

    def claim(self, device_id: str) -> None:
        """The device connected here: become its home (its pushes are loaded when the old
        home let go, and then sent)."""
        if device_id in self.homes or device_id in self.claims:
            return
        self.claims[device_id] = time.monotonic()
        self._spawn(self._claim(device_id))

    async def _claim(self, device_id: str) -> None:
        try:
            old = await self.gw.registry.call(self.link.claim, device_id)
        except Exception:
            log.exception("gateway: claiming device %s failed (retried)", device_id)
            return
        if old is not None:
            log.debug("gateway: device %s moves here from node %s", device_id, old)

    def catch_up(self, device_id: str, then: Callable[[], None]) -> None:
        """Take the device's pushes accepted on other nodes whose inbox notice has not been
        read yet, then call `then` (which sends): a push acknowledged elsewhere before one
        accepted here goes out first."""
        self._spawn(self._catch_up(device_id, then))

    async def _catch_up(self, device_id: str, then: Callable[[], None]) -> None:
        call = self.gw.registry.call
        # before the read: every push made here until now may go once it answered
        upto = {device_id: self.gw.next_seq()}
        taken: list[Push] = []
        try:
            ids = await call(self.link.pending_ids, device_id)
            unknown = [i for i in ids if i not in self.gw.pushes]
            if unknown and device_id in self.homes:
                taken = self._take(await call(self.link.get_pushes, unknown), upto)
        except Exception as exc:
            # what was missed comes through the inbox; only the order may suffer
            log.warning("gateway: catching up device %s failed: %s", device_id, exc)
        self._read_up_to(device_id, upto[device_id])
        then()
        # `then` sends for its own push only if that one still waits (it may have been
        # collapsed by one taken here, or be for an app the device does not listen to):
        # each push taken goes its own way too, or it would wait for the next event (its
        # inbox notice finds it known and does nothing)
        for p in taken:
            self.gw.dispatch_now(p)

    def _take(self, found: list[Push], upto: dict[str, int]) -> list[Push]:
        """Take `found`, pushes read from pending sets that this node did not know, oldest
        first, for devices homed here; each one taken raises its device's ticket in `upto`:
        read with the set, it may go (another node's clock may be ahead). Only a push taken
        counts (a final one did not move `next_seq`)."""
        taken: list[Push] = []
        for p in sorted(found, key=lambda p: p.seq):
            if p.device_id in self.homes and self.gw.take_forwarded(p, dispatch=False):
                taken.append(p)
                upto[p.device_id] = max(upto.get(p.device_id, 0), p.seq)
        return taken

    def _read_up_to(self, device_id: str, ticket: int) -> None:
        # kept for the devices homed here only (a catch-up may end after a release)
        if device_id in self.homes and ticket > self._caught_up.get(device_id, 0):
            self._caught_up[device_id] = ticket

    def sendable(self, device_id: str) -> int:
        """The highest seq of the device's pushes that may be sent now: those made here
        before the last completed read of its pending set (see "Order" above); none while
        this node may not be home any more (see "A lapse" above)."""
        if self._recovering or (self._heartbeat is not None and not self._heartbeat.holds_lease()):
            return 0
        return self._caught_up.get(device_id, 0)

    def hold_ack(self, session: Session, delivery: Delivery) -> None:
        self._early_acks.setdefault(session.client_id, []).append((session, delivery))

    # -- the inbox -------------------------------------------------------------------------

    async def _inbox_loop(self) -> None:
        while not self.stopping():
            try:
                notice = await self.link.next_notice(INBOX_WAIT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("gateway: reading this node's inbox failed: %s", exc)
                await asyncio.sleep(INBOX_WAIT)
                continue
            if self.stopping():
                return  # a cancellation the read swallowed (see `_stopping`)
            if notice is None:
                continue
            try:
                await self._handle(*notice)
            except Exception:
                log.exception("gateway: handling notice %r failed", notice)

    async def _handle(self, kind: str, device_id: str, arg: str) -> None:
        if kind == "push":
            if device_id in self.homes:
                p = await self.gw.registry.call(self.link.get_push, arg)
                if p is not None:
                    self.gw.take_forwarded(p)
            elif device_id not in self.claims:
                # Redis named this node the device's home (it had none alive): load it all
                await self._load(device_id)
        elif kind == "device":
            await self._load(device_id)
        elif kind == "release":
            await self._release(device_id)
        else:
            log.warning("gateway: unknown notice %r for device %s", kind, device_id)

    async def _load(self, device_id: str) -> None:
        ticket = self.gw.next_seq()  # a read of the pending set, as in `_catch_up`
        pushes = await self.gw.registry.call(self.link.device_pushes, device_id)
        self.claims.pop(device_id, None)
        if pushes is None:
            # the device moved on meanwhile: its current home loads it (what this node
            # still held is written out first, as a release does)
            if device_id in self.homes:
                self.homes.discard(device_id)
                await self.gw.journal.flush()
                self.gw.drop_device(device_id)
            self._early_acks.pop(device_id, None)
            self._caught_up.pop(device_id, None)
            return
        if device_id not in self.homes:
            self.homes.add(device_id)
            self.moves += 1
        self._read_up_to(device_id, max([ticket, *(p.seq for p in pushes)]))
        self.gw.adopt(device_id, pushes)
        for session, delivery in self._early_acks.pop(device_id, []):
            self.gw.acknowledged(session, delivery)

    async def _release(self, device_id: str) -> None:
        """The device connected to another node: write its pushes out, forget them here,
        and tell its new home to load them."""
        self.homes.discard(device_id)
        self.claims.pop(device_id, None)
        self._early_acks.pop(device_id, None)
        self._caught_up.pop(device_id, None)
        await self.gw.journal.flush()
        self.gw.drop_device(device_id)
        await self.gw.registry.call(self.link.notify, device_id, "device")

    # -- a lapse of this node's heartbeat ---------------------------------------------------

    async def _recover(self) -> None:
        """Other nodes may have taken devices homed here while this node's heartbeat was
        out: give those up (taking back the ones still connected here), and read the
        pending sets of the others again; then send what waited."""
        call = self.gw.registry.call
        try:
            while True:
                ticket = self.gw.next_seq()  # a read of the pending sets, as in `_catch_up`
                try:
                    lost, pending = await call(self.link.recheck, sorted(self.homes))
                    await self._give_up(lost)
                    self._recovered += await self._take_pending(pending, ticket)
                    break
                except Exception as exc:
                    # Sending stays held: what this node holds may be another's by now.
                    # Every step may be taken again: the devices being given up wait in
                    # `_giving_up`, and a failed read of pushes has taken none of them.
                    log.warning("gateway: looking at device homes after a lapse failed: %s", exc)
                    await asyncio.sleep(self.check_interval)
            self.recoveries += 1
        finally:
            self._recovering -= 1
        if self._recovering:
            return  # another lapse came meanwhile: the last recovery to end sends
        for device_id in list(self.homes):
            if self.gw.queued.get(device_id) and self.gw.online(device_id):
                self.gw.flush(device_id)
        taken, self._recovered = self._recovered, []
        for p in taken:
            self.gw.dispatch_now(p)  # no-op for a push dropped since (its device moved)

    async def _give_up(self, lost: list[str]) -> None:
        """Devices another node took while this node's heartbeat was out."""
        for device_id in lost:
            if device_id in self.homes:  # (not when a release came meanwhile)
                self.homes.discard(device_id)
                self._early_acks.pop(device_id, None)
                self._caught_up.pop(device_id, None)
                self._giving_up[device_id] = None
                self.lost += 1
        if not self._giving_up:
            return
        log.warning(
            "gateway: %d devices were homed on other nodes while this node's heartbeat was out",
            len(self._giving_up),
        )
        await self.gw.journal.flush()  # what this node changed meanwhile, for the new home
        for device_id in list(self._giving_up):
            if device_id not in self.homes:  # (else it reconnected here and was loaded again)
                self.gw.drop_device(device_id)
                if self.gw.online(device_id):
                    # still connected here: take it back as a connect does (its new home
                    # writes out and lets go, then this node loads its pushes and sends)
                    self.claim(device_id)
                else:
                    # its new home lets go and loads it again from Redis: what it loaded
                    # when it took the device may be stale by now (acknowledged here
                    # meanwhile), and what this node accepted for it meanwhile had no notice
                    await self.gw.registry.call(
                        self.link.notify, device_id, "release", self.node_id
                    )
            del self._giving_up[device_id]

    async def _take_pending(self, pending: dict[str, list[str]], ticket: int) -> list[Push]:
        """Pushes in the pending sets of devices still homed here that this node does not
        know (their notices went with its inbox): taken, like `_catch_up` does."""
        unknown = {i for device_id, ids in pending.items() for i in ids if i not in self.gw.pushes}
        found = await self.gw.registry.call(self.link.get_pushes, sorted(unknown))
        upto = dict.fromkeys(pending, ticket)
        taken = self._take(found, upto)
        for device_id, seq in upto.items():
            self._read_up_to(device_id, seq)
        return taken

    # -- watchdog --------------------------------------------------------------------------

    async def _check_loop(self) -> None:
        last_orphans = 0.0
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                now = time.monotonic()
                for device_id, since in list(self.claims.items()):
                    if now - since >= CLAIM_RETRY:
                        # no answer (a dead old home, a lost notice): claim again; a dead
                        # home is skipped by the claim script
                        self.claims[device_id] = now
                        await self._claim(device_id)
                if now - last_orphans >= self.orphan_interval:
                    last_orphans = now
                    await self._adopt_orphans()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gateway: checking device homes failed")

    async def _adopt_orphans(self) -> None:
        """Devices whose home died: take them, so their pushes expire, wake and get
        receipts even if the device never comes back."""
        call = self.gw.registry.call
        orphans = await call(self.link.orphans)
        self.home_checks += 1
        for device_id, dead in orphans:
            if await call(self.link.take, device_id, dead):
                log.info("gateway: device %s adopted from stopped node %s", device_id, dead)
                await self._load(device_id)

    # -- lookups ---------------------------------------------------------------------------

    def save_presence(self, changes: list[tuple[str, bool]]) -> None:
        """Which of these devices are connected here (written in the background)."""
        self.gw.registry.call_soon_store(self.link.set_online, changes)

    async def online_elsewhere(self, device_id: str) -> bool:
        node = await self.gw.registry.call(self.link.online_node, device_id)
        return node is not None and node != self.node_id

    async def last_seen(self, device_id: str) -> float | None:
        return await self.gw.registry.call(self.link.last_seen, device_id)

    async def all_pushes(self) -> dict[str, Push]:
        return {p.id: p for p in await self.gw.registry.call(self.link.all_pushes)}

    async def find(self, push_id: str) -> Push | None:
        """A push record kept by any node (this node's memory has only its devices')."""
        return await self.gw.registry.call(self.link.get_push, push_id)
