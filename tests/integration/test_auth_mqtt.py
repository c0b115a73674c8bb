"""Identities and topic ACLs on the MQTT doors (TCP and WebSocket), driven the way an
operator does it: the `pushwire user/token/acl` CLI against the running server's data dir."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from helpers.admin import cli
from helpers.server import SYS_ADMIN, ServerProcess

pytestmark = pytest.mark.pushwire_only("pushwire users, tokens and ACLs")


class Client:
    """A paho client (3.1.1 or 5) that records CONNACK, messages and disconnects."""

    def __init__(
        self,
        srv: ServerProcess,
        username: str | None = None,
        password: str | None = None,
        *,
        v5: bool = False,
        transport: str = "tcp",
        client_id: str = "",
    ) -> None:
        self.connack = threading.Event()
        self.gone = threading.Event()
        self.rc: int | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Event()
        self.subacks: list[list[int]] = []
        self.subacked = threading.Event()
        version = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
        kw: dict[str, object] = {} if v5 else {"clean_session": True}
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            transport=transport,  # type: ignore[arg-type]
            reconnect_on_failure=False,
            **kw,  # type: ignore[arg-type]
        )
        if transport == "websockets":
            self.c.ws_set_options(path="/mqtt")
        if username is not None or password is not None:
            self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.gone.set()
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        port = srv.http_port if transport == "websockets" else srv.mqtt_port
        assert port is not None
        self.c.connect(srv.host, port, keepalive=30)
        self.c.loop_start()
        assert self.connack.wait(10), "no CONNACK"

    def _on_connect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.rc = int(rc.value) if hasattr(rc, "value") else int(rc)  # type: ignore[call-overload]
        self.connack.set()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.append((msg.topic, bytes(msg.payload)))
        self.got.set()

    def _on_subscribe(
        self, _c: object, _u: object, _m: int, codes: Sequence[object], _p: object
    ) -> None:
        self.subacks.append([int(c.value) if hasattr(c, "value") else int(c) for c in codes])  # type: ignore[call-overload]
        self.subacked.set()

    def subscribe(self, flt: str, qos: int = 1) -> list[int]:
        self.subacked.clear()
        self.c.subscribe(flt, qos)
        assert self.subacked.wait(5)
        return self.subacks[-1]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.c.publish(topic, payload, qos).wait_for_publish(5)

    def close(self) -> None:
        # DISCONNECT first: it wakes paho's loop thread, which then ends at once; stopping
        # the loop first waited out its select (a second per client, many in a slow setup)
        self.c.disconnect()
        self.c.loop_stop()


_markers = itertools.count()


def loaded(srv: ServerProcess) -> None:
    """Wait until the running server has loaded every change the CLI made so far.

    The server polls the store (`watch_interval`, 1 s) and loads it whole, as one snapshot;
    under load "within a second" is no promise, so a fixed sleep was a flake. The last change
    is a marker: a rule denying the admin (`SYS_ADMIN`, in the store since before the server
    started, so its logins never fail and cost no failed-login budget) one `$SYS` topic it
    may read by default. Once its SUBSCRIBE is refused, the marker is in force, and with it
    every change written before it."""
    topic = f"$SYS/loaded/{next(_markers)}"
    cli(srv.data_dir, "acl", "add", "--user", SYS_ADMIN[0], "--deny", "read", topic)
    probe = Client(srv, *SYS_ADMIN)
    try:
        assert probe.rc == 0
        deadline = time.monotonic() + 30
        while probe.subscribe(topic, 0) != [0x80]:
            assert time.monotonic() < deadline, "the server never loaded the CLI's changes"
            time.sleep(0.05)
    finally:
        probe.close()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    """Users and rules written with the CLI before the server starts, so it starts with them
    (the tests below change the store of the running server, and wait with `loaded`)."""
    srv = ServerProcess(tmp_path / "data", tmp_path / "logs", sys_interval=0, admin=SYS_ADMIN)
    d = srv.data_dir
    cli(d, "user", "add", "alice", "--password-stdin", stdin="alice-secret\n")
    cli(d, "user", "add", "bob", "--password-stdin", stdin="bob-secret\n")
    cli(d, "acl", "add", "--all", "--allow", "readwrite", "users/%u/#")
    cli(d, "acl", "add", "--all", "--allow", "read", "news/#")
    cli(d, "acl", "add", "--user", "alice", "--allow", "write", "news/#")
    srv.start()
    try:
        yield srv, d
    finally:
        srv.cleanup()


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_anonymous_refused_and_bad_password_refused(
    secured: tuple[ServerProcess, Path], transport: str
) -> None:
    srv, _ = secured
    anon = Client(srv, transport=transport)
    # paho reports 3.1.1 return codes as their MQTT 5 twins: 5 -> 0x87, 4 -> 0x86
    assert anon.rc == 0x87  # not authorized: users exist, anonymous is off by default
    anon.close()
    wrong = Client(srv, "alice", "nope", transport=transport)
    assert wrong.rc == 0x86  # bad user name or password
    wrong.close()
    v5 = Client(srv, "alice", "nope", v5=True, transport=transport)
    assert v5.rc == 0x86
    v5.close()


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_users_cannot_touch_each_others_topics(
    secured: tuple[ServerProcess, Path], transport: str
) -> None:
    srv, _ = secured
    alice = Client(srv, "alice", "alice-secret", transport=transport)
    bob = Client(srv, "bob", "bob-secret", transport=transport)
    assert alice.rc == 0 and bob.rc == 0
    assert alice.subscribe("users/alice/#") == [1]
    assert bob.subscribe("users/alice/#") == [0x80]  # reading another user's tree
    assert bob.subscribe("users/bob/#") == [1]
    assert bob.subscribe("#") == [0x80]
    bob.publish("users/alice/inbox", b"from bob")  # dropped: bob may not write there
    bob.publish("news/today", b"bob news")  # dropped: only alice writes news
    alice.publish("users/bob/inbox", b"from alice")  # dropped too
    # the markers: each one is published after the dropped ones were acknowledged, so had
    # any of those been routed, it would have reached its subscriber before the marker
    alice.publish("users/alice/inbox", b"own")
    bob.publish("users/bob/inbox", b"own")
    assert alice.got.wait(5) and bob.got.wait(5)
    assert alice.messages == [("users/alice/inbox", b"own")]
    assert bob.messages == [("users/bob/inbox", b"own")]
    alice.close()
    bob.close()


def test_revoked_token_is_refused_and_its_live_connection_closed(
    secured: tuple[ServerProcess, Path],
) -> None:
    srv, d = secured
    out = cli(d, "token", "create", "--user", "bob", "--json")
    import json

    created = json.loads(out)
    token, token_id = created["token"], created["id"]
    loaded(srv)
    live = Client(srv, "bob", token)  # a token works as the MQTT password
    assert live.rc == 0
    assert live.subscribe("users/bob/#") == [1]
    cli(d, "token", "revoke", token_id)
    # the server sees the revocation on its 1 s store poll, seconds late on a loaded machine
    # (was 5 s; the test does not measure the delay)
    assert live.gone.wait(30), "the revoked token's connection must be closed"
    again = Client(srv, "bob", token)
    assert again.rc in (0x86, 0x87)
    again.close()
    live.close()


def test_sys_is_for_admins(secured: tuple[ServerProcess, Path]) -> None:
    srv, d = secured
    cli(d, "user", "add", "root", "--role", "admin", "--password-stdin", stdin="root-secret\n")
    cli(d, "acl", "add", "--role", "admin", "--allow", "read", "$SYS/#")
    loaded(srv)
    alice = Client(srv, "alice", "alice-secret")
    root = Client(srv, "root", "root-secret")
    assert alice.subscribe("$SYS/#") == [0x80]
    assert root.subscribe("$SYS/#") == [1]
    alice.close()
    root.close()


def test_failed_logins_lock_only_that_username(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """All clients come from 127.0.0.1, as behind a reverse proxy: once bob's failures use
    up his budget he is refused (0x9F, even with his password), and alice still gets in."""
    srv = server_factory(
        sys_interval=0, admin=SYS_ADMIN, extra_args=["--login-failures-burst", "3"]
    )
    d = srv.data_dir
    cli(d, "user", "add", "alice", "--password-stdin", stdin="alice-secret\n")
    cli(d, "user", "add", "bob", "--password-stdin", stdin="bob-secret\n")
    # (a probe logging in as alice before the server knew her cost her failed-login budget:
    # three such probes locked her out)
    loaded(srv)
    for _ in range(3):
        wrong = Client(srv, "bob", "guess", v5=True)
        assert wrong.rc == 0x86
        wrong.close()
    locked = Client(srv, "bob", "bob-secret", v5=True)
    assert locked.rc == 0x9F  # connection rate exceeded
    locked.close()
    alice = Client(srv, "alice", "alice-secret", v5=True)
    assert alice.rc == 0
    alice.close()
    alice311 = Client(srv, "alice", "alice-secret")
    assert alice311.rc == 0
    alice311.close()
