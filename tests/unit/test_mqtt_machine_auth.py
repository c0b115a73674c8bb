"""The machine's AUTH family (mqtt/handle_auth.py) and the 0x97 ack: the SCRAM exchange's
decisions as events and bytes, against a real auth service on a memory store; no socket."""

from __future__ import annotations

import asyncio

import pytest

from helpers.machine import (
    PlainSession,
    PrefixRights,
    connect_events,
    connected,
    decode_out,
    feed,
    sent,
)
from pushwire.core.auth import AuthService
from pushwire.core.auth_settings import AuthSettings
from pushwire.core.passwords import Passwords
from pushwire.core.scram import ScramClient
from pushwire.engines.auth_store import MemoryAuthStore
from pushwire.mqtt.connection import MQTTConnection, ProtocolViolation
from pushwire.mqtt.enhanced_auth import CONTINUE_AUTHENTICATION, REAUTHENTICATE, EnhancedAuth
from pushwire.mqtt.events import Authenticated, AuthTimer, Close, ConnectIn, PublishIn, Send
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Auth,
    Connack,
    Connect,
    Disconnect,
    PingReq,
    PubAck,
    Publish,
    PubRec,
    ReasonCode,
)

METHOD = "SCRAM-SHA-256"


@pytest.fixture
def service() -> AuthService:
    fast = Passwords(time_cost=1, memory_cost_kib=8, parallelism=1)
    svc = AuthService(MemoryAuthStore(), AuthSettings(login_failures_burst=3), passwords=fast)
    svc.admin.add_user("alice", "wonderland", [])
    asyncio.run(svc.refresh())
    return svc


def scram_connect(
    service: AuthService, client: ScramClient
) -> tuple[MQTTConnection, ConnectIn, bytes]:
    """CONNECT with SCRAM through the machine: (machine, request, server-first-message)."""
    conn = MQTTConnection()
    props = {"authentication_method": METHOD, "authentication_data": client.first()}
    (request,) = connect_events(conn, Connect("c", PROTOCOL_V5, properties=props))
    assert isinstance(request, ConnectIn)
    events = conn.start_enhanced_auth(request, service, "192.0.2.1")
    (challenge,) = sent(events, PROTOCOL_V5)
    assert isinstance(challenge, Auth) and challenge.reason_code == CONTINUE_AUTHENTICATION
    assert AuthTimer(True) in events
    return conn, request, challenge.properties["authentication_data"]


def test_scram_connect_ends_in_authenticated_and_connack_carries_server_final(
    service: AuthService,
) -> None:
    client = ScramClient("alice", "wonderland")
    conn, request, first = scram_connect(service, client)
    events = feed(
        conn,
        Auth(
            CONTINUE_AUTHENTICATION,
            {"authentication_method": METHOD, "authentication_data": client.final(first)},
        ),
    )
    assert events[0] == AuthTimer(False)
    done = events[1]
    assert isinstance(done, Authenticated) and done.request is request
    assert done.result.identity is not None and done.result.identity.username == "alice"
    assert conn.check_login(done.request, done.result, PrefixRights()) == []
    (connack,) = decode_out(conn.accept(done.request, PlainSession(), False), PROTOCOL_V5)
    assert isinstance(connack, Connack) and connack.reason_code == 0
    client.verify(connack.properties["authentication_data"])  # the server proved itself


def test_wrong_proof_is_refused_in_the_connack(service: AuthService) -> None:
    client = ScramClient("alice", "queen")
    conn, _, first = scram_connect(service, client)
    events = feed(
        conn,
        Auth(
            CONTINUE_AUTHENTICATION,
            {"authentication_method": METHOD, "authentication_data": client.final(first)},
        ),
    )
    (connack,) = sent(events, PROTOCOL_V5)
    assert isinstance(connack, Connack) and connack.reason_code == ReasonCode.NOT_AUTHORIZED
    assert isinstance(events[-1], Close)


def test_timeout_refuses_an_exchange_in_flight(service: AuthService) -> None:
    conn, _, _ = scram_connect(service, ScramClient("alice", "wonderland"))
    events = conn.auth_timed_out()
    (connack,) = sent(events, PROTOCOL_V5)
    assert isinstance(connack, Connack) and connack.reason_code == ReasonCode.NOT_AUTHORIZED
    assert isinstance(events[-1], Close)


