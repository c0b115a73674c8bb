"""The MQTT 5 enhanced-authentication exchange (mqtt/enhanced_auth.py) against a real auth
service on a memory store: bytes and properties in, decisions out, no socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pushwire.core.auth import AuthService
from pushwire.core.auth_settings import AuthSettings
from pushwire.core.passwords import Passwords
from pushwire.core.scram import ScramClient
from pushwire.engines.auth_store import MemoryAuthStore, StoredUser
from pushwire.mqtt.enhanced_auth import (
    CONTINUE_AUTHENTICATION,
    REAUTHENTICATE,
    Accepted,
    Challenge,
    EnhancedAuth,
    Refused,
)
from pushwire.mqtt.packets import Auth, ReasonCode

METHOD = "SCRAM-SHA-256"
IP = "192.0.2.7"


@pytest.fixture
def service() -> AuthService:
    # cheap argon2: these tests are about SCRAM, not password hashing
    fast = Passwords(time_cost=1, memory_cost_kib=8, parallelism=1)
    svc = AuthService(MemoryAuthStore(), AuthSettings(login_failures_burst=3), passwords=fast)
    svc.admin.add_user("alice", "wonderland", ["ops"])
    # a user from before SCRAM: an argon2 hash and no verifier
    svc.store.add_user(StoredUser("legacy", fast.hash("old-secret"), (), 1.0))
    asyncio.run(svc.refresh())
    return svc


def connect_props(data: bytes, method: str = METHOD) -> dict[str, Any]:
    return {"authentication_method": method, "authentication_data": data}


def auth(code: int, data: bytes, method: str = METHOD) -> Auth:
    return Auth(code, {"authentication_method": method, "authentication_data": data})


def login(ex: EnhancedAuth, client: ScramClient) -> Accepted:
    challenge = ex.connect(connect_props(client.first()), None)
    assert isinstance(challenge, Challenge)
    assert ex.in_flight
    step = ex.auth(
        auth(CONTINUE_AUTHENTICATION, client.final(challenge.properties["authentication_data"]))
    )
    assert isinstance(step, Accepted), step
    return step


def test_full_exchange_accepts_and_proves_the_server(service: AuthService) -> None:
    ex = EnhancedAuth(service, IP)
    client = ScramClient("alice", "wonderland")
    step = login(ex, client)
    assert step.result.identity is not None
    assert step.result.identity.username == "alice"
    assert step.result.identity.roles == frozenset({"ops"})
    assert step.properties["authentication_method"] == METHOD
    client.verify(step.properties["authentication_data"])  # mutual authentication
    assert ex.accepted and not ex.in_flight


def test_wrong_password_is_not_authorized_and_spends_the_budget(service: AuthService) -> None:
    for _ in range(3):
        ex = EnhancedAuth(service, IP)
        client = ScramClient("alice", "queen-of-hearts")
        challenge = ex.connect(connect_props(client.first()), None)
        assert isinstance(challenge, Challenge)
        data = client.final(challenge.properties["authentication_data"])
        step = ex.auth(auth(CONTINUE_AUTHENTICATION, data))
        assert step == Refused(ReasonCode.NOT_AUTHORIZED, "wrong SCRAM proof")
    assert service.stats.logins_failed == 3
    # the budget for (IP, alice) is spent: even the right password is refused for now
    step = EnhancedAuth(service, IP).connect(connect_props(ScramClient("alice", "x").first()), None)
    assert isinstance(step, Refused)
    assert step.reason_code == ReasonCode.CONNECTION_RATE_EXCEEDED
    # and a plain password login shares that budget
    result = asyncio.run(service.authenticate_password("alice", "wonderland", IP))
    assert result.reason == "rate_limited"


def test_success_gives_the_budget_back(service: AuthService) -> None:
    for _ in range(5):  # more than the burst of 3
        login(EnhancedAuth(service, IP), ScramClient("alice", "wonderland"))
    assert service.stats.logins_ok == 5


def test_unknown_user_fails_at_the_proof_like_a_wrong_password(service: AuthService) -> None:
    ex = EnhancedAuth(service, IP)
    client = ScramClient("nobody", "whatever")
    challenge = ex.connect(connect_props(client.first()), None)
    assert isinstance(challenge, Challenge)  # no early answer that tells the user is unknown
    step = ex.auth(
        auth(CONTINUE_AUTHENTICATION, client.final(challenge.properties["authentication_data"]))
    )
    assert step == Refused(ReasonCode.NOT_AUTHORIZED, "wrong SCRAM proof")


def test_user_without_scram_credentials_gets_bad_authentication_method(
    service: AuthService,
) -> None:
    step = EnhancedAuth(service, IP).connect(
        connect_props(ScramClient("legacy", "old-secret").first()), None
    )
    assert isinstance(step, Refused)
    assert step.reason_code == ReasonCode.BAD_AUTHENTICATION_METHOD
    assert "set it again" in step.reason
    # plain username/password still works for that user
    assert asyncio.run(service.authenticate_password("legacy", "old-secret", IP)).ok
    # setting the password again makes SCRAM work
    asyncio.run(service.set_password("legacy", "new-secret"))
    login(EnhancedAuth(service, IP), ScramClient("legacy", "new-secret"))


def test_password_change_invalidates_the_old_scram_password(service: AuthService) -> None:
    asyncio.run(service.set_password("alice", "through-the-looking-glass"))
    ex = EnhancedAuth(service, IP)
    client = ScramClient("alice", "wonderland")
    challenge = ex.connect(connect_props(client.first()), None)
    assert isinstance(challenge, Challenge)
    data = client.final(challenge.properties["authentication_data"])
    assert ex.auth(auth(CONTINUE_AUTHENTICATION, data)).reason_code == ReasonCode.NOT_AUTHORIZED  # type: ignore[union-attr]
    login(EnhancedAuth(service, IP), ScramClient("alice", "through-the-looking-glass"))


def test_unknown_method_is_bad_authentication_method(service: AuthService) -> None:
    step = EnhancedAuth(service, IP).connect(connect_props(b"x", "SCRAM-SHA-1"), None)
    assert isinstance(step, Refused)
    assert step.reason_code == ReasonCode.BAD_AUTHENTICATION_METHOD


@pytest.mark.parametrize("data", [b"", b"garbage", b"n,,n=alice", b"\xff\xfe", b"p=x,,n=a,r=b"])
def test_malformed_client_first_is_refused_not_raised(service: AuthService, data: bytes) -> None:
    step = EnhancedAuth(service, IP).connect(connect_props(data), None)
    assert isinstance(step, Refused)
    assert step.reason_code == ReasonCode.NOT_AUTHORIZED
    assert step.reason.startswith("malformed SCRAM message")


@pytest.mark.parametrize("data", [b"", b"c=biws", b"c=biws,r=wrong,p=AAAA", b"\x00\xff"])
def test_malformed_client_final_is_refused_and_counted(service: AuthService, data: bytes) -> None:
    ex = EnhancedAuth(service, IP)
    assert isinstance(ex.connect(connect_props(ScramClient("alice", "x").first()), None), Challenge)
    step = ex.auth(auth(CONTINUE_AUTHENTICATION, data))
    assert isinstance(step, Refused)
    assert step.reason_code == ReasonCode.NOT_AUTHORIZED
    assert service.stats.logins_failed == 1
    assert not ex.in_flight


def test_connect_user_name_must_match_the_scram_username(service: AuthService) -> None:
    step = EnhancedAuth(service, IP).connect(
        connect_props(ScramClient("alice", "wonderland").first()), "bob"
    )
    assert isinstance(step, Refused)
    assert step.reason_code == ReasonCode.NOT_AUTHORIZED


def test_reauthentication(service: AuthService) -> None:
    ex = EnhancedAuth(service, IP)
    login(ex, ScramClient("alice", "wonderland"))
    client = ScramClient("alice", "wonderland")
    challenge = ex.auth(auth(REAUTHENTICATE, client.first()))
    assert isinstance(challenge, Challenge)
    # at most one exchange in flight
    second = ex.auth(auth(REAUTHENTICATE, client.first()))
    assert isinstance(second, Refused) and second.reason_code == ReasonCode.PROTOCOL_ERROR
    ex2 = EnhancedAuth(service, IP)
    login(ex2, ScramClient("alice", "wonderland"))
    c2 = ScramClient("alice", "wonderland")
    ch2 = ex2.auth(auth(REAUTHENTICATE, c2.first()))
    assert isinstance(ch2, Challenge)
    done = ex2.auth(auth(CONTINUE_AUTHENTICATION, c2.final(ch2.properties["authentication_data"])))
    assert isinstance(done, Accepted)
    c2.verify(done.properties["authentication_data"])


def test_reauthentication_failures(service: AuthService) -> None:
    ex = EnhancedAuth(service, IP)
    login(ex, ScramClient("alice", "wonderland"))
    # another user on the same connection
    other = ex.auth(auth(REAUTHENTICATE, ScramClient("bob", "x").first()))
    assert isinstance(other, Refused) and other.reason_code == ReasonCode.NOT_AUTHORIZED
    # another method than CONNECT's
    method = ex.auth(auth(REAUTHENTICATE, b"n,,n=alice,r=abc", "PLAIN"))
    assert isinstance(method, Refused) and method.reason_code == ReasonCode.PROTOCOL_ERROR
    # continue with nothing in flight; AUTH Success from a client
    idle = ex.auth(auth(CONTINUE_AUTHENTICATION, b"c=biws,r=x,p=AA=="))
    assert isinstance(idle, Refused) and idle.reason_code == ReasonCode.PROTOCOL_ERROR
    success = ex.auth(auth(ReasonCode.SUCCESS, b""))
    assert isinstance(success, Refused) and success.reason_code == ReasonCode.PROTOCOL_ERROR
    # a wrong password at re-authentication
    client = ScramClient("alice", "wrong")
    challenge = ex.auth(auth(REAUTHENTICATE, client.first()))
    assert isinstance(challenge, Challenge)
    data = client.final(challenge.properties["authentication_data"])
    wrong = ex.auth(auth(CONTINUE_AUTHENTICATION, data))
    assert isinstance(wrong, Refused) and wrong.reason_code == ReasonCode.NOT_AUTHORIZED


def test_reauthentication_before_connack_is_a_protocol_error(service: AuthService) -> None:
    ex = EnhancedAuth(service, IP)
    assert isinstance(ex.connect(connect_props(ScramClient("alice", "x").first()), None), Challenge)
    step = ex.auth(auth(REAUTHENTICATE, ScramClient("alice", "x").first()))
    assert isinstance(step, Refused) and step.reason_code == ReasonCode.PROTOCOL_ERROR


def test_timeout_ends_the_exchange_in_flight_only(service: AuthService) -> None:
    ex = EnhancedAuth(service, IP)
    assert ex.timed_out() is None
    assert isinstance(ex.connect(connect_props(ScramClient("alice", "x").first()), None), Challenge)
    step = ex.timed_out()
    assert step == Refused(ReasonCode.NOT_AUTHORIZED, "authentication timed out")
    assert not ex.in_flight
    assert service.stats.logins_failed == 1
