"""Push gateway: the offline wake webhook (signed, once per window, offline devices only,
retried after a 500) and the delivery receipt webhook, against a real local receiver."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from helpers.clients import PahoClient
from helpers.gateway import (
    base_url,
    bearer,
    create_app,
    device_token,
    push,
    register_device,
    wait_state,
)
from helpers.server import ServerProcess
from helpers.webhook import Received, WebhookReceiver

pytestmark = pytest.mark.pushwire_only("push gateway")

Paho = Callable[..., PahoClient]
SECRET = "wake-secret"


@pytest.fixture
def receiver() -> Iterator[Callable[..., WebhookReceiver]]:
    made: list[WebhookReceiver] = []

    def make(**kw: Any) -> WebhookReceiver:
        r = WebhookReceiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def _verify(hook: Received) -> dict[str, Any]:
    ts = hook.headers["pushwire-timestamp"]
    expected = hmac.new(SECRET.encode(), ts.encode() + b"." + hook.body, hashlib.sha256)
    assert hmac.compare_digest(hook.headers["pushwire-signature"], "sha256=" + expected.hexdigest())
    assert abs(int(ts) - time.time()) < 300  # fresh: a receiver rejects old ones (replay)
    body: dict[str, Any] = hook.json()
    assert body["timestamp"] == int(ts)
    return body


def _set_webhooks(srv: ServerProcess, app_id: str, key: str, body: dict[str, Any]) -> None:
    r = httpx.put(f"{base_url(srv)}/v1/apps/{app_id}/webhooks", json=body, headers=bearer(key))
    assert r.status_code == 200, r.text


def _offline(srv: ServerProcess, paho_client: Paho, app_id: str) -> tuple[str, tuple[str, str]]:
    device = register_device(srv)
    token = device_token(srv, device, app_id)
    client = paho_client(srv, device[0], clean_session=False, auth=device)
    assert client.subscribe(f"devices/{device[0]}/#", qos=1) == [1]
    client.disconnect()
    return token, device


def test_wake_fires_once_signed_for_an_offline_device_and_retries_a_500(
    server_factory: Callable[..., ServerProcess],
    paho_client: Paho,
    receiver: Callable[..., WebhookReceiver],
) -> None:
    srv = server_factory(extra_args=["--webhook-backoff", "0.05", "--wake-min-interval", "600"])
    hooks = receiver(fail_first=2)
    app_id, key = create_app(srv)
    wake = {"url": hooks.url("/wake"), "secret": SECRET, "after_seconds": 0.2}
    _set_webhooks(srv, app_id, key, {"wake": wake})
    token, device = _offline(srv, paho_client, app_id)

    first = push(srv, key, token, {"alert": "wake up"}).json()["id"]
    got = hooks.wait(lambda rs: any(r.status == 200 for r in rs))
    assert [r.status for r in got] == [500, 500, 200]  # retried after each 500
    for hook in got:
        body = _verify(hook)
        assert body["type"] == "wake"
        assert body["device_id"] == device[0]
        assert body["app"] == app_id
        assert body["push_id"] == first
        assert body["waiting_since"] > 0

    # a second urgent push within the window: no second wake for this device. Marker: a
    # second device's wake, scheduled later with the same delay, proves the check ran
    push(srv, key, token, {"alert": "again"})
    low = push(srv, key, token, {"alert": "lazy"}, priority="5")
    assert low.status_code == 200
    other_token, other = _offline(srv, paho_client, app_id)
    push(srv, key, other_token, {"alert": "you too"})
    got = hooks.wait(lambda rs: any(r.json()["device_id"] == other[0] for r in rs))
    assert [r.json()["device_id"] for r in got] == [device[0]] * 3 + [other[0]]


def test_no_wake_for_a_device_that_is_or_comes_online(
    server_factory: Callable[..., ServerProcess],
    paho_client: Paho,
    receiver: Callable[..., WebhookReceiver],
) -> None:
    srv = server_factory()
    hooks = receiver()
    app_id, key = create_app(srv)
    _set_webhooks(
        srv,
        app_id,
        key,
        {"wake": {"url": hooks.url(), "secret": SECRET, "after_seconds": 1.0}},
    )
    # online: delivered at once, never a wake
    device = register_device(srv)
    token = device_token(srv, device, app_id)
    client = paho_client(srv, device[0], clean_session=False, auth=device)
    assert client.subscribe(f"devices/{device[0]}/#", qos=1) == [1]
    online_push = push(srv, key, token, {"alert": "hi"}).json()["id"]
    wait_state(srv, key, online_push, "delivered")
    client.disconnect()
    # offline, then back before after_seconds: delivered, and the wake is not sent
    late = push(srv, key, token, {"alert": "while away"}).json()["id"]
    back = paho_client(srv, device[0], clean_session=False, auth=device)
    back.get()
    wait_state(srv, key, late, "delivered")
    # marker: an offline device's wake, scheduled after the one above, arrives alone
    other_token, other = _offline(srv, paho_client, app_id)
    push(srv, key, other_token, {"alert": "sleeping"})
    got = hooks.wait(lambda rs: len(rs) >= 1)
    assert [r.json()["device_id"] for r in got] == [other[0]]


def test_receipt_webhook_gets_the_final_record(
    server: ServerProcess, paho_client: Paho, receiver: Callable[..., WebhookReceiver]
) -> None:
    hooks = receiver(fail_first=1)
    app_id, key = create_app(server)
    _set_webhooks(server, app_id, key, {"receipt_url": hooks.url("/receipt")})
    device = register_device(server)
    token = device_token(server, device, app_id)
    client = paho_client(server, device[0], clean_session=False, auth=device)
    assert client.subscribe(f"devices/{device[0]}/#", qos=1) == [1]
    push_id = push(server, key, token, {"alert": "hi"}).json()["id"]
    got = hooks.wait(lambda rs: any(r.status == 200 for r in rs), timeout=15)
    assert [r.status for r in got] == [500, 200]
    record = got[-1].json()
    assert record["id"] == push_id
    assert record["state"] == "delivered"
    assert record == {**wait_state(server, key, push_id, "delivered")}
