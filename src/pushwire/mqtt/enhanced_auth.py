"""MQTT 5 enhanced authentication (spec 4.12) with SCRAM-SHA-256, sans-IO.

One `EnhancedAuth` per connection that named an Authentication Method in CONNECT. It takes
what the client sent (CONNECT's properties, AUTH packets, a timer tick) and answers with a
decision; it sends nothing and owns no timer, so every rule is unit-testable:

- `Challenge`: send AUTH 0x18 Continue authentication with these properties (the
  server-first-message); the caller arms the `auth_timeout` timer and calls `timed_out`
  when it fires before the client's answer;
- `Accepted`: at CONNECT, send CONNACK 0x00 with these properties (the server-final-message,
  `v=`: the server's proof that it knows the verifier); on a live connection, AUTH 0x00;
- `Refused`: at CONNECT, CONNACK with `reason_code`; on a live connection, DISCONNECT with
  it; then close.

The exchange, as RFC 7804 shapes SCRAM over HTTP and spec 4.12 over MQTT:

    CONNECT  method=SCRAM-SHA-256 data=client-first   ->
                                                      <- AUTH 0x18 data=server-first
    AUTH 0x18 data=client-final                       ->
                                                      <- CONNACK 0x00 data=server-final

and re-authentication on a live connection starts with AUTH 0x19 (same method) instead of
CONNECT and ends with AUTH 0x00. Other packets keep flowing during a re-authentication.

Reason codes: an Authentication Method other than SCRAM-SHA-256, or a user who has no SCRAM
credentials yet (password set before pushwire stored them: set it again, or use username
and password), 0x8C Bad authentication method; a wrong proof, an unknown user, a malformed
SCRAM message (the MQTT packet itself is fine: the SASL layer failed), or a timeout, 0x87
Not authorized; rate limited by the failed-login budget, 0x9F; AUTH used against the
MQTT rules (out of turn, a second exchange while one is in flight, another method than
CONNECT's, a reason code the client may not send), 0x82 Protocol error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from pushwire.core.identity import AuthResult
from pushwire.core.scram import MECHANISM, ScramError, ScramServer, parse_client_first
from pushwire.core.scram_login import ScramStart
from pushwire.mqtt.packets import Auth, ReasonCode

CONTINUE_AUTHENTICATION: Final = 0x18
REAUTHENTICATE: Final = 0x19

_START_REFUSALS: Final = {
    "rate_limited": ReasonCode.CONNECTION_RATE_EXCEEDED,
    "bad_credentials": ReasonCode.NOT_AUTHORIZED,
    "not_authorized": ReasonCode.NOT_AUTHORIZED,
    "ok": ReasonCode.NOT_AUTHORIZED,
}


class ScramAuthority(Protocol):
    """What the exchange needs from the auth service (core/auth.py AuthService)."""

    def scram_start(self, username: str, peer_ip: str) -> ScramStart: ...

    def scram_finish(
        self, username: str, peer_ip: str, start: ScramStart, proof_ok: bool
    ) -> AuthResult: ...


@dataclass(frozen=True, slots=True)
class Challenge:
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Accepted:
    result: AuthResult
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refused:
    reason_code: int
    reason: str  # for the Reason String (CONNACK/DISCONNECT only) and the log


AuthStep = Challenge | Accepted | Refused


def wants_enhanced_auth(connect_properties: dict[str, Any]) -> bool:
    return "authentication_method" in connect_properties


class EnhancedAuth:
    def __init__(self, authority: ScramAuthority, peer_ip: str) -> None:
        self.authority = authority
        self.peer_ip = peer_ip
        self.method: str | None = None  # CONNECT's; re-authentication must use the same
        self.username: str | None = None  # who the connection is, once accepted
        self._scram: ScramServer | None = None  # the exchange in flight, if any
        self._start: ScramStart | None = None

    @property
    def in_flight(self) -> bool:
        return self._scram is not None

    @property
    def accepted(self) -> bool:
        return self.username is not None

    def connect(self, properties: dict[str, Any], connect_username: str | None) -> AuthStep:
        """CONNECT named an Authentication Method: begin (or refuse) the exchange."""
        method = properties.get("authentication_method")
        self.method = method
        if method != MECHANISM:
            return Refused(
                ReasonCode.BAD_AUTHENTICATION_METHOD,
                f"authentication method {method!r} is not supported (use {MECHANISM})",
            )
        return self._begin(properties.get("authentication_data"), connect_username)

    def auth(self, packet: Auth) -> AuthStep:
        """An AUTH packet from the client."""
        if self.method is None:
            return Refused(ReasonCode.PROTOCOL_ERROR, "AUTH without an Authentication Method")
        if packet.properties.get("authentication_method") != self.method:
            # MQTT-4.12.0-5 / MQTT-4.12.1-1: the method of CONNECT, throughout
            return Refused(ReasonCode.PROTOCOL_ERROR, "AUTH with another Authentication Method")
        data = packet.properties.get("authentication_data")
        if packet.reason_code == REAUTHENTICATE:
            if not self.accepted or self.in_flight:
                return Refused(
                    ReasonCode.PROTOCOL_ERROR,
                    "re-authentication before CONNACK or while an exchange is in flight",
                )
            return self._begin(data, self.username)
        if packet.reason_code == CONTINUE_AUTHENTICATION:
            if not self.in_flight:
                return Refused(ReasonCode.PROTOCOL_ERROR, "AUTH continue with no exchange")
            return self._finish(data)
        return Refused(ReasonCode.PROTOCOL_ERROR, "a client does not send AUTH Success")

    def timed_out(self) -> Refused | None:
        """The caller's `auth_timeout` timer fired: a refusal if the exchange still waits."""
        if not self.in_flight:
            return None
        return self._fail("authentication timed out")

    # -- steps -------------------------------------------------------------------------

    def _begin(self, data: bytes | None, expected_user: str | None) -> AuthStep:
        try:
            first = parse_client_first(data or b"")
        except ScramError as exc:
            return Refused(ReasonCode.NOT_AUTHORIZED, f"malformed SCRAM message: {exc}")
        if expected_user is not None and first.username != expected_user:
            return Refused(
                ReasonCode.NOT_AUTHORIZED,
                "the SCRAM username differs from the connection's user name",
            )
        start = self.authority.scram_start(first.username, self.peer_ip)
        if start.credentials is None:
            refusal = start.refusal
            assert refusal is not None
            code = (
                ReasonCode.BAD_AUTHENTICATION_METHOD
                if start.no_verifier
                else _START_REFUSALS[refusal.reason]
            )
            return Refused(code, refusal.message)
        self._start = start
        self._scram = ScramServer(first, start.credentials)
        return Challenge(
            {
                "authentication_method": self.method,
                "authentication_data": self._scram.server_first_message(),
            }
        )

    def _finish(self, data: bytes | None) -> AuthStep:
        scram = self._scram
        assert scram is not None
        try:
            ok, server_final = scram.final(data or b"")
        except ScramError as exc:
            return self._fail(f"malformed SCRAM message: {exc}")
        if not ok:
            return self._fail("wrong SCRAM proof")
        start, username = self._start, scram.client_first.username
        assert start is not None
        self._scram = self._start = None
        result = self.authority.scram_finish(username, self.peer_ip, start, True)
        if not result.ok:
            return Refused(ReasonCode.NOT_AUTHORIZED, result.message)
        self.username = username
        return Accepted(
            result,
            {"authentication_method": self.method, "authentication_data": server_final},
        )

    def _fail(self, why: str) -> Refused:
        """End the exchange in flight as a failed login (it counts in the budget)."""
        scram, start = self._scram, self._start
        self._scram = self._start = None
        if scram is not None and start is not None:
            self.authority.scram_finish(scram.client_first.username, self.peer_ip, start, False)
        return Refused(ReasonCode.NOT_AUTHORIZED, why)
