"""/metrics for a cluster (engine=redis): every live node's figures and their totals.

Each node reports its own figures with its heartbeat (engines/redis/presence.py); any node
scraped answers for all of them, as of the last heartbeat round (`cluster_heartbeat_
interval`), so one scrape through a load balancer sees the whole cluster. This node's own
metrics stay where they are (pushwire_mqtt_*, pushwire_http_*, ...).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pushwire.engines.redis.presence import SUMMABLE
from pushwire.mqtt.handover import SessionHandover


class ClusterCollector(Collector):
    def __init__(self, handover: SessionHandover) -> None:
        self.handover = handover

    def collect(self) -> Iterable[Metric]:
        figures = self.handover.figures
        nodes = GaugeMetricFamily("pushwire_cluster_nodes", "live nodes (heartbeat not lapsed)")
        nodes.add_metric([], len(figures.nodes))
        yield nodes
        for name in SUMMABLE:
            per_node = GaugeMetricFamily(
                f"pushwire_cluster_node_{name}",
                f"{name} of each live node, as of its last heartbeat",
                labels=["node"],
            )
            for node, own in sorted(figures.nodes.items()):
                if name in own:
                    per_node.add_metric([node], own[name])
            yield per_node
            total = GaugeMetricFamily(
                f"pushwire_cluster_{name}", f"{name} summed over the live nodes"
            )
            total.add_metric([], figures.totals.get(name, 0.0))
            yield total
        handed = GaugeMetricFamily(
            "pushwire_cluster_sessions_moved",
            "persistent sessions this node handed to another node (out) or took (in)",
            labels=["direction"],
        )
        handed.add_metric(["out"], self.handover.sessions_handed_over)
        handed.add_metric(["in"], self.handover.sessions_taken_over)
        yield handed
