"""pushwire.client.PushProvider / AsyncPushProvider against a real pushwire (subprocess):
typed exceptions, batch results, JWT auth with one token reused across requests, status,
webhook settings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushwire.client import (
    AsyncPushProvider,
    BadDeviceToken,
    BatchPush,
    DeviceAgent,
    DeviceTokenNotForApp,
    ExpiredProviderToken,
    InvalidProviderToken,
    PayloadTooLarge,
    ProviderTokenFactory,
    Push,
    PushError,
    PushProvider,
    TooManyRequests,
    Unregistered,
    WakeWebhook,
)

from .sdk_util import App, GatewayServer, StartGateway, gateway, wait_for

__all__ = ["gateway"]


def device_token(srv: GatewayServer, app: App) -> tuple[str, str, str]:
    """Register a device over plain HTTP; returns (device_id, secret, token for app)."""
    with httpx.Client(base_url=srv.base_url) as http:
        reply = http.post("/v1/devices")
        assert reply.status_code == 201, reply.text
        dev = reply.json()
        auth = (dev["device_id"], dev["device_secret"])
        reply = http.post(
            f"/v1/devices/{dev['device_id']}/tokens", json={"app": app.app_id}, auth=auth
        )
        assert reply.status_code == 200, reply.text
        return dev["device_id"], dev["device_secret"], reply.json()["token"]


def test_typed_exceptions_for_410_413_403_400(gateway: StartGateway) -> None:
    srv = gateway()
    app, other = srv.create_app("chat"), srv.create_app("other")
    device_id, secret, token = device_token(srv, app)
    _, _, other_token = device_token(srv, other)
    with PushProvider(srv.base_url, api_key=app.api_key) as provider:
        assert provider.push(token, {"alert": "ok"})  # the token works before it is deleted
        with pytest.raises(PayloadTooLarge) as too_large:
            provider.push(token, {"data": "x" * 5000})
        assert too_large.value.status == 413 and too_large.value.reason == "PayloadTooLarge"
        with pytest.raises(BadDeviceToken) as bad:
            provider.push("pwt_" + "A" * 43, {"alert": "x"})
        assert bad.value.status == 400
        with pytest.raises(DeviceTokenNotForApp) as not_ours:
            provider.push(other_token, {"alert": "x"})
        assert not_ours.value.status == 403
        reply = httpx.delete(
            f"{srv.base_url}/v1/devices/{device_id}/tokens/{token}", auth=(device_id, secret)
        )
        assert reply.status_code == 204
        with pytest.raises(Unregistered) as gone:
            provider.push(token, {"alert": "x"})
        assert gone.value.status == 410 and isinstance(gone.value.timestamp, int)
        assert gone.value.timestamp > 1_700_000_000_000  # milliseconds
    with PushProvider(srv.base_url, api_key="pwk_" + "B" * 32) as wrong:
        with pytest.raises(InvalidProviderToken) as invalid:
            wrong.push(token, {"alert": "x"})
        assert invalid.value.status == 403 and isinstance(invalid.value, PushError)


async def test_batch_returns_one_result_per_item_in_order(gateway: StartGateway) -> None:
    srv = gateway()
    app, other = srv.create_app("chat"), srv.create_app("other")
    tokens = [device_token(srv, app)[2] for _ in range(3)]
    _, _, foreign = device_token(srv, other)
    items: list[BatchPush | dict[str, Any]] = [
        BatchPush(tokens[0], {"alert": "a"}),
        BatchPush("pwt_" + "C" * 43, {"alert": "b"}),
        BatchPush(tokens[1], {"alert": "c"}, priority=5, collapse_id="k"),
        BatchPush(foreign, {"alert": "d"}),
        BatchPush(tokens[2], {"data": "x" * 5000}),
        {"token": tokens[2], "payload": {"alert": "e"}},
    ]
    async with AsyncPushProvider(srv.base_url, api_key=app.api_key) as provider:
        results = await provider.push_batch(items)
        assert [r.status for r in results] == [200, 400, 200, 403, 413, 200]
        assert [r.token for r in results] == [
            tokens[0],
            "pwt_" + "C" * 43,
            tokens[1],
            foreign,
            tokens[2],
            tokens[2],
        ]
        assert all(r.ok and r.id for r in results if r.status == 200)
        assert isinstance(results[1].error, BadDeviceToken)
        assert isinstance(results[3].error, DeviceTokenNotForApp)
        assert isinstance(results[4].error, PayloadTooLarge)
        status = await provider.status(results[0].id or "")
        assert status.id == results[0].id and status.state == "queued"
        assert status.token == tokens[0] and status.app == app.app_id


def _add_key(srv: GatewayServer, app: App, tmp_path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "provider.pub.pem"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pushwire", "app", "key", "add", app.app_id),
            *("--public-key", str(pub), "--key-id", "k1", "--data-dir", str(srv.data_dir)),
        ],
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done
    return key


class Clock:
    """Unix time the test moves by hand (the token factory's only notion of time)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_jwt_auth_token_reused_then_refreshed(gateway: StartGateway, tmp_path: Path) -> None:
    import time

    srv = gateway()
    app = srv.create_app("chat")
    key = _add_key(srv, app, tmp_path)
    _, _, token = device_token(srv, app)
    # start 35 minutes back, so the refreshed token (30 min later) is not from the future
    clock = Clock(time.time() - 35 * 60)
    factory = ProviderTokenFactory(app.app_id, "k1", key, refresh_after=1800, clock=clock)
    sent: list[str] = []  # the Authorization header of every request that left the client

    def record(request: httpx.Request) -> None:
        sent.append(request.headers["authorization"])

    http = httpx.Client(base_url=srv.base_url, event_hooks={"request": [record]})
    with PushProvider(srv.base_url, token_factory=factory, http=http) as provider:
        ids = [provider.push(token, {"alert": f"{n}"}) for n in range(20)]
        results = provider.push_batch([BatchPush(token, {"alert": "b"})] * 5)
        assert provider.status(ids[0]).id == ids[0]
        assert len(set(ids)) == 20 and all(r.ok for r in results)
        # 22 requests accepted by the server, one JWT signed and one sent
        assert factory.tokens_made == 1 and len(sent) == 22 and len(set(sent)) == 1
        clock.now += 1800  # 30 minutes later: a fresh token, still accepted
        provider.push(token, {"alert": "later"})
        provider.push(token, {"alert": "later too"})
        assert factory.tokens_made == 2 and len(set(sent)) == 2
        assert sent[-1] == sent[-2] != sent[0]


def test_expired_jwt_is_refused_and_remade_once(gateway: StartGateway, tmp_path: Path) -> None:
    import time

    srv = gateway()
    app = srv.create_app("chat")
    key = _add_key(srv, app, tmp_path)
    _, _, token = device_token(srv, app)
    stale = ProviderTokenFactory(app.app_id, "k1", key, clock=lambda: time.time() - 7200)
    with (
        PushProvider(srv.base_url, token_factory=stale) as provider,
        pytest.raises(ExpiredProviderToken),
    ):
        provider.push(token, {"alert": "x"})
    assert stale.tokens_made == 2  # the SDK re-made the token once, then gave up
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = ProviderTokenFactory(app.app_id, "k1", other_key)
    with (
        PushProvider(srv.base_url, token_factory=forged) as provider,
        pytest.raises(InvalidProviderToken),
    ):
        provider.push(token, {"alert": "x"})


async def test_status_follows_delivery_and_webhooks_are_stored(
    gateway: StartGateway, tmp_path: Path
) -> None:
    srv = gateway()
    app = srv.create_app("chat")
    got: list[Push] = []

    async def handle(push: Push) -> None:
        got.append(push)

    agent = DeviceAgent(srv.base_url, tmp_path / "device.json", mqtt_port=srv.mqtt_port)
    agent.add_app(app.app_id, handle)
    async with agent, AsyncPushProvider(srv.base_url, api_key=app.api_key) as provider:
        stored = await provider.set_webhooks(
            app_id=app.app_id,
            receipt_url="http://127.0.0.1:9/receipts",
            wake=WakeWebhook("http://127.0.0.1:9/wake", "s3cret", 30.0),
        )
        assert stored["receipt_url"] == "http://127.0.0.1:9/receipts"
        assert stored["wake"]["url"] == "http://127.0.0.1:9/wake"
        assert stored["wake"]["after_seconds"] == 30.0
        cleared = await provider.set_webhooks(app_id=app.app_id, wake=None)
        assert cleared["wake"] is None
        await agent.wait_connected(10)
        push_id = await provider.push(agent.tokens[app.app_id], {"alert": "x"})
        await wait_for(lambda: len(got) == 1, what="delivery")
        states: list[str] = []

        async def delivered() -> bool:
            states.append((await provider.status(push_id)).state)
            return states[-1] == "delivered"

        for _ in range(250):
            if await delivered():
                break
            await asyncio.sleep(0.02)
        assert states[-1] == "delivered", states


def test_too_many_requests_carries_retry_after(gateway: StartGateway) -> None:
    srv = gateway("--push-rate-per-app", "1")  # burst of 2, then 1 per second
    app = srv.create_app("chat")
    _, _, token = device_token(srv, app)
    accepted = 0
    with (
        PushProvider(srv.base_url, api_key=app.api_key) as provider,
        pytest.raises(TooManyRequests) as exc,
    ):
        for _ in range(20):
            provider.push(token, {"alert": "x"})
            accepted += 1
    assert accepted >= 1
    assert exc.value.status == 429 and exc.value.reason == "TooManyRequests"
    assert exc.value.retry_after is not None and exc.value.retry_after >= 1
