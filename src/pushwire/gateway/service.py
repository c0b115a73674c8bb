"""The push gateway, composed: store, registry view, provider auth, delivery, routes.

The server builds one `Gateway` next to the hub and the auth service; the gateway plugs
into them rather than beside them: devices log in through the AuthService (its device
hook), pushes are hub messages on `devices/{device}/{app}`, presence and PUBACKs come from
the hub's session events, and the routes live on the same FastAPI app.
"""

from __future__ import annotations

from fastapi import FastAPI

from pushwire.config import Settings
from pushwire.core.auth import AuthService
from pushwire.core.hub import Hub
from pushwire.engines.redis.gateway_homes import RedisDeviceHomes
from pushwire.engines.redis.gateway_stats import RedisNodeStats
from pushwire.engines.redis.gateway_store import RedisGatewayStore
from pushwire.gateway import apps_api, device_api, push_api, pushes_admin_api
from pushwire.gateway.cluster import DeviceHomes
from pushwire.gateway.cluster_stats import ClusterStats
from pushwire.gateway.delivery import PushGateway
from pushwire.gateway.metrics import GatewayCollector
from pushwire.gateway.provider_auth import ProviderAuthenticator
from pushwire.gateway.registry import RegistryView
from pushwire.gateway.state import GatewayState
from pushwire.gateway.store import make_gateway_store
from pushwire.http.state import HttpState


class Gateway:
    def __init__(self, hub: Hub, auth: AuthService, settings: Settings) -> None:
        self.settings = settings
        self.auth = auth
        self.store = make_gateway_store(
            memory=settings.memory,
            data_dir=settings.data_dir,
            engine=settings.engine,
            redis_url=settings.redis_url,
        )
        self.registry = RegistryView(self.store)
        self.delivery = PushGateway(hub, settings, self.registry, self.store)
        self.cluster_stats: ClusterStats | None = None
        if settings.engine == "redis":
            self._join_cluster(settings)
        self.providers = ProviderAuthenticator(self.registry)
        hub.session_events = self.delivery
        auth.devices = self.registry
        self.registry.on_change(self.delivery.registry_changed)
        self.registry.on_device_removed(auth.device_removed)
        self.registry.on_token_deleted(self.delivery.unregister_token)

    def _join_cluster(self, settings: Settings) -> None:
        """engine=redis: each device's pushes are held by its home node (cluster.py)."""
        assert isinstance(self.store, RedisGatewayStore)
        link = RedisDeviceHomes(self.store, settings.node_id, settings.redis_timeout)
        homes = DeviceHomes(
            self.delivery,
            link,
            check_interval=settings.cluster_heartbeat_interval,
            orphan_interval=settings.cluster_node_timeout,
        )
        self.delivery.homes = homes
        self.delivery.journal.forwarder = link.forward
        self.cluster_stats = ClusterStats(
            self.delivery.stats,
            RedisNodeStats(self.store),
            settings.node_id,
            self.registry.call,
            interval=settings.cluster_heartbeat_interval,
            ttl=settings.cluster_node_timeout,
        )

    async def start(self) -> None:
        await self.registry.start()
        await self.delivery.start()
        if self.cluster_stats is not None:
            self.cluster_stats.start()

    async def stop(self) -> None:
        if self.cluster_stats is not None:
            await self.cluster_stats.stop()
        await self.delivery.stop()
        await self.registry.stop()

    def mount(self, app: FastAPI) -> None:
        app.state.gateway = GatewayState(
            self.settings, self.auth, self.registry, self.store, self.delivery, self.providers
        )
        app.include_router(device_api.router)
        app.include_router(push_api.router)
        app.include_router(apps_api.router)
        app.include_router(pushes_admin_api.router)
        http: HttpState = app.state.pushwire
        http.ws_events = self.delivery
        http.registry.register(GatewayCollector(self.delivery, self.registry, self.cluster_stats))
