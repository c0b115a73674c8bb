"""The gateway's Prometheus families for GET /metrics (a collector on the server's registry)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pushwire.gateway.delivery import PushGateway
from pushwire.gateway.registry import RegistryView
from pushwire.http.metrics import counter, gauge, one


class GatewayCollector(Collector):
    def __init__(self, delivery: PushGateway, registry: RegistryView) -> None:
        self.delivery = delivery
        self.registry = registry

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
