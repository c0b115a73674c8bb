"""Push gateway: POST /v1/push batches get one result per item, in order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from helpers.clients import PahoClient
from helpers.gateway import base_url, bearer, create_app, device_token, register_device
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("push gateway")


def test_batch_results_per_item(server: ServerProcess) -> None:
    app_id, key = create_app(server)
    _other, other_key = create_app(server, "other")
    device = register_device(server)
    token = device_token(server, device, app_id)
    items: list[dict[str, Any]] = [
        {"token": token, "payload": {"alert": "ok"}},
        {"token": "pwt_" + "z" * 43, "payload": {"alert": "x"}},
        {"token": token, "payload": {"alert": "x"}, "priority": 3},
        {"token": token, "payload": {"data": "a" * 5000}},
        {"token": token, "payload": []},
        {"token": token, "payload": {"alert": "late"}, "collapse_id": "c", "priority": 5},
    ]
    r = httpx.post(f"{base_url(server)}/v1/push", json={"pushes": items}, headers=bearer(key))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["status"], x.get("reason")) for x in results] == [
        (200, None),
        (400, "BadDeviceToken"),
        (400, "BadPriority"),
        (413, "PayloadTooLarge"),
        (400, "BadPayload"),
        (200, None),
    ]
    assert all(x["token"] == i["token"] for x, i in zip(results, items, strict=True))
    # another app's key: every item is refused on its own
    r = httpx.post(
        f"{base_url(server)}/v1/push", json={"pushes": items[:1]}, headers=bearer(other_key)
    )
    assert r.json()["results"][0]["reason"] == "DeviceTokenNotForApp"
    too_many = {"pushes": [items[0]] * 1001}
    r = httpx.post(f"{base_url(server)}/v1/push", json=too_many, headers=bearer(key))
    assert (r.status_code, r.json()["reason"]) == (413, "TooManyPushes")


def test_rate_limit_per_app_answers_429(server_factory: Callable[..., ServerProcess]) -> None:
    # one push, then the bucket refills in 100 s: the second one is refused
    srv = server_factory(extra_args=["--push-rate-per-app", "0.01"])
    app_id, key = create_app(srv)
    device = register_device(srv)
    token = device_token(srv, device, app_id)
    statuses = []
    for _ in range(2):
        r = httpx.post(f"{base_url(srv)}/v1/push/{token}", json={"alert": "x"}, headers=bearer(key))
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["reason"] == "TooManyRequests"
            assert int(r.headers["Retry-After"]) >= 1
    assert statuses == [200, 429]


def test_a_batch_larger_than_the_quota_reaches_an_online_device_whole(
    server_factory: Callable[..., ServerProcess], paho_client: Callable[..., PahoClient]
) -> None:
    # the quota bounds what is stored for an offline device, not what an online one takes
    srv = server_factory(extra_args=["--push-queue-quota", "3"])
    app_id, key = create_app(srv)
    device = register_device(srv)
    token = device_token(srv, device, app_id)
    client = paho_client(srv, device[0], clean_session=False, auth=device)
    assert client.subscribe(f"devices/{device[0]}/#", qos=1) == [1]
    items = [{"token": token, "payload": {"data": {"n": i}}} for i in range(10)]
    r = httpx.post(f"{base_url(srv)}/v1/push", json={"pushes": items}, headers=bearer(key))
    ids = [x["id"] for x in r.json()["results"]]
    got = [
        json.loads(m.payload)["id"]
        for m in client.get_until(lambda m: json.loads(m.payload)["id"] == ids[-1])
    ]
    assert got == ids
