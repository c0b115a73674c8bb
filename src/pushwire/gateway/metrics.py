"""The gateway's Prometheus families for GET /metrics."""

from __future__ import annotations

from pushwire.gateway.delivery import PushGateway
from pushwire.gateway.registry import RegistryView


def _family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> str:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {int(v) if float(v).is_integer() else v}" for labels, v in samples]
    return "\n".join(lines) + "\n"


def render_metrics(d: PushGateway, reg: RegistryView) -> str:
    s = d.stats
    waiting = sum(len(q) for q in d.queued.values())
    inflight = sum(len(q) for q in d.sent.values())
    out = [
        _family(
            "pushwire_pushes_accepted_total", "counter", "pushes accepted (200)", [("", s.accepted)]
        ),
        _family(
            "pushwire_pushes_rejected_total",
            "counter",
            "pushes refused, per APNs-style reason",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(s.rejected.items())],
        ),
        _family(
            "pushwire_pushes_final_total",
            "counter",
            "pushes that reached a final state, per state",
            [(f'{{state="{k}"}}', n) for k, n in sorted(s.final.items())],
        ),
        _family(
            "pushwire_pushes_pending",
            "gauge",
            "pushes waiting in the gateway (queued) and handed to a connection (sent)",
            [('{state="queued"}', waiting), ('{state="sent"}', inflight)],
        ),
        _family(
            "pushwire_device_wakeups_total",
            "counter",
            "writes of pushes to device connections (a batch of held pushes counts once)",
            [("", s.wakeups)],
        ),
        _family(
            "pushwire_push_notices_total",
            "counter",
            "pushes sent as a notice plus stored content (notify-then-fetch)",
            [("", s.notices)],
        ),
        _family(
            "pushwire_wake_webhooks_total",
            "counter",
            "offline wake-ups fired",
            [("", d.wake.fired)],
        ),
        _family(
            "pushwire_webhook_attempts_failed_total",
            "counter",
            "failed webhook attempts, per kind",
            [(f'{{kind="{k}"}}', w.failed_attempts) for k, w in d.webhooks.stats.items()],
        ),
        _family(
            "pushwire_webhooks_sent_total",
            "counter",
            "webhooks delivered, per kind",
            [(f'{{kind="{k}"}}', w.sent) for k, w in d.webhooks.stats.items()],
        ),
        _family(
            "pushwire_devices",
            "gauge",
            "registered devices, and those online now",
            [
                ('{state="registered"}', len(reg.reg.devices)),
                ('{state="online"}', sum(1 for dev in reg.reg.devices if d.online(dev))),
            ],
        ),
    ]
    return "".join(out)
