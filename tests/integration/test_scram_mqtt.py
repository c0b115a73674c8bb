"""MQTT 5 enhanced authentication with SCRAM-SHA-256 over real sockets: a raw MQTT 5
client (pushwire's codec on a plain socket: paho-mqtt cannot send AUTH) runs the exchange
against a running server; paho-mqtt checks that plain username/password still works."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from helpers.admin import cli
from helpers.inproc import InProcessServer
from helpers.server import ServerProcess
from pushwire.core.scram import ScramClient
from pushwire.engines.auth_store import StoredUser
from pushwire.mqtt.codec.decoder import Decoder
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
)

pytestmark = pytest.mark.pushwire_only("SCRAM enhanced authentication (MQTT 5 AUTH)")

METHOD = "SCRAM-SHA-256"
CONTINUE, REAUTH = 0x18, 0x19


class RawV5:
    """A blocking MQTT 5 client on a plain socket that sends what a test tells it to."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.decoder = Decoder(server_side=False)
        self.decoder.protocol_level = PROTOCOL_V5
        self.pending: list[Packet] = []

    def send(self, packet: Packet) -> None:
        self.sock.sendall(encode(packet, PROTOCOL_V5))

    def recv(self) -> Packet | None:
        """The next packet; None when the server closed the connection."""
        while not self.pending:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def closed_after(self) -> list[Packet]:
        """Everything the server sends until it closes the connection."""
        out: list[Packet] = []
        while (p := self.recv()) is not None:
            out.append(p)
        return out

    def connect_scram(self, client: ScramClient, **props: Any) -> Packet | None:
        """CONNECT with client-first; the server's first answer."""
        properties = {"authentication_method": METHOD, "authentication_data": client.first()}
        self.send(Connect("", PROTOCOL_V5, "MQTT", properties=properties | props))
        return self.recv()

    def answer(self, client: ScramClient, challenge: Packet | None) -> Packet | None:
        assert isinstance(challenge, Auth), challenge
        assert challenge.reason_code == CONTINUE
        assert challenge.properties["authentication_method"] == METHOD
        final = client.final(challenge.properties["authentication_data"])
        self.send(Auth(CONTINUE, {"authentication_method": METHOD, "authentication_data": final}))
        return self.recv()

    def login(self, username: str, password: str) -> Connack:
        client = ScramClient(username, password)
        connack = self.answer(client, self.connect_scram(client))
        assert isinstance(connack, Connack), connack
        assert connack.reason_code == 0, connack
        assert connack.properties["authentication_method"] == METHOD
        client.verify(connack.properties["authentication_data"])  # the server knew the verifier
        return connack

    def ping(self) -> None:
        """The positive marker: the connection is open and served."""
        self.send(PingReq())
        assert isinstance(self.recv(), PingResp)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[InProcessServer]:
    srv = InProcessServer(auth_timeout=0.5).start()
    assert srv.server is not None
    auth = srv.server.auth
    srv._run(auth.add_user("alice", "wonderland"))
    # a user whose password predates SCRAM: an argon2 hash, no verifier
    old_hash = auth.passwords.hash("old-secret")
    srv.call(lambda: auth.store.add_user(StoredUser("legacy", old_hash, (), 1.0)))
    srv._run(auth.refresh())
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def raw(server: InProcessServer) -> Iterator[Callable[[], RawV5]]:
    clients: list[RawV5] = []

    def make() -> RawV5:
        clients.append(RawV5(server.mqtt_port))
        return clients[-1]

    yield make
    for c in clients:
        c.close()


def test_scram_login_succeeds_with_mutual_proof(raw: Callable[[], RawV5]) -> None:
    c = raw()
    c.login("alice", "wonderland")
    c.ping()


def test_wrong_password_is_refused_with_0x87(raw: Callable[[], RawV5]) -> None:
    c = raw()
    client = ScramClient("alice", "queen-of-hearts")
    connack = c.answer(client, c.connect_scram(client))
    assert isinstance(connack, Connack)
    assert connack.reason_code == 0x87
    assert "authentication_data" not in connack.properties
    assert c.closed_after() == []


def test_unknown_method_is_refused_with_0x8c(raw: Callable[[], RawV5]) -> None:
    c = raw()
    props = {"authentication_method": "SCRAM-SHA-1", "authentication_data": b"n,,n=a,r=b"}
    c.send(Connect("", PROTOCOL_V5, "MQTT", properties=props))
    connack = c.recv()
    assert isinstance(connack, Connack)
    assert connack.reason_code == 0x8C
    assert c.closed_after() == []


def test_malformed_client_first_is_refused_not_crashed(
    raw: Callable[[], RawV5], server: InProcessServer
) -> None:
    c = raw()
    props = {"authentication_method": METHOD, "authentication_data": b"\xff garbage"}
    c.send(Connect("", PROTOCOL_V5, "MQTT", properties=props))
    connack = c.recv()
    assert isinstance(connack, Connack) and connack.reason_code == 0x87
    assert "malformed SCRAM" in connack.properties["reason_string"]
    raw().login("alice", "wonderland")  # the server is fine


