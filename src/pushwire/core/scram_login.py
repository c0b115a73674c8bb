"""The server's side of a SCRAM-SHA-256 login (MQTT 5 enhanced authentication,
core/scram.py, mqtt/enhanced_auth.py) around the exchange itself: `ScramLogins.start` takes
an attempt from the same failure budgets as a password login and finds the user's verifier
(a stable fake one for an unknown user, so the exchange fails only at the proof, like a
wrong password); `ScramLogins.finish` gives the budget back on success. A SCRAM login costs
the server a few HMACs (PBKDF2 runs on the client), so it never touches the hashing pool.

Every way a password is set (core/auth_admin.py, the service's admin methods) also stores
the user's SCRAM verifier."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pushwire.core.auth_input import log_name
from pushwire.core.device_auth import DeviceAuthenticator
from pushwire.core.identity import AuthResult, Identity
from pushwire.core.login_budget import LoginBudget
from pushwire.core.scram import ScramCredentials, ScramError
from pushwire.model import StoredUser

log = logging.getLogger("pushwire.auth")


@dataclass(frozen=True, slots=True)
class ScramStart:
    """What `AuthService.scram_start` found: the credentials to run the exchange with, or
    the refusal (`no_verifier`: the user has no SCRAM credentials, MQTT 0x8C)."""

    credentials: ScramCredentials | None
    refusal: AuthResult | None
    verifier: str | None = None  # the stored verifier used (None: a mock or a refusal)
    no_verifier: bool = False


class ScramLogins:
    def __init__(
        self,
        budget: LoginBudget,
        users: Callable[[], Mapping[str, StoredUser]],
        devices: Callable[[], DeviceAuthenticator | None],
        mock_key: bytes,
        iterations: int,
    ) -> None:
        self._budget = budget
        self._users = users  # the current snapshot's users (it is replaced on reload)
        self._devices = devices  # set on the service after it was made
        self._mock_key = mock_key
        self._iterations = iterations

    def start(self, username: str, peer_ip: str) -> ScramStart:
        """Begin a SCRAM exchange for `username`: take an attempt from the failure budgets
        and find the verifier. Refused when rate limited, or when the user exists but has no
        SCRAM verifier (password set before pushwire stored them, or a push device)."""
        attempt = (peer_ip, username)
        limited = self._budget.take(attempt, username)
        if limited is not None:
            return ScramStart(None, limited)
        devices = self._devices()
        if devices is not None and devices.owns(username):
            return self._no_verifier(peer_ip, username, "a push device logs in with its secret")
        user = self._users().get(username)
        if user is None:
            # run the exchange to the proof with fake credentials (RFC 5802 section 5.1)
            mock = ScramCredentials.mock(username, self._mock_key, self._iterations)
            return ScramStart(mock, None)
        if user.scram is None:
            return self._no_verifier(
                peer_ip,
                username,
                "no SCRAM credentials for this user: its password was set before pushwire "
                "stored them; set it again, or log in with username and password",
            )
        try:
            creds = ScramCredentials.parse(user.scram)
        except ScramError:
            log.error("auth: the SCRAM verifier of %s is unreadable", log_name(username))
            return self._no_verifier(peer_ip, username, "the SCRAM credentials are unusable")
        return ScramStart(creds, None, user.scram)

    def _no_verifier(self, peer_ip: str, username: str, why: str) -> ScramStart:
        # the attempt's token stays taken, so probing which users lack one is rate limited
        self._budget.stats.logins_failed += 1
        log.info("SCRAM login refused from %s for user %s: %s", peer_ip, log_name(username), why)
        return ScramStart(None, AuthResult(None, "not_authorized", why), no_verifier=True)

    def finish(self, username: str, peer_ip: str, start: ScramStart, proof_ok: bool) -> AuthResult:
        """End an exchange begun with `start`: the identity when the proof was right and
        the verifier is still the one the exchange used (not changed meanwhile)."""
        user = self._users().get(username)
        if not proof_ok or user is None or start.verifier is None or user.scram != start.verifier:
            return self._budget.failed(peer_ip, username, "wrong SCRAM proof")
        self._budget.refund((peer_ip, username))
        self._budget.stats.logins_ok += 1
        return AuthResult(Identity(username, frozenset(user.roles)), "ok", "ok")
