"""The gateway's value types: apps and their keys, devices and their tokens, pushes.

Plain frozen dataclasses (registry entries) and one mutable one (`Push`, whose state moves
from queued to a final state). Shared by the stores, the service and the routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

PushState = Literal[
    "queued",  # waiting in the gateway (device offline, or held for a batch)
    "sent",  # handed to the device's connection, not acknowledged yet (shown as queued)
    "delivered",
    "expired",
    "collapsed",
    "unregistered",
    "dropped",
]
FINAL_STATES: Final = frozenset({"delivered", "expired", "collapsed", "unregistered", "dropped"})
PRIORITIES: Final = (10, 5, 1)
PUSH_TYPES: Final = ("alert", "background")


@dataclass(frozen=True, slots=True)
class WakeHook:
    url: str
    secret: str
    after_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "secret": self.secret, "after_seconds": self.after_seconds}


@dataclass(frozen=True, slots=True)
class App:
    app_id: str
    name: str
    key_hash: str  # sha256 hex of the API key
    created: float
    receipt_url: str | None = None
    wake: WakeHook | None = None

    def public(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "name": self.name,
            "created": self.created,
            "webhooks": self.webhooks(),
        }

    def webhooks(self) -> dict[str, Any]:
        wake = None
        if self.wake is not None:
            # the secret is the app's own; show that one is set, never the value
            wake = {"url": self.wake.url, "after_seconds": self.wake.after_seconds}
        return {"receipt_url": self.receipt_url, "wake": wake}


@dataclass(frozen=True, slots=True)
class AppKey:
    """An ES256 public key an app signs provider JWTs with."""

    app_id: str
    kid: str
    public_key: str  # PEM
    created: float
    revoked: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "kid": self.kid,
            "created": self.created,
            "revoked": self.revoked,
            "status": "revoked" if self.revoked is not None else "active",
        }


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    secret_hash: str  # sha256 hex of the device secret
    created: float
    last_seen: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceToken:
    token: str  # opaque, not a credential: pushing needs the app's credentials too
    device_id: str
    app_id: str
    created: float
    deleted: float | None = None  # when it stopped being valid (410 Unregistered)


@dataclass(slots=True)
class Push:
    """One push and its fate; the device message is kept until the state is final."""

    id: str
    app_id: str
    device_id: str
    token: str
    priority: int
    push_type: str
    expiration: int  # unix seconds; 0: now or never
    collapse_id: str | None
    created: float
    updated: float
    seq: int  # order of arrival (delivery order per (device, app))
    state: PushState = "queued"
    body: bytes | None = None  # the device message (JSON), None once final
    delivered_at: float | None = None
    connection: str | None = None
    reason: str | None = None
    expires_at: float | None = None  # absolute time after which it is not delivered
    uid: int | None = field(default=None, compare=False)  # hub message uid while sent

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def record(self) -> dict[str, Any]:
        """What GET /v1/push/{id} and the receipt webhook show."""
        out: dict[str, Any] = {
            "id": self.id,
            "state": "queued" if self.state == "sent" else self.state,
            "token": self.token,
            "app": self.app_id,
            "device_id": self.device_id,
            "priority": self.priority,
            "created": self.created,
            "updated": self.updated,
        }
        if self.delivered_at is not None:
            out["delivered_at"] = self.delivered_at
        if self.connection is not None:
            out["connection"] = self.connection
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class Content:
    content_id: str
    device_id: str
    app_id: str
    content_type: str
    data: bytes
    created: float
    expires: float


@dataclass(slots=True)
class Registry:
    """Apps, keys, devices and tokens as of one store generation."""

    generation: int = -1
    apps: dict[str, App] = field(default_factory=dict)
    keys: dict[tuple[str, str], AppKey] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    tokens: dict[str, DeviceToken] = field(default_factory=dict)
