"""Interoperability with MQTT.js (the npm `mqtt` package) run by node, against a real pushwire.

Each MQTT.js client is a node process running tests/interop/mqttjs/client.js with a JSON plan
(connect options, subscriptions, publishes, how many messages to wait for); it reports every
event as a JSON line. `make test` installs the package (`npm ci` in tests/interop/mqttjs);
without node or the package these tests are skipped, naming the reason.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import PahoClient
from helpers.server import ServerProcess

ServerFactory = Callable[..., ServerProcess]
PahoFactory = Callable[..., PahoClient]

MQTTJS_DIR = Path(__file__).resolve().parents[1] / "interop" / "mqttjs"
NODE = shutil.which("node") or shutil.which("nodejs")
EVENT_TIMEOUT = 15.0

pytestmark = [
    pytest.mark.pushwire_only("MQTT.js interop runs against pushwire"),
    pytest.mark.skipif(NODE is None, reason="node not installed (make deps-test)"),
    pytest.mark.skipif(
        not (MQTTJS_DIR / "node_modules" / "mqtt").is_dir(),
        reason="MQTT.js not installed (npm ci --prefix tests/interop/mqttjs; make test does it)",
    ),
]


class MqttJs:
    """One MQTT.js client process; its JSON-line events are read by a thread into a queue."""

    def __init__(self, plan: dict[str, Any]) -> None:
        assert NODE is not None
        self.proc = subprocess.Popen(
            [NODE, str(MQTTJS_DIR / "client.js"), json.dumps(plan)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=MQTTJS_DIR,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put({"event": "exit"})

    def next(self, kind: str, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """The next event of `kind`; fails on an error event, an exit, or the deadline."""
        while True:
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {kind!r} event; saw {self.seen}") from None
            self.seen.append(event)
            if event["event"] == kind:
                return event
            if event["event"] in ("error", "exit"):
                stderr = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"waiting for {kind!r}: {event}; seen {self.seen}; {stderr}")

    def messages(self, count: int) -> list[dict[str, Any]]:
        return [self.next("message") for _ in range(count)]

    def finish(self) -> None:
        """Wait for the plan to complete (done) and the process to exit cleanly."""
        self.next("done")
        assert self.proc.wait(timeout=EVENT_TIMEOUT) == 0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=EVENT_TIMEOUT)


@pytest.fixture
def mqttjs() -> Any:
    started: list[MqttJs] = []

    def start(srv: ServerProcess, client_id: str, **plan: Any) -> MqttJs:
        options = {"clientId": client_id, "protocolVersion": 5, **plan.pop("options", {})}
        client = MqttJs({"url": f"mqtt://{srv.host}:{srv.mqtt_port}", "options": options, **plan})
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


def buf(text: str) -> dict[str, str]:
    return {"$buffer": text}


def test_mqtt5_properties_survive_the_trip_between_mqttjs_clients(
    server: ServerProcess, mqttjs: Any
) -> None:
    sub = mqttjs(server, "js-props-sub", subscribe=[["interop/props/#", {"qos": 1}]], expect=1)
    sub.next("subscribed")
    properties = {
        "userProperties": {"device": "phone-7", "trace": ["a", "b"]},
        "contentType": "application/json",
        "responseTopic": "interop/props/reply",
        "correlationData": buf("request-42"),
        "messageExpiryInterval": 120,
        "payloadFormatIndicator": True,
    }
    pub = mqttjs(
        server,
        "js-props-pub",
        publish=[["interop/props/x", '{"n": 1}', {"qos": 1, "properties": properties}]],
    )
    pub.finish()
    (msg,) = sub.messages(1)
    assert (msg["topic"], msg["payload"], msg["qos"]) == ("interop/props/x", '{"n": 1}', 1)
    got = msg["properties"]
    assert got["userProperties"] == {"device": "phone-7", "trace": ["a", "b"]}
    assert got["contentType"] == "application/json"
    assert got["responseTopic"] == "interop/props/reply"
    assert got["correlationData"] == buf("request-42")
    assert got["payloadFormatIndicator"] is True
    assert 0 < got["messageExpiryInterval"] <= 120  # what is left of it (MQTT-3.3.2-6)
    sub.finish()


def test_topic_aliases_from_mqttjs_to_the_server(server: ServerProcess, mqttjs: Any) -> None:
    sub = mqttjs(server, "js-alias-sub", subscribe=[["interop/alias/#", {"qos": 1}]], expect=3)
    sub.next("subscribed")
    # the first PUBLISH sets alias 1, the next two carry only the alias and an empty topic
    alias = {"qos": 1, "properties": {"topicAlias": 1}}
    pub = mqttjs(
        server,
        "js-alias-pub",
        publish=[
            ["interop/alias/long/topic/name", "one", alias],
            ["", "two", alias],
            ["", "three", alias],
        ],
    )
    connect = pub.next("connect")
    assert connect["properties"]["topicAliasMaximum"] >= 1  # the server offers aliases
    pub.finish()
    got = [(m["topic"], m["payload"]) for m in sub.messages(3)]
    assert got == [("interop/alias/long/topic/name", p) for p in ("one", "two", "three")]
    sub.finish()


def test_topic_aliases_from_the_server_to_mqttjs(server: ServerProcess, mqttjs: Any) -> None:
    sub = mqttjs(
        server,
        "js-alias-in",
        options={"properties": {"topicAliasMaximum": 8}},
        subscribe=[["interop/alias-in/#", {"qos": 1}]],
        expect=5,
    )
    sub.next("subscribed")
    topic = "interop/alias-in/a/rather/long/topic/for/a/mobile/link"
    pub = mqttjs(
        server, "js-alias-in-pub", publish=[[topic, f"m{i}", {"qos": 1}] for i in range(5)]
    )
    pub.finish()
    msgs = sub.messages(5)
    # MQTT.js resolves the alias: every message shows the full topic ...
    assert [m["topic"] for m in msgs] == [topic] * 5
    # ... while on the wire the server sent the topic with an alias once (on the first or
    # second send) and then only the alias, with an empty topic
    aliases = [m.get("wire_alias") for m in msgs]
    assert all(aliases[2:]) and len(set(filter(None, aliases))) == 1, aliases
    assert [m["wire_topic"] for m in msgs[2:]] == [""] * 3
    sub.finish()


def test_shared_subscription_gives_each_message_to_one_mqttjs_member(
    server: ServerProcess, mqttjs: Any
) -> None:
    total = 20
    members = [
        mqttjs(
            server,
            f"js-share-{n}",
            subscribe=[["$share/workers/interop/jobs/#", {"qos": 1}]],
            expect=total // 2,
        )
        for n in range(2)
    ]
    for member in members:
        member.next("subscribed")
    pub = mqttjs(
        server,
        "js-share-pub",
        publish=[[f"interop/jobs/{i}", f"job-{i}", {"qos": 1}] for i in range(total)],
    )
    pub.finish()
    delivered: list[list[str]] = [[], []]
    # round-robin over two members that keep up: half each (the server's policy, shared.py)
    for n, member in enumerate(members):
        delivered[n] = [m["payload"] for m in member.messages(total // 2)]
    assert sorted(delivered[0] + delivered[1]) == sorted(f"job-{i}" for i in range(total))
    assert not set(delivered[0]) & set(delivered[1])
    for member in members:
        member.finish()


def test_mqttjs_session_resumes_after_a_server_restart(
    server_factory: ServerFactory, mqttjs: Any, paho_client: PahoFactory
) -> None:
    srv = server_factory()  # SQLite store in the test's data dir
    persistent = {"clean": False, "properties": {"sessionExpiryInterval": 3600}}
    first = mqttjs(
        srv, "js-resume", options=persistent, subscribe=[["interop/resume/#", {"qos": 1}]]
    )
    assert first.next("connect")["session_present"] is False
    first.next("subscribed")
    first.finish()  # a normal DISCONNECT: the session stays, with its subscription

    srv.restart()
    # published while the client is away, after the restart; the publishers are paho (in
    # this process): each MQTT.js process start costs 3-4 s on a loaded machine, and MQTT.js
    # as a publisher is what the tests above check
    paho_client(srv, "js-resume-pub").publish("interop/resume/a", b"while away", qos=1)

    again = mqttjs(srv, "js-resume", options=persistent, expect=2)
    assert again.next("connect")["session_present"] is True
    (queued,) = again.messages(1)
    assert (queued["topic"], queued["payload"], queued["qos"]) == (
        "interop/resume/a",
        "while away",
        1,
    )
    # the subscription came back too: a new message arrives without subscribing again
    paho_client(srv, "js-resume-pub2").publish("interop/resume/b", b"live", qos=1)
    (msg,) = again.messages(1)
    assert msg["payload"] == "live"
    again.finish()
