"""Push devices (gateway/) log in with their device id and secret, through the same
MQTT CONNECT and failure budgets as users: the `DeviceAuthenticator` the server plugs into
the auth service, and the rules of such a login (`verify_device`)."""

from __future__ import annotations

from typing import Protocol

from pushwire.core.identity import AuthResult, Identity
from pushwire.core.login_budget import LoginBudget


class DeviceAuthenticator(Protocol):
    """Registered push devices (gateway/): checks a device id and secret, fast (the secrets
    are 256-bit random, so a SHA-256 comparison is the right tool, not argon2)."""

    def owns(self, username: str) -> bool:
        """True when `username` is a device id this authenticator answers for."""
        ...

    def verify(self, device_id: str, secret: bytes) -> Identity | None:
        """The device's identity (role `device`), None for a wrong or unknown credential."""
        ...


def verify_device(
    devices: DeviceAuthenticator,
    budget: LoginBudget,
    device_id: str,
    password: bytes | str,
    attempt: tuple[str, str],
    client_id: str | None,
) -> AuthResult:
    """A device's login, its attempt already taken from `budget`."""
    peer_ip = attempt[0]
    secret = password.encode() if isinstance(password, str) else password
    identity = devices.verify(device_id, secret)
    if identity is None:
        return budget.failed(peer_ip, device_id, "wrong device credential")
    if client_id is not None and client_id != device_id:
        # a device's MQTT session is keyed by its id: one persistent session per device
        budget.stats.logins_failed += 1
        return AuthResult(None, "not_authorized", "a device's client id is its device id")
    budget.refund(attempt)
    budget.stats.logins_ok += 1
    return AuthResult(identity, "ok", "ok")
