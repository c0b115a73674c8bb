"""The server's in-memory view of the gateway registry, kept fresh from the store.

Lookups on the push path (API key -> app, token -> device, device secret check) never touch
the disk. Changes made by this server apply to the view at once; changes made by another
process (`pushwire app key revoke`, `pushwire device remove`) are noticed by a watch loop
that polls the store's generation every `watch_interval` seconds and reloads.

A store shared by nodes (engine=redis) publishes a notice per change naming its generation
and the records it touched (engines/redis/gateway_notices.py): the view fetches just those.
It reloads everything only to recover: a generation skipped (a lost notice), a generation
poll that stays ahead of the notices, or a (re)made subscription (a Redis reconnect).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pushwire.core.acl import DEVICE_ROLE
from pushwire.core.identity import Identity
from pushwire.gateway import ids
from pushwire.gateway.admin import GatewayAdmin
from pushwire.gateway.model import App, AppKey, Device, DeviceToken, Registry
from pushwire.gateway.store import GatewayStore

log = logging.getLogger("pushwire.gateway")
_T = TypeVar("_T")


class RegistryView:
    def __init__(self, store: GatewayStore, watch_interval: float = 1.0) -> None:
        self.store = store
        self.admin = GatewayAdmin(store)
        self.watch_interval = watch_interval
        self.reg = Registry()
        self.apps_by_key: dict[str, App] = {}
        self.live_tokens: dict[tuple[str, str], DeviceToken] = {}  # (device, app) -> token
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pushwire-gw")
        self._watch: asyncio.Task[None] | None = None
        self._changed: list[Callable[[], None]] = []
        self._removed: list[Callable[[str], None]] = []  # device removed (end its connections)
        self._background: set[asyncio.Future[object]] = set()
        self._token_deleted: list[Callable[[str], None]] = []  # token deleted elsewhere
        self.token_lock = asyncio.Lock()
        self._closed = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # settled() callers
        self.full_reloads = 0  # whole registry read (start-up and recovery only on Redis)
        self.changes_applied = 0  # change notices applied record by record

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.call(self.store.open)
        wait_changes = self._wait_changes()
        if wait_changes is not None:
            await wait_changes(0.0)  # subscribe first: no change between load and notices
        await self.refresh(force=True)
        self._watch = asyncio.create_task(self._watch_loop(), name="pushwire-gateway-watch")

    async def stop(self) -> None:
        self._closed = True
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        close_notifications: Callable[[], Awaitable[None]] | None = getattr(
            self.store, "close_notifications", None
        )
        if close_notifications is not None:
            await close_notifications()
        await self.call(self.store.close)
        self._pool.shutdown(wait=False)

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a store operation on the gateway's store thread (in order, one at a time)."""
        if not self.store.blocking:
            return fn(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def call_soon_store(self, fn: Callable[..., object], *args: Any) -> None:
        """A store write nobody waits for (bookkeeping, notice content). Queued on the store
        thread NOW, so any store call made after this one sees it."""
        name = getattr(fn, "__name__", "store write")
        if self._closed:
            return  # shutting down: bookkeeping after the store closed is dropped
        if not self.store.blocking:
            try:
                fn(*args)
            except Exception:
                log.exception("gateway: %s failed", name)
            return
        fut = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))
        self._background.add(fut)

        def done(f: asyncio.Future[object]) -> None:
            self._background.discard(f)
            if not f.cancelled() and f.exception() is not None:
                log.error("gateway: %s failed: %s", name, f.exception())

        fut.add_done_callback(done)

    def on_change(self, callback: Callable[[], None]) -> None:
        self._changed.append(callback)

    def on_device_removed(self, callback: Callable[[str], None]) -> None:
        self._removed.append(callback)

    def on_token_deleted(self, callback: Callable[[str], None]) -> None:
        """`callback(token)` when a change notice says a token was deleted elsewhere."""
        self._token_deleted.append(callback)

    def _wait_changes(self) -> Callable[[float], Awaitable[list[Any] | None]] | None:
        wait: Callable[[float], Awaitable[list[Any] | None]] | None = getattr(
            self.store, "wait_changes", None
        )
        return wait

    async def _watch_loop(self) -> None:
        wait_changes = self._wait_changes()
        if wait_changes is not None:
            await self._follow_changes(wait_changes)
        while True:  # a store of one process: poll its generation
            await asyncio.sleep(self.watch_interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("gateway: reloading apps and devices failed")

    async def _follow_changes(
        self, wait_changes: Callable[[float], Awaitable[list[Any] | None]]
    ) -> None:
        """Apply the change notices of a shared store one by one (a key revoked on another
        node is refused here at once); reload only when one may have been missed."""
        while True:
            changes = await wait_changes(self.watch_interval)
            try:
                if changes is None:
                    await self.reload("subscription (re)made")
                elif changes:
                    await self._apply(changes)
                elif await self.call(self.store.generation) > self.reg.generation:
                    # ahead with no notice: one may be on its way; take what is here, and
                    # if the view is still behind a notice was lost
                    more = await wait_changes(0.0)
                    if more:
                        await self._apply(more)
                    if more is None or await self.call(self.store.generation) > self.reg.generation:
                        await self.reload("generation ahead of the notices")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gateway: following registry changes failed")

    async def _apply(self, changes: list[Any]) -> None:
        for change in changes:
            if change is None:
                await self.reload("unreadable change notice")
                return
            if change.generation <= self.reg.generation:
                continue  # our own write (applied already), or covered by a reload
            if change.generation > self.reg.generation + 1:
                await self.reload(f"generation gap ({self.reg.generation} -> {change.generation})")
                return
            records = await self.call(self._records, change.items)
            for kind, ident, record in records:
                self._apply_record(kind, ident, record)
            self.reg.generation = change.generation
            self.changes_applied += 1
            self._advanced()

    def _apply_record(self, kind: str, ident: str, record: Any) -> None:
        if kind == "app":
            old = self.reg.apps.pop(ident, None)
            if old is not None:
                self.apps_by_key.pop(old.key_hash, None)
            if record is not None:
                self.put_app(record)
        elif kind == "key":
            app_id, _, kid = ident.partition("\0")
            if record is None:
                self.reg.keys.pop((app_id, kid), None)
            else:
                self.put_key(record)
        elif kind == "device":
            if record is not None:
                self.put_device(record)
            elif self.reg.devices.pop(ident, None) is not None:
                for cb in list(self._removed):
                    cb(ident)
        elif kind == "token" and record is not None:
            self.put_token(record)
            if record.deleted is not None:
                for cb in list(self._token_deleted):
                    cb(ident)

    def _records(self, items: Any) -> Any:
        records: Callable[[Any], Any] = getattr(self.store, "records")  # noqa: B009
        return records(items)

    async def settled(self, generation: int) -> None:
        """After a write made here (admin API): return once the view shows it and every
        change before it. On a store with change notices the notices bring it (no reload
        of the registry on the writing node either); one not seen within `watch_interval`
        is recovered by a reload."""
        if self._wait_changes() is None:
            await self.refresh(force=True)
            return
        if self.reg.generation >= generation:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (generation, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.watch_interval)
        except TimeoutError:
            await self.reload(f"own change {generation} not noticed")
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _advanced(self) -> None:
        for entry in list(self._waiters):
            generation, fut = entry
            if generation <= self.reg.generation and not fut.done():
                fut.set_result(None)

    async def reload(self, why: str) -> None:
        """Read the whole registry (the recovery path on a shared store)."""
        log.info("gateway: reloading the registry: %s", why)
        self._install(await self.call(self.store.registry))

    async def refresh(self, *, force: bool = False) -> None:
        gen = await self.call(self.store.generation)
        if force or gen != self.reg.generation:
            self._install(await self.call(self.store.registry))

    async def wrote(self, generation: int, change: Callable[[], None]) -> None:
        """After one of our own writes: apply `change` to the view when nothing else changed
        the store meanwhile (no reload of every device per registration), else reload."""
        if generation == self.reg.generation + 1:
            # our own change: the caller handles its consequences (no full rescan per
            # registration); the change callbacks are for what other processes did
            change()
            self.reg.generation = generation
        elif generation > self.reg.generation:
            self._install(await self.call(self.store.registry))

    def put_app(self, app: App) -> None:
        old = self.reg.apps.get(app.app_id)
        if old is not None:
            self.apps_by_key.pop(old.key_hash, None)
        self.reg.apps[app.app_id] = app
        self.apps_by_key[app.key_hash] = app

    def put_key(self, key: AppKey) -> None:
        self.reg.keys[(key.app_id, key.kid)] = key

    def put_device(self, device: Device) -> None:
        self.reg.devices[device.device_id] = device

    def put_token(self, token: DeviceToken) -> None:
        self.reg.tokens[token.token] = token
        pair = (token.device_id, token.app_id)
        if token.deleted is None:
            self.live_tokens[pair] = token
        elif self.live_tokens.get(pair) == token or (
            pair in self.live_tokens and self.live_tokens[pair].token == token.token
        ):
            del self.live_tokens[pair]

    def _notify(self) -> None:
        for cb in list(self._changed):
            try:
                cb()
            except Exception:
                log.exception("gateway: registry change callback failed")

    def _install(self, reg: Registry) -> None:
        self.full_reloads += 1
        gone = [d for d in self.reg.devices if d not in reg.devices]
        self.reg = reg
        self._advanced()
        for device_id in gone:
            for cb in list(self._removed):
                cb(device_id)
        self.apps_by_key = {a.key_hash: a for a in reg.apps.values()}
        self.live_tokens = {
            (t.device_id, t.app_id): t for t in reg.tokens.values() if t.deleted is None
        }
        self._notify()

    # -- lookups -------------------------------------------------------------------------

    def app_by_api_key(self, key: str) -> App | None:
        return self.apps_by_key.get(ids.hash_secret(key))

    def app(self, app_id: str) -> App | None:
        return self.reg.apps.get(app_id)

    def key(self, app_id: str, kid: str) -> AppKey | None:
        return self.reg.keys.get((app_id, kid))

    def device(self, device_id: str) -> Device | None:
        return self.reg.devices.get(device_id)

    def token(self, token: str) -> DeviceToken | None:
        return self.reg.tokens.get(token)

    def device_apps(self, device_id: str) -> list[str]:
        return sorted(a for (d, a) in self.live_tokens if d == device_id)

    # -- device credentials (core.auth.DeviceAuthenticator) -----------------------------

    def owns(self, username: str) -> bool:
        return username in self.reg.devices

    def verify(self, device_id: str, secret: bytes) -> Identity | None:
        device = self.reg.devices.get(device_id)
        if device is None:
            return None
        if not hmac.compare_digest(ids.hash_secret(secret), device.secret_hash):
            return None
        return Identity(device_id, frozenset({DEVICE_ROLE}))
