"""Composes engine + hub + listeners; starts them and stops them gracefully."""

from __future__ import annotations

import asyncio
import fcntl
import importlib
import importlib.util
import logging
import signal
import socket
from typing import TextIO

import uvicorn

from pushwire.config import Settings, generated_node_id
from pushwire.core.admission import admission_from_settings
from pushwire.core.auth import AuthService
from pushwire.core.auth_settings import AuthSettings
from pushwire.core.hub import Hub
from pushwire.core.log import run_log_sweeper
from pushwire.core.pacing import PacedDelivery
from pushwire.core.session import SessionLimits
from pushwire.core.sys_topics import run_sys_publisher
from pushwire.engines.auth_store import AuthStore, make_auth_store
from pushwire.engines.base import Engine
from pushwire.engines.memory import MemoryEngine
from pushwire.engines.redis.auth_store import RedisAuthStore
from pushwire.engines.redis.presence import RedisPresence
from pushwire.engines.redis.sessions import RedisSessionStore
from pushwire.gateway.service import Gateway
from pushwire.heap import settle_heap
from pushwire.http.app import create_app, make_log
from pushwire.http.cluster_metrics import ClusterCollector
from pushwire.http.endpoints import hot_routes
from pushwire.http.forwarded import TrustedProxies
from pushwire.http.publish import json_body_limit
from pushwire.http.server import HttpServer
from pushwire.http.websocket import WsDoor
from pushwire.http.ws_protocol import WebSocketHandover, WebSocketProtocol
from pushwire.mqtt.broker import MQTTBroker
from pushwire.mqtt.clients import mqtt_clients
from pushwire.mqtt.handover import SessionHandover
from pushwire.mqtt.websocket import mount_mqtt_websocket
from pushwire.ports import Broker
from pushwire.tls import http_server_context, server_context

log = logging.getLogger("pushwire")


class EngineUnavailable(RuntimeError):
    """The configured engine is not part of this build (say which, and what to use)."""


REDIS_ENGINE_MODULE = "pushwire.engines.redis"


def redis_engine_available() -> bool:
    # find_spec, not a guarded import: a broken redis engine must fail loudly, not be
    # reported as "not available"
    # a namespace package (engines/redis/ holding only the session/auth parts, no
    # __init__.py with RedisEngine yet) is not the engine
    spec = importlib.util.find_spec(REDIS_ENGINE_MODULE)
    namespace = spec is not None and spec.origin is None and spec.submodule_search_locations
    return spec is not None and not namespace


def make_engine(settings: Settings) -> Engine:
    if settings.engine == "memory":
        return MemoryEngine()
    if settings.engine == "redis":
        if not redis_engine_available():
            raise EngineUnavailable(
                f"engine redis is not available: {REDIS_ENGINE_MODULE} is not part of this "
                "build (use --engine sqlite or --engine memory)"
            )
        module = importlib.import_module(REDIS_ENGINE_MODULE)
        engine: Engine = module.RedisEngine(settings)
        return engine
    from pushwire.engines.sqlite import SQLiteEngine

    return SQLiteEngine(
        settings.data_dir / "pushwire.db",
        durable=settings.durability,
        max_pending_bytes=settings.store_max_pending_bytes,
    )


def make_server_auth_store(settings: Settings) -> AuthStore:
    """engine redis: users, tokens and ACLs in Redis, the same on every node; otherwise the
    embedded store (memory, or SQLite in the data dir)."""
    if settings.engine == "redis":
        return RedisAuthStore(settings.redis_url)
    return make_auth_store(memory=settings.memory, data_dir=settings.data_dir)


def make_handover(engine: Engine, hub: Hub, settings: Settings) -> SessionHandover | None:
    """engine=redis: sessions follow their client from node to node (mqtt/handover.py),
    when the engine keeps them in a RedisSessionStore (its `sessions`)."""
    store = getattr(engine, "sessions", None)
    if not isinstance(store, RedisSessionStore):
        return None
    stats = hub.stats

    def figures() -> dict[str, float]:
        return {
            "clients_connected": stats.clients_connected,
            "messages_in": stats.messages_received,
            "messages_out": stats.messages_sent,
            "bytes_in": stats.bytes_received,
            "bytes_out": stats.bytes_sent,
            "uptime": stats.uptime(),
        }

    presence = RedisPresence(
        store.client,
        settings.node_id,
        prefix=store.prefix,
        interval=settings.cluster_heartbeat_interval,
        timeout=settings.cluster_node_timeout,
        figures=figures,
    )
    store.takeover_timeout = settings.cluster_takeover_timeout
    return SessionHandover(hub, store, presence, settings.cluster_heartbeat_interval)


