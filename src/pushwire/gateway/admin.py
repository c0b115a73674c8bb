"""Validated registry operations shared by the CLI (`pushwire app/device`), the admin API
and the device routes. Synchronous: the CLI calls them directly, the server on its store
thread. Each returns what was made plus the store generation it produced."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from pushwire.gateway import ids
from pushwire.gateway.model import App, AppKey, Device, DeviceToken, WakeHook
from pushwire.gateway.store import GatewayStore, NotFound

APP_NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class NewApp:
    app: App
    api_key: str  # shown once
    generation: int


@dataclass(frozen=True, slots=True)
class NewDevice:
    device: Device
    secret: str  # shown once
    generation: int


def validate_app_name(name: str) -> str:
    if not name or len(name) > APP_NAME_MAX or any(ord(c) < 32 for c in name):
        raise ValueError(f"an app name is 1 to {APP_NAME_MAX} printable characters")
    return name


def load_es256_public_key(pem: str | bytes) -> str:
    """Check a PEM public key is a P-256 EC key (what ES256 needs); its normalised PEM."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("an ES256 key must be an EC P-256 (prime256v1) public key")
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def validate_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2048:
        raise ValueError("a webhook URL is an http:// or https:// URL of at most 2048 characters")
    return url


class GatewayAdmin:
    def __init__(self, store: GatewayStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    # apps

    def create_app(self, name: str) -> NewApp:
        validate_app_name(name)
        key = ids.new_api_key()
        app = App(ids.new_app_id(), name, ids.hash_secret(key), self.clock())
        gen = self.store.add_app(app)
        return NewApp(app, key, gen)

    def remove_app(self, app_id: str) -> int:
        return self.store.remove_app(app_id, self.clock())

    def app(self, app_id: str) -> App:
        app = self.store.registry().apps.get(app_id)
        if app is None:
            raise NotFound(f"no app {app_id!r}")
        return app

    def add_key(self, app_id: str, pem: str | bytes, kid: str | None = None) -> tuple[AppKey, int]:
        kid = kid or ids.new_key_id()
        if not ids.KEY_ID_RE.fullmatch(kid):
            raise ValueError("a key id is 1 to 64 of A-Z a-z 0-9 . _ -")
        key = AppKey(app_id, kid, load_es256_public_key(pem), self.clock())
        return key, self.store.add_key(key)

    def revoke_key(self, app_id: str, kid: str) -> int:
        return self.store.revoke_key(app_id, kid, self.clock())

    def set_webhooks(self, app_id: str, receipt_url: str | None, wake: WakeHook | None) -> int:
        if receipt_url is not None:
            validate_url(receipt_url)
        if wake is not None:
            validate_url(wake.url)
            if not wake.secret or len(wake.secret) > 512:
                raise ValueError("a wake secret is 1 to 512 characters")
            if not 0 <= wake.after_seconds <= 86_400 * 30:
                raise ValueError("after_seconds is between 0 and 30 days")
        return self.store.set_webhooks(app_id, receipt_url, wake)

    # devices

    def register_device(self) -> NewDevice:
        secret = ids.new_device_secret()
        device = Device(ids.new_device_id(), ids.hash_secret(secret), self.clock())
        return NewDevice(device, secret, self.store.add_device(device))

    def remove_device(self, device_id: str) -> int:
        return self.store.remove_device(device_id, self.clock())

    def create_token(self, device_id: str, app_id: str) -> tuple[DeviceToken, int]:
        """A new token for (device, app); the caller makes sure none is live already."""
        token = DeviceToken(ids.new_device_token(), device_id, app_id, self.clock())
        return token, self.store.add_token(token)

    def delete_token(self, token: str) -> tuple[int, float]:
        """Delete (idempotent); returns the generation and the deletion time used."""
        when = self.clock()
        return self.store.delete_token(token, when), when
