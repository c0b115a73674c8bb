"""What a persistent session keeps across a restart of the SQLite store: the subscriptions
of a session made persistent by a takeover, and who owns it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers.admin import cli
from helpers.clients import PahoClient
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("pushwire's session store")

PahoFactory = Callable[..., PahoClient]
ServerFactory = Callable[..., ServerProcess]


def test_session_made_persistent_by_takeover_keeps_its_subscription(
    server: ServerProcess, paho_client: PahoFactory
) -> None:
    """A connects clean and subscribes; B takes the client id over with a persistent
    session (session present 1). After a restart the session comes back with A's
    subscription, so a later publish reaches it."""
    a = paho_client(server, "tk-dev", clean_session=True)
    a.subscribe("tk/t", 1)
    b = paho_client(server, "tk-dev", clean_session=False)
    assert b.session_present
    b.disconnect()

    server.restart()
    c = paho_client(server, "tk-dev", clean_session=False)
    assert c.session_present
    pub = paho_client(server, "tk-pub")
    pub.publish("tk/t", b"after restart", qos=1)
    assert c.get(timeout=10).payload == b"after restart"


def test_another_user_reusing_a_client_id_after_restart_gets_a_clean_session(
    server_factory: ServerFactory, paho_client: PahoFactory
) -> None:
    """alice's persistent session, with a message queued for her, survives a restart; bob
    connecting with her client id afterwards starts a clean session and never gets her
    message. alice still resumes hers when bob has not touched it."""
    srv = server_factory(sys_interval=0)
    d = srv.data_dir
    cli(d, "user", "add", "alice", "--password-stdin", stdin="alice-secret\n")
    cli(d, "user", "add", "bob", "--password-stdin", stdin="bob-secret\n")
    cli(d, "acl", "add", "--all", "--allow", "readwrite", "own/#")
    srv.restart()  # users in place before anyone connects

    alice = paho_client(srv, "own-dev", clean_session=False, auth=("alice", "alice-secret"))
    alice.subscribe("own/t", 1)
    alice.disconnect()
    other = paho_client(srv, "own-alice-2", clean_session=False, auth=("alice", "alice-secret"))
    other.subscribe("own/t", 1)
    other.disconnect()
    pub = paho_client(srv, "own-pub", auth=("alice", "alice-secret"))
    pub.publish("own/t", b"for alice only", qos=1)
    pub.disconnect()

    srv.restart()
    bob = paho_client(srv, "own-dev", clean_session=False, auth=("bob", "bob-secret"))
    assert bob.session_present is False
    # a positive marker: bob's own subscription works, and nothing of alice's came first
    bob.subscribe("own/marker", 1)
    bob.publish("own/marker", b"marker", qos=1)
    assert bob.get(timeout=10).payload == b"marker"
    assert bob.drain() == []

    # the other session of alice, untouched by bob, resumes with its message
    again = paho_client(srv, "own-alice-2", clean_session=False, auth=("alice", "alice-secret"))
    assert again.session_present
    assert again.get(timeout=10).payload == b"for alice only"