class DataDirInUse(RuntimeError):
    pass


class StoreLost(RuntimeError):
    """The shared store (Redis) lost the data this node had seen; restart to start over."""


class PushwireServer:
    def __init__(self, settings: Settings) -> None:
        if not settings.node_id:  # named at start, not in the settings (they compare equal)
            settings = settings.model_copy(update={"node_id": generated_node_id()})
        self.settings = settings
        self.engine = make_engine(settings)
        self.hub = Hub(
            self.engine,
            SessionLimits(
                settings.max_inflight,
                settings.max_queued_messages,
                settings.max_queued_bytes,
                settings.backpressure_progress_window,
                settings.max_persistent_queued_messages,
                settings.max_persistent_queued_bytes,
                settings.queue_memory_window,
                pressure_queue_messages=settings.backpressure_queue_messages,
            ),
            retained_slice=settings.retained_slice,
            route_cache_bytes=settings.route_cache_bytes,
        )
        self.auth = AuthService(
            make_server_auth_store(settings),
            AuthSettings(
                anonymous=settings.anonymous,
                login_failures_burst=settings.login_failures_burst,
                login_failures_address_burst=settings.login_failures_address_burst,
                login_failures_window=settings.login_failures_window,
                sys_readable=settings.sys_readable,
                scram_iterations=settings.scram_iterations,
            ),
            seed_rules=settings.acl,
        )
        # per-IP connection limits, shared by the MQTT and HTTP listeners
        self.admission = admission_from_settings(settings)
        self.mqtt = MQTTBroker(self.hub, settings, self.auth, self.admission)
        self.handover = make_handover(self.engine, self.hub, settings)
        self.mqtt.handover = self.handover
        # the push gateway: device pushes are hub messages on devices/{device}/{app}
        self.gateway = Gateway(self.hub, self.auth, settings)
        homes = self.gateway.delivery.homes
        if homes is not None and self.handover is not None:
            homes.follow(self.handover.presence)  # home only while it beats (gateway/cluster.py)
        self.log = make_log(self.hub, settings)  # message log for the HTTP transports
        self.mqtt_address: tuple[str, int] | None = None
        self.http_address: tuple[str, int] | None = None
        self.mqtt_tls_address: tuple[str, int] | None = None
        self._http: HttpServer | None = None
        self._http_listener: asyncio.Server | None = None
        self._ws: WebSocketHandover | None = None
        self._ws_native: WsDoor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._lock_file: TextIO | None = None
        self.store_lost = ""  # why the shared store lost its data (engine=redis), if it did

    async def start(self) -> None:
        s = self.settings
        if s.engine == "sqlite":  # the only engine whose state is a file in data_dir
            self._lock_data_dir()
        await self.engine.open()
        if self.handover is not None:
            # heartbeat before sessions are adopted: locks are only good while this beats
            self.handover.publish_sys = s.sys_interval > 0
            await self.handover.start()
        await self.auth.start()
        await self.gateway.start()
        await self.hub.restore()
        await self.log.restore()
        await self._start_broker()
        self._tasks.append(asyncio.create_task(run_log_sweeper(self.log, s.log_sweep_interval)))
        log.info("node_id %s, engine %s", s.node_id, s.engine)
        # --workers: every worker binds the same ports; the kernel spreads connections
        reuse_port = s.workers > 1
        self.mqtt_address = await self.mqtt.listen(s.bind, s.mqtt_port, reuse_port=reuse_port)
        log.info("mqtt listening on %s:%d", *self.mqtt_address)
        tls = server_context(s)
        if tls is not None:
            self.mqtt_tls_address = await self.mqtt.listen(
                s.bind, s.mqtt_tls_port, tls, reuse_port=reuse_port
            )
            log.info("mqtts listening on %s:%d", *self.mqtt_tls_address)
        await self._start_http()
        if s.sys_interval > 0:
            self._tasks.append(asyncio.create_task(run_sys_publisher(self.hub, s.sys_interval)))

    async def _start_broker(self) -> None:
        """engine=redis: publishes go through the broker; every node routes what it hands
        back. Started after the log and retained messages are loaded: the broker continues
        from the position they were loaded at."""
        engine = self.engine
        if not isinstance(engine, Broker):
            return
        bind = getattr(engine, "bind_retention", None)
        if bind is not None:  # each topic's stream keeps what the log's rules keep
            bind(lambda topic: self.log.retention_for(topic).max_messages)
        self.hub.broker = engine
        # routed over as many loop turns as the fan-out budget asks (core/pacing.py)
        deliver = PacedDelivery(self.hub, self.settings.fanout_deliveries_per_turn)
        pass_by = getattr(engine, "bind_pass_by", None)
        if pass_by is not None:  # messages nobody here routes skip decoding (Hub.pass_by)
            pass_by(deliver.pass_by)
        await engine.start_fanout(deliver, self._store_lost)

    def _store_lost(self, why: str) -> None:
        """Redis came back without the data this node has seen: its history, positions
        and retained tree no longer match. Stop with an error; the process manager (or the
        --workers supervisor) starts it again, and it loads what Redis has now, in a new
        epoch (readers' cursors then report a gap, never a silent loss)."""
        log.critical("redis lost its data: %s; stopping", why)
        self.store_lost = why
        self.request_stop()

    def _lock_data_dir(self) -> None:
        """Two servers on one store would corrupt each other's view: refuse the second."""
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(data_dir / "pushwire.lock", "w")  # noqa: SIM115 (held until exit)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirInUse(f"{data_dir} is in use by another pushwire process") from None

    async def _start_http(self) -> None:
        s = self.settings
        sock = socket.create_server((s.bind, s.http_port), reuse_port=s.workers > 1, backlog=4096)
        sock.setblocking(False)
        self.http_address = sock.getsockname()[:2]
        app = create_app(self.hub, self.log, s, auth=self.auth)
        mount_mqtt_websocket(app, self.mqtt)
        # MQTT clients in the admin API's client list (GET /v1/admin/clients)
        app.state.pushwire.clients.add_source(lambda: mqtt_clients(self.mqtt))
        self.gateway.mount(app)
        if self.handover is not None:
            app.state.pushwire.registry.register(ClusterCollector(self.handover))
        # uvicorn's config: its proxy-header rules around the app, and the settings of the
        # WebSocket protocol that takes upgraded connections over (http/ws_protocol.py)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            forwarded_allow_ips=s.forwarded_allow_ips,  # the app's rule, as the protocol's
            ws=WebSocketProtocol,
            ws_max_size=s.ws_max_message
            or max(json_body_limit(s.http_max_payload), s.max_packet_size + 8),
        )
        config.load()
        self._ws = WebSocketHandover(config)
        # the JSON WebSocket served by the owned protocol itself (http/websocket.py)
        self._ws_native = WsDoor(app.state.pushwire, config.ws_max_size)
        # the owned HTTP protocol (http/connection.py): hot endpoints from bytes, the rest
        # through the ASGI app; head guard, admission and TLS identity per connection
        self._http = HttpServer(
            config.loaded_app,
            hot_routes(app.state.pushwire),
            admission=self.admission,
            head_timeout=s.http_header_timeout,
            max_request_line=s.http_max_request_line,
            max_head=s.http_max_head,
            websocket=self._ws,
            native_websocket=self._ws_native.take,
            proxies=TrustedProxies(s.forwarded_allow_ips),
        )
        tls = http_server_context(s)
        self._http_listener = await asyncio.get_running_loop().create_server(
            self._http.protocol, sock=sock, ssl=tls, backlog=4096
        )
        log.info("http listening on %s:%d%s", *self.http_address, " (tls)" if tls else "")

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _ws_shutdown(self) -> None:
        if self._ws_native is not None:
            await self._ws_native.shutdown(5.0)
        if self._ws is not None:
            await self._ws.shutdown(5.0)

    async def stop(self) -> None:
        log.info("stopping")
        await self.mqtt.close()
        for session in list(self.hub.sessions.values()):
            if session.link is not None:  # connection_lost may not have run yet
                self.hub.disconnect(session, session.link)
        self.log.close_listeners()  # long-polls answer, SSE/WebSocket streams close
        if self._http_listener is not None:
            self._http_listener.close()
        if self._http is not None:
            # streams were closed above; don't let a stuck request hold the stop
            await asyncio.gather(self._http.shutdown(5.0), self._ws_shutdown())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.log.sweep()  # hand pending log trims to the engine before it closes
        await self.gateway.stop()
        await self.auth.stop()
        if self.handover is not None:
            await self.handover.stop()
        await self.engine.close()
        if self._lock_file is not None:
            self._lock_file.close()
        log.info("stopped")


async def serve(settings: Settings) -> None:
    server = PushwireServer(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_stop)
    await server.start()
    settle_heap()  # the start-up heap leaves the cyclic GC's scans (pushwire/heap.py)
    await server.wait_stopped()
    await server.stop()
    if server.store_lost:
        raise StoreLost(server.store_lost)
