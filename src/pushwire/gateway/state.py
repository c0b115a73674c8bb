"""What the gateway routes need, hung on the FastAPI app as `app.state.gateway`."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from pushwire.config import Settings
from pushwire.core.auth import AuthService
from pushwire.core.ratelimit import KeyedLimiter
from pushwire.gateway.delivery import PushGateway
from pushwire.gateway.model import Device
from pushwire.gateway.provider_auth import ProviderAuthenticator
from pushwire.gateway.registry import RegistryView
from pushwire.gateway.store import GatewayStore
from pushwire.http.auth import client_ip, refusal
from pushwire.http.errors import ApiError


@dataclass
class GatewayState:
    settings: Settings
    auth: AuthService
    registry: RegistryView
    store: GatewayStore
    delivery: PushGateway
    providers: ProviderAuthenticator
    limiter: KeyedLimiter[str] | None = field(default=None)

    def __post_init__(self) -> None:
        rate = self.settings.push_rate_per_app
        if rate > 0:
            self.limiter = KeyedLimiter(rate, max(1.0, 2 * rate), clock=time.monotonic)

    async def device_from_basic(self, conn: HTTPConnection) -> Device | None:
        """The device whose HTTP Basic credential the request carries; None when it carries
        no device credential. A wrong one goes through the auth service like any login
        (counted, logged, and rate limited per address: 429 with Retry-After)."""
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        device_id, sep, secret = decoded.partition(":")
        if not sep or not self.registry.owns(device_id):
            return None
        result = await self.auth.authenticate_password(device_id, secret, client_ip(conn))
        if result.reason == "rate_limited":
            raise refusal(result)
        identity = result.identity
        if not result.ok or identity is None or identity.username != device_id:
            return None
        return self.registry.device(device_id)

    def registration_allowed(self, conn: HTTPConnection, is_loopback: bool) -> bool:
        secret = self.settings.device_registration_secret
        if secret:
            given = conn.headers.get("pushwire-registration-secret", "")
            return hmac.compare_digest(given.encode(), secret.encode())
        return is_loopback


def gateway_state(conn: HTTPConnection) -> GatewayState:
    state = getattr(conn.app.state, "gateway", None)
    if state is None:
        raise ApiError(404, "not_found", "the push gateway is not enabled")
    assert isinstance(state, GatewayState)
    return state
