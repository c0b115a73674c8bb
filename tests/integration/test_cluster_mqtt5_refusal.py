"""engine=redis, Redis unreachable: an MQTT 5 QoS 1 publisher gets PUBACK 0x80 (Unspecified
error) for what Redis did not take, keeps its connection, and gets success again once Redis is
back. Nothing acknowledged with 0x00 is lost (no false ack)."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from helpers import raw, raw5
from helpers.paho5 import Paho5
from helpers.redis import RedisServer

from .cluster_util import StartNode, cluster_node, mqtt_subscriber, payloads, poll, wait_for

__all__ = ["cluster_node"]
pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")

UNSPECIFIED_ERROR = 0x80
PACKET_IDENTIFIER_NOT_FOUND = 0x92


class AckedPublisher(Paho5):
    """A Paho5 client that records the reason code of every PUBACK, by message id."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.codes: dict[int, int] = {}
        self._acked = threading.Condition()
        super().__init__(*args, **kwargs)
        self.c.on_publish = self._on_publish

    def _on_disconnect(self, *args: Any) -> None:
        super()._on_disconnect(*args)
        with self._acked:
            self._acked.notify_all()  # a waiting publish fails at once, not at its deadline

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._acked:
            self.codes[mid] = int(rc.value) if hasattr(rc, "value") else int(rc)
            self._acked.notify_all()

    def publish_code(self, topic: str, payload: bytes) -> int:
        """QoS 1 publish; the PUBACK's reason code."""
        info = self.c.publish(topic, payload, qos=1)
        with self._acked:
            self._acked.wait_for(lambda: info.mid in self.codes or self.gone.is_set(), 10)
            assert info.mid in self.codes, "no PUBACK" + (
                ": disconnected" if self.gone.is_set() else ""
            )
            return self.codes[info.mid]


def test_mqtt5_publisher_gets_0x80_while_redis_is_down_and_keeps_its_connection(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    a, b = cluster_node(), cluster_node()
    sub = mqtt_subscriber(b, "sub-b", "r/#")
    pub = AckedPublisher(a, "pub5")
    acked: list[str] = []
    assert pub.publish_code("r/t", b"before") == 0
    acked.append("before")
    assert payloads(sub, 1) == [b"before"]

    redis_server.stop()
    # every publish while Redis is down is refused with a failure code, never 0x00, and
    # the connection stays open
    for i in range(3):
        assert pub.publish_code("r/t", f"down{i}".encode()) == UNSPECIFIED_ERROR
    assert not pub.gone.is_set()

    redis_server.start()
    # the node reconnects at a later publish: failures until then, then success
    codes: queue.Queue[int] = queue.Queue()

    def published_again() -> bool:
        n = codes.qsize()
        code = pub.publish_code("r/t", f"after{n}".encode())
        codes.put(code)
        if code == 0:
            acked.append(f"after{n}")
        else:
            assert code == UNSPECIFIED_ERROR
        return code == 0

    wait_for(published_again, "a successful PUBACK after Redis came back")
    assert pub.publish_code("r/t", b"last") == 0
    acked.append("last")
    assert not pub.gone.is_set()

    # everything acknowledged with 0x00 is delivered and stored, nothing refused is
    rest = [m.decode() for m in payloads(sub, len(acked) - 1)]
    assert rest == acked[1:]
    history = [m["payload"] for m in poll(b, "r/t", "all")["messages"]]
    assert history == acked
    pub.close()


def test_mqtt5_qos2_pubrec_0x80_while_redis_is_down_ends_the_flow(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    a = cluster_node()
    sub = mqtt_subscriber(a, "sub-q2", "q/#", qos=2)
    with raw.RawClient(a.host, a.mqtt_port) as pub:
        pub.send(raw5.connect("pub-q2"))
        assert pub.expect(raw.CONNACK).body[1] == 0
        redis_server.stop()
        pub.send(raw5.publish("q/t", b"down", 2, 1))
        rec = pub.expect(raw.PUBREC, 10)
        assert (rec.packet_id, raw5.reason(rec)) == (1, UNSPECIFIED_ERROR)
        # the failed PUBREC ended the flow: the packet id is free, a PUBREL finds nothing
        pub.send(raw.pubrel(1))
        comp = pub.expect(raw.PUBCOMP, 10)
        assert (comp.packet_id, raw5.reason(comp)) == (1, PACKET_IDENTIFIER_NOT_FOUND)

        redis_server.start()
        pid = 1

        def accepted() -> bool:
            nonlocal pid
            pid += 1
            pub.send(raw5.publish("q/t", f"up{pid}".encode(), 2, pid))
            code = raw5.reason(pub.expect(raw.PUBREC, 10))
            assert code in (0, UNSPECIFIED_ERROR)
            if code:
                return False
            pub.send(raw.pubrel(pid))
            return raw5.reason(pub.expect(raw.PUBCOMP, 10)) == 0

        wait_for(accepted, "a successful PUBREC after Redis came back")
        # only the accepted one arrives: the refused "down" and failed attempts reached nobody
        assert payloads(sub, 1) == [f"up{pid}".encode()]
        assert pub.is_open()
