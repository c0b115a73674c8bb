"""The QoS 1 path keeps per-connection ACL answers (core/auth.py `Permissions`: the
publisher's per topic, the subscriber's receive check per topic) so the hot path does not
evaluate rules per message. They never outlive a rule change: a right revoked while both
connections are live applies to the very next PUBLISH, on both sides."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.inproc import InProcessServer, running
from helpers.raw import RawClient, connected_client
from pushwire.core.acl import AclRule

pytestmark = pytest.mark.pushwire_only("ACL rules added in process")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def _next_payload(sub: RawClient) -> bytes:
    pkt = sub.recv_publish()
    sub.ack(pkt)
    return pkt.payload


def test_a_revoked_right_applies_to_the_next_qos1_publish_on_live_connections(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    # with any rule the ACL is closed by default: this one opens rv/#
    srv._run(auth.add_rule(AclRule("anonymous", None, "allow", "readwrite", "rv/#")))
    with (
        connected_client(srv.host, srv.mqtt_port, "acl-sub") as sub,
        connected_client(srv.host, srv.mqtt_port, "acl-pub") as pub,
    ):
        assert sub.subscribe(1, [("rv/#", 1)]).granted == [1]
        for i in range(3):  # the answers for rv/a are cached on both sides now
            pub.publish_complete("rv/a", b"before%d" % i, qos=1, packet_id=10 + i)
            assert _next_payload(sub) == b"before%d" % i

        # publish revoked: the next PUBLISH is acknowledged (3.1.1 cannot refuse) and dropped
        deny_write = srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "write", "rv/a")))
        pub.publish_complete("rv/a", b"after-deny-write", qos=1, packet_id=20)
        pub.publish_complete("rv/b", b"marker1", qos=1, packet_id=21)
        assert _next_payload(sub) == b"marker1"  # the denied one never came first

        # receive revoked: the subscriber's cached answer for rv/b goes with the rule change
        deny_read = srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "read", "rv/b")))
        pub.publish_complete("rv/b", b"after-deny-read", qos=1, packet_id=22)
        pub.publish_complete("rv/c", b"marker2", qos=1, packet_id=23)
        assert _next_payload(sub) == b"marker2"

        # and given back, at once too
        srv._run(auth.remove_rule(deny_write.id))
        srv._run(auth.remove_rule(deny_read.id))
        pub.publish_complete("rv/a", b"again-a", qos=1, packet_id=24)
        pub.publish_complete("rv/b", b"again-b", qos=1, packet_id=25)
        assert _next_payload(sub) == b"again-a"
        assert _next_payload(sub) == b"again-b"