def test_user_whose_password_predates_scram(
    raw: Callable[[], RawV5], server: InProcessServer
) -> None:
    c = raw()
    connack = c.connect_scram(ScramClient("legacy", "old-secret"))
    assert isinstance(connack, Connack)
    assert connack.reason_code == 0x8C
    assert "set it again" in connack.properties["reason_string"]
    # plain username/password with a real MQTT 5 client still works
    got: list[int] = []
    done = threading.Event()
    paho = mqtt.Client(
        CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False
    )
    paho.username_pw_set("legacy", "old-secret")

    def on_connect(_c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        got.append(int(rc.value))
        done.set()

    paho.on_connect = on_connect
    paho.connect(server.host, server.mqtt_port)
    paho.loop_start()
    try:
        assert done.wait(10)
        assert got == [0]
    finally:
        paho.loop_stop()
        paho.disconnect()
    # once the password is set again, SCRAM works for that user
    assert server.server is not None
    server._run(server.server.auth.set_password("legacy", "new-secret"))
    raw().login("legacy", "new-secret")


def test_reauthentication_succeeds_on_a_live_connection(raw: Callable[[], RawV5]) -> None:
    c = raw()
    c.login("alice", "wonderland")
    client = ScramClient("alice", "wonderland")
    c.send(Auth(REAUTH, {"authentication_method": METHOD, "authentication_data": client.first()}))
    success = c.answer(client, c.recv())
    assert isinstance(success, Auth)
    assert success.reason_code == 0x00
    client.verify(success.properties["authentication_data"])
    c.ping()


def test_reauthentication_fails_after_a_password_change(
    raw: Callable[[], RawV5], server: InProcessServer
) -> None:
    c = raw()
    c.login("alice", "wonderland")
    assert server.server is not None
    server._run(server.server.auth.set_password("alice", "looking-glass"))
    client = ScramClient("alice", "wonderland")
    c.send(Auth(REAUTH, {"authentication_method": METHOD, "authentication_data": client.first()}))
    answer = c.answer(client, c.recv())
    assert isinstance(answer, Disconnect)
    assert answer.reason_code == 0x87
    assert c.closed_after() == []
    raw().login("alice", "looking-glass")


def test_auth_on_a_password_connection_is_a_protocol_error(server: InProcessServer) -> None:
    c = RawV5(server.mqtt_port)
    try:
        c.send(Connect("", PROTOCOL_V5, "MQTT", username="alice", password=b"wonderland"))
        connack = c.recv()
        assert isinstance(connack, Connack) and connack.reason_code == 0
        c.send(Auth(REAUTH, {"authentication_method": METHOD, "authentication_data": b"n,,"}))
        answer = c.recv()
        assert isinstance(answer, Disconnect) and answer.reason_code == 0x82
    finally:
        c.close()


def test_unanswered_challenge_times_out(raw: Callable[[], RawV5]) -> None:
    c = raw()
    challenge = c.connect_scram(ScramClient("alice", "wonderland"))
    assert isinstance(challenge, Auth) and challenge.reason_code == CONTINUE
    # no answer: the server ends it after auth_timeout (0.5 s here)
    rest = c.closed_after()
    assert [(type(p), getattr(p, "reason_code", None)) for p in rest] == [(Connack, 0x87)]


def test_publish_before_connack_closes_the_exchange(raw: Callable[[], RawV5]) -> None:
    c = raw()
    challenge = c.connect_scram(ScramClient("alice", "wonderland"))
    assert isinstance(challenge, Auth)
    c.send(PingReq())  # only AUTH or DISCONNECT may come before CONNACK
    assert c.closed_after() == []


def test_cli_created_user_logs_in_with_scram(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    srv = server_factory()
    assert srv.mqtt_port is not None
    port = srv.mqtt_port

    def anonymous_code() -> int:
        c = RawV5(port)
        try:
            c.send(Connect("", PROTOCOL_V5, "MQTT"))
            connack = c.recv()
            assert isinstance(connack, Connack)
            return connack.reason_code
        finally:
            c.close()

    assert anonymous_code() == 0  # loopback anonymous is allowed while no user exists
    cli(srv.data_dir, "user", "add", "carol", "--password-stdin", stdin="carol-secret\n")
    # the running server picks up CLI changes within a second; it knows carol when it
    # refuses anonymous clients (this poll costs no failed-login budget)
    for _ in range(100):
        if anonymous_code() == 0x87:
            break
        threading.Event().wait(0.1)
    else:
        pytest.fail("the server never saw the new user")
    c = RawV5(port)
    try:
        c.login("carol", "carol-secret")
        c.ping()
    finally:
        c.close()
