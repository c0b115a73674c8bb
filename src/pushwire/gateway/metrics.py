"""The gateway's Prometheus families for GET /metrics (a collector on the server's registry)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pushwire.gateway.cluster_stats import ClusterStats
from pushwire.gateway.delivery import PushGateway
from pushwire.gateway.registry import RegistryView
from pushwire.http.metrics import counter, gauge, one


class GatewayCollector(Collector):
    def __init__(
        self, delivery: PushGateway, registry: RegistryView, cluster: ClusterStats | None = None
    ) -> None:
        self.delivery = delivery
        self.registry = registry
        self.cluster = cluster  # engine=redis: every node's figures (cluster_stats.py)

    def collect(self) -> Iterable[Metric]:
        d = self.delivery
        s = d.stats
        reg = self.registry
        waiting = sum(len(q) for q in d.queued.values())
        inflight = sum(len(q) for q in d.sent.values())
        yield counter("pushwire_pushes_accepted", "pushes accepted (200)", one(s.accepted))
        yield counter(
            "pushwire_pushes_rejected",
            "pushes refused, per APNs-style reason",
            [([r], n) for r, n in sorted(s.rejected.items())],
            ["reason"],
        )
        yield counter(
            "pushwire_pushes_final",
            "pushes that reached a final state, per state",
            [([k], n) for k, n in sorted(s.final.items())],
            ["state"],
        )
        yield gauge(
            "pushwire_pushes_pending",
            "pushes waiting in the gateway (queued) and handed to a connection (sent)",
            [(["queued"], waiting), (["sent"], inflight)],
            ["state"],
        )
        yield counter(
            "pushwire_device_wakeups",
            "writes of pushes to device connections (a batch of held pushes counts once)",
            one(s.wakeups),
        )
        yield counter(
            "pushwire_push_notices",
            "pushes sent as a notice plus stored content (notify-then-fetch)",
            one(s.notices),
        )
        yield counter("pushwire_wake_webhooks", "offline wake-ups fired", one(d.wake.fired))
        yield counter(
            "pushwire_webhook_attempts_failed",
            "failed webhook attempts, per kind",
            [([k], w.failed_attempts) for k, w in d.webhooks.stats.items()],
            ["kind"],
        )
        yield counter(
            "pushwire_webhooks_sent",
            "webhooks delivered, per kind",
            [([k], w.sent) for k, w in d.webhooks.stats.items()],
            ["kind"],
        )
        yield counter(
            "pushwire_gateway_registry_updates",
            "registry changes applied: one record at a time from a change notice (incremental),"
            " or by reading the whole registry (full: start-up, and on a shared store only to"
            " recover from a missed notice or a Redis reconnect)",
            [(["incremental"], reg.changes_applied), (["full"], reg.full_reloads)],
            ["how"],
        )
        yield gauge(
            "pushwire_devices",
            "registered devices, and those online now",
            [
                (["registered"], len(reg.reg.devices)),
                (["online"], sum(1 for dev in reg.reg.devices if d.online(dev))),
            ],
            ["state"],
        )
        if d.homes is not None:
            yield counter(
                "pushwire_gateway_home_checks",
                "rounds of this node's dead-home check (each reads the per-node home index)",
                one(d.homes.home_checks),
            )
            yield counter(
                "pushwire_gateway_device_moves",
                "devices this node became the home of (a device moved here, or its home died)",
                one(d.homes.moves),
            )
        if self.cluster is not None:
            yield from self._cluster(self.cluster)

    def _cluster(self, cluster: ClusterStats) -> Iterable[Metric]:
        per_node = cluster.per_node()
        yield counter(
            "pushwire_gateway_node_pushes",
            "push figures of every live node of the cluster (label node: its node id): accepted,"
            " delivered, expired, and 410 Unregistered answers; other nodes' as of their last"
            " heartbeat",
            [([n, f], v) for n, figs in sorted(per_node.items()) for f, v in sorted(figs.items())],
            ["node", "event"],
        )
        yield gauge(
            "pushwire_gateway_cluster_pushes",
            "cluster totals: the sum of pushwire_gateway_node_pushes over the live nodes (a"
            " gauge: it goes down when a node stops)",
            [([f], v) for f, v in sorted(cluster.totals().items())],
            ["event"],
        )
