"""HTTP publish (raw body, JSON, batch), the error model, OpenAPI, and HTTP -> MQTT."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from helpers.clients import PahoClient
from helpers.server import ServerProcess

from .http_util import StartServer, base, curl, http_server

__all__ = ["http_server"]  # the fixture

pytestmark = pytest.mark.pushwire_only("HTTP transports are pushwire's")
PahoFactory = Callable[..., PahoClient]


@pytest.fixture
def srv(http_server: StartServer) -> ServerProcess:
    return http_server(http_max_payload=1000, http_max_batch=3)


def test_curl_publish_raw_body_and_poll_it_back(srv: ServerProcess) -> None:
    url = base(srv)
    out = curl(
        "-X",
        "POST",
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        "hi there",
        "-w",
        "\n%{http_code}",
        f"{url}/v1/publish/news/sport",
    )
    body, code = out.stdout.decode().rsplit("\n", 1)
    assert code == "201"
    reply = json.loads(body)
    assert reply["id"] == 1 and reply["topic"] == "news/sport"
    assert reply["cursor"] == f"{reply['epoch']}:1"
    # binary body, PUT, query options
    out = curl(
        "-X",
        "PUT",
        "--data-binary",
        "@-",
        f"{url}/v1/publish/news/bin?ttl=10m&priority=high",
        "-H",
        "Content-Type: application/octet-stream",
    )
    polled = httpx.get(f"{url}/v1/poll/news/%23").json()
    msgs = polled["messages"]
    assert [m["id"] for m in msgs] == [1, 2]
    assert msgs[0]["payload"] == "hi there" and msgs[0]["content_type"] == "text/plain"
    assert msgs[1]["priority"] == 4 and msgs[1]["expires"] > msgs[1]["time"] + 590


def test_binary_payload_roundtrip_as_base64(srv: ServerProcess) -> None:
    url = base(srv)
    payload = bytes(range(256))[:200]
    r = httpx.post(f"{url}/v1/publish/bin", content=payload)
    assert r.status_code == 201
    msg = httpx.get(f"{url}/v1/poll/bin").json()["messages"][0]
    import base64

    assert "payload" not in msg and base64.b64decode(msg["payload_base64"]) == payload


def test_json_form_and_batch(srv: ServerProcess) -> None:
    url = base(srv)
    r = httpx.post(f"{url}/v1/publish", json={"topic": "j/a", "payload": "one", "qos": 1})
    assert r.status_code == 201 and r.json()["id"] == 1
    r = httpx.post(
        f"{url}/v1/publish",
        json=[{"topic": "j/b", "payload_base64": "AAE="}, {"topic": "j/c", "payload": "three"}],
    )
    assert r.status_code == 201 and [x["id"] for x in r.json()] == [2, 3]
    # a batch with one bad message publishes nothing
    r = httpx.post(f"{url}/v1/publish", json=[{"topic": "j/d", "payload": "x"}, {"topic": "j/#"}])
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_topic"
    assert "message 1" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/publish", json=[{"topic": "j/x"}] * 4)  # http_max_batch=3
    assert r.status_code == 413
    assert [m["id"] for m in httpx.get(f"{url}/v1/poll/j/%23").json()["messages"]] == [1, 2, 3]


ERROR_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/v1/publish/a/%23", {"content": b"x"}, 400, "bad_topic"),
    ("POST", "/v1/publish/a/+", {"content": b"x"}, 400, "bad_topic"),
    ("POST", "/v1/publish/", {"content": b"x"}, 400, "bad_topic"),
    ("POST", "/v1/publish/%24SYS/x", {"content": b"x"}, 403, "forbidden"),
    ("POST", "/v1/publish/a?qos=3", {"content": b"x"}, 400, "bad_request"),
    ("POST", "/v1/publish/a?retain=maybe", {"content": b"x"}, 400, "bad_request"),
    ("POST", "/v1/publish/a?ttl=soon", {"content": b"x"}, 400, "bad_request"),
    ("POST", "/v1/publish/a?priority=9", {"content": b"x"}, 400, "bad_request"),
    ("POST", "/v1/publish/a", {"content": b"x" * 1001}, 413, "payload_too_large"),
    (
        "POST",
        "/v1/publish",
        {"content": b"x", "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    (
        "POST",
        "/v1/publish",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        400,
        "bad_request",
    ),
    ("POST", "/v1/publish", {"json": {"topic": "a", "nope": 1}}, 400, "bad_request"),
    (
        "POST",
        "/v1/publish",
        {"json": {"topic": "a", "payload_base64": "%%"}},
        400,
        "bad_request",
    ),
    (
        "POST",
        "/v1/publish",
        {"json": {"topic": "a", "payload": "x" * 1001}},
        413,
        "payload_too_large",
    ),
    ("GET", "/v1/poll/a?since=yesterday", {}, 400, "bad_cursor"),
    ("GET", "/v1/poll/a?limit=0", {}, 400, "bad_request"),
    ("GET", "/v1/poll/a?limit=x", {}, 400, "bad_request"),
    ("GET", "/v1/poll/a/%23/b", {}, 400, "bad_topic"),
    ("GET", "/v1/poll/%24share/g/a", {}, 400, "bad_topic"),
    ("GET", "/v1/longpoll/a?timeout=later", {}, 400, "bad_request"),
    ("GET", "/v1/sse/a?since=zzz", {}, 400, "bad_cursor"),
    ("GET", "/v1/nothing", {}, 404, "not_found"),
    ("DELETE", "/v1/publish/a", {}, 405, "method_not_allowed"),
]


def test_errors_are_json_4xx(srv: ServerProcess) -> None:
    """Every bad input gets its 4xx and `{"error": {"code", "message"}}`, never a 500."""
    wrong = []
    with httpx.Client(base_url=base(srv)) as client:
        for method, path, kwargs, status, code in ERROR_CASES:
            r = client.request(method, path, **kwargs)
            ok = r.status_code == status and r.headers["content-type"] == "application/json"
            body = r.json() if ok else {}
            if not ok or body["error"]["code"] != code or not body["error"]["message"]:
                wrong.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
    assert not wrong, "\n".join(wrong)


def test_chunked_body_over_limit_is_413(srv: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 100

    r = httpx.post(base(srv) + "/v1/publish/a", content=chunks())
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_openapi_describes_the_endpoints(srv: ServerProcess) -> None:
    spec = httpx.get(base(srv) + "/openapi.json").json()
    paths = spec["paths"]
    for p in [
        "/v1/publish/{topic}",
        "/v1/publish",
        "/v1/poll/{filter}",
        "/v1/longpoll/{filter}",
        "/v1/sse/{filter}",
        "/metrics",
        "/v1/health",
    ]:
        assert p in paths, p
    raw = paths["/v1/publish/{topic}"]
    assert set(raw) == {"post", "put"}
    assert "application/octet-stream" in raw["post"]["requestBody"]["content"]
    assert {"200", "201", "400", "413"} <= set(raw["post"]["responses"])
    js = paths["/v1/publish"]["post"]
    assert "oneOf" in js["requestBody"]["content"]["application/json"]["schema"]
    assert "415" in js["responses"]
    assert "ErrorResponse" in spec["components"]["schemas"]
    # bad input is a 400 with the error model, never FastAPI's 422
    assert all("422" not in op["responses"] for ops in paths.values() for op in ops.values())
    assert raw["post"]["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    assert "PollResult" in spec["components"]["schemas"]
    assert "text/event-stream" in paths["/v1/sse/{filter}"]["get"]["responses"]["200"]["content"]
    assert httpx.get(base(srv) + "/docs").status_code == 200


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_http_publish_reaches_mqtt_tcp_with_qos(
    srv: ServerProcess, paho_client: PahoFactory, qos: int
) -> None:
    sub = paho_client(srv, "mqtt-sub")
    sub.subscribe("h/#", 2)
    r = httpx.post(
        base(srv) + f"/v1/publish/h/q?qos={qos}",
        content=b"to mqtt",
        headers={"Pushwire-Retain": "0"},
    )
    assert r.status_code == 201
    msg = sub.get()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("h/q", b"to mqtt", qos, False)


def test_http_retained_reaches_late_mqtt_subscriber(
    srv: ServerProcess, paho_client: PahoFactory
) -> None:
    r = httpx.put(
        base(srv) + "/v1/publish/r/state",
        content=b"on",
        headers={"Pushwire-Retain": "true", "Pushwire-QoS": "1"},
    )
    assert r.status_code == 201
    sub = paho_client(srv, "late")
    sub.subscribe("r/#", 1)
    msg = sub.get()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("r/state", b"on", 1, True)


def test_http_content_type_reaches_mqtt5(srv: ServerProcess) -> None:
    import queue

    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    ready: queue.Queue[int] = queue.Queue()
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="v5", protocol=MQTTProtocolVersion.MQTTv5
    )
    c.on_message = lambda _c, _u, m: got.put(m)
    c.on_subscribe = lambda *a: ready.put(1)
    c.connect(srv.host, srv.mqtt_port)
    c.loop_start()
    try:
        c.subscribe("ct/#", 1)
        ready.get(timeout=5)
        httpx.post(
            base(srv) + "/v1/publish/ct/x?qos=1",
            content=b"{}",
            headers={"Content-Type": "application/json"},
        )
        msg = got.get(timeout=5)
        # paho sets the properties it received as attributes: typed only at run time
        content_type = getattr(msg.properties, "ContentType", None)
        assert msg.payload == b"{}" and content_type == "application/json"
    finally:
        c.disconnect()
        c.loop_stop()


def test_health_and_metrics(srv: ServerProcess) -> None:
    url = base(srv)
    httpx.post(url + "/v1/publish/m/x", content=b"1")
    health = httpx.get(url + "/v1/health").json()
    assert health["status"] == "ok" and health["log"]["last_id"] == 1
    text = httpx.get(url + "/metrics").text
    assert 'pushwire_messages_in_total{transport="http"} 1.0' in text
    assert "pushwire_log_messages 1.0" in text
    assert 'pushwire_open_connections{transport="sse"} 0.0' in text
