"""Push figures per node and for the whole cluster (engine=redis), for GET /metrics.

Every `cluster_heartbeat_interval` a node writes its own figures to Redis and reads every
live node's (engines/redis/gateway_stats.py); /metrics then shows each node's figures with
its node id as a label, and their sums as cluster totals. Only figures whose sum means
something are shared: pushes accepted, delivered, expired, and 410 Unregistered answers.
A node stopped for longer than `cluster_node_timeout` leaves both (so a total may go down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pushwire.gateway.delivery import GatewayStats

log = logging.getLogger("pushwire.gateway")

SHARED_FIGURES = ("accepted", "delivered", "expired", "unregistered")


class StatsLink(Protocol):
    def exchange(
        self, node_id: str, figures: dict[str, int], ttl: float
    ) -> dict[str, dict[str, int]]: ...


def node_figures(stats: GatewayStats) -> dict[str, int]:
    return {
        "accepted": stats.accepted,
        "delivered": stats.final.get("delivered", 0),
        "expired": stats.final.get("expired", 0),
        "unregistered": stats.rejected.get("Unregistered", 0),  # 410 answers
    }


class ClusterStats:
    def __init__(
        self,
        stats: GatewayStats,
        link: StatsLink,
        node_id: str,
        call: Callable[..., Awaitable[dict[str, dict[str, int]]]],
        interval: float,
        ttl: float,
    ) -> None:
        self.stats = stats
        self.link = link
        self.node_id = node_id
        self._call = call  # runs a blocking store call on the gateway's store thread
        self.interval = interval
        self.ttl = ttl
        self.others: dict[str, dict[str, int]] = {}  # the other live nodes, last round
        self._task: asyncio.Task[None] | None = None

    def per_node(self) -> dict[str, dict[str, int]]:
        """Every live node's figures; this node's are current, the others' one round old."""
        return {**self.others, self.node_id: node_figures(self.stats)}

    def totals(self) -> dict[str, int]:
        nodes = self.per_node().values()
        return {f: sum(n.get(f, 0) for n in nodes) for f in SHARED_FIGURES}

    async def round(self) -> None:
        got = await self._call(self.link.exchange, self.node_id, node_figures(self.stats), self.ttl)
        got.pop(self.node_id, None)
        self.others = got

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="pushwire-gateway-stats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        failing = False  # log an outage once, not every heartbeat
        while True:
            try:
                await self.round()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("gateway: sharing this node's figures failed: %s", exc)
                failing = True
            await asyncio.sleep(self.interval)