def test_only_auth_or_disconnect_before_connack(service: AuthService) -> None:
    conn, _, _ = scram_connect(service, ScramClient("alice", "wonderland"))
    with pytest.raises(ProtocolViolation):
        feed(conn, PingReq())


def test_reauthentication_on_a_live_connection_answers_auth_success(
    service: AuthService,
) -> None:
    conn, _, _ = connected()
    # a live connection that logged in with SCRAM, then re-authenticates
    client = ScramClient("alice", "wonderland")
    props = {"authentication_method": METHOD, "authentication_data": client.first()}
    conn.pending_connect = None
    conn.enhanced_auth = EnhancedAuth(service, "192.0.2.1")
    conn.enhanced_auth.method = METHOD
    conn.enhanced_auth.username = "alice"
    (challenge,) = sent(feed(conn, Auth(REAUTHENTICATE, props)), PROTOCOL_V5)
    assert isinstance(challenge, Auth)
    data = client.final(challenge.properties["authentication_data"])
    events = feed(
        conn,
        Auth(
            CONTINUE_AUTHENTICATION, {"authentication_method": METHOD, "authentication_data": data}
        ),
    )
    (ok,) = sent(events, PROTOCOL_V5)
    assert isinstance(ok, Auth) and ok.reason_code == ReasonCode.SUCCESS


def test_quota_exceeded_acks_with_0x97_and_ends_a_qos2_flow() -> None:
    conn, session, _ = connected()
    (ev1,) = feed(conn, Publish("t", b"x", 1, False, False, 1))
    assert isinstance(ev1, PublishIn)
    ack, releases = conn.quota_exceeded(ev1)
    assert ack is not None
    (puback,) = decode_out(ack, PROTOCOL_V5)
    assert puback == PubAck(1, ReasonCode.QUOTA_EXCEEDED)
    assert releases
    (ev2,) = feed(conn, Publish("t", b"x", 2, False, False, 2))
    assert isinstance(ev2, PublishIn) and session.inbound_qos2_seen(2)
    ack, releases = conn.quota_exceeded(ev2)
    assert ack is not None
    (pubrec,) = decode_out(ack, PROTOCOL_V5)
    assert isinstance(pubrec, PubRec) and pubrec.reason_code == ReasonCode.QUOTA_EXCEEDED
    assert releases and not session.inbound_qos2_seen(2)
    assert not any(isinstance(e, (Send, Close, Disconnect)) for e in [ev1, ev2])


def test_quota_exceeded_leaves_the_3_1_1_ack_as_it_is() -> None:
    conn, _, _ = connected(PROTOCOL_V311)
    (ev,) = feed(conn, Publish("t", b"x", 1, False, False, 1))
    assert isinstance(ev, PublishIn)
    assert conn.quota_exceeded(ev) == (ev.ack, ev.releases)


def test_an_unanswered_challenge_times_out_on_the_machines_tick(service: AuthService) -> None:
    conn, _, _ = scram_connect(service, ScramClient("alice", "wonderland"))
    assert conn.deadline == conn.auth_deadline == conn.limits.auth_timeout  # CONNECT at 0.0
    assert conn.tick(conn.deadline - 1) == []
    events = conn.tick(conn.auth_deadline)
    (connack,) = sent(events, PROTOCOL_V5)
    assert isinstance(connack, Connack) and connack.reason_code == ReasonCode.NOT_AUTHORIZED
    assert isinstance(events[-1], Close)


def test_an_answered_challenge_leaves_nothing_for_the_tick(service: AuthService) -> None:
    client = ScramClient("alice", "wonderland")
    conn, _, first = scram_connect(service, client)
    feed(
        conn,
        Auth(
            CONTINUE_AUTHENTICATION,
            {"authentication_method": METHOD, "authentication_data": client.final(first)},
        ),
    )
    assert conn.auth_deadline == 0
    assert conn.tick(1.0) == [] and conn.deadline == conn.limits.connect_timeout
