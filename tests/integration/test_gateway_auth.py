"""Push gateway: only the right app's credentials push to a token; APNs-style refusals."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from helpers.gateway import (
    base_url,
    cli,
    create_app,
    device_token,
    push,
    register_device,
    wait_for,
)
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("push gateway")


def _keypair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, pem


def _jwt(private: ec.EllipticCurvePrivateKey, app_id: str, kid: str, iat: float) -> str:
    return jwt.encode({"iss": app_id, "iat": int(iat)}, private, "ES256", headers={"kid": kid})


def _add_key(srv: ServerProcess, tmp_path: Path, app_id: str, kid: str, pem: bytes) -> None:
    path = tmp_path / f"{kid}.pem"
    path.write_bytes(pem)
    done = cli(srv, "app", "key", "add", app_id, "--public-key", str(path), "--key-id", kid)
    assert done.returncode == 0, done.stderr


def _reason(r: httpx.Response) -> tuple[int, str]:
    body = r.json()
    assert isinstance(body["timestamp"], int)
    return r.status_code, body["reason"]


def test_every_provider_refusal(server: ServerProcess, tmp_path: Path) -> None:
    app_id, key = create_app(server, "mail")
    other_app, other_key = create_app(server, "chat")
    device = register_device(server)
    token = device_token(server, device, app_id)
    url = f"{base_url(server)}/v1/push/{token}"
    body = {"alert": "hi"}

    assert _reason(httpx.post(url, json=body)) == (403, "MissingProviderToken")
    bad = {"Authorization": "Bearer nonsense"}
    assert _reason(httpx.post(url, json=body, headers=bad)) == (403, "InvalidProviderToken")
    basic = {"Authorization": "Basic " + "eDp5"}
    assert _reason(httpx.post(url, json=body, headers=basic)) == (403, "InvalidProviderToken")
    unknown_key = "pwk_" + "A" * 32
    assert _reason(push(server, unknown_key, token, body)) == (403, "InvalidProviderToken")
    # another app's valid key cannot push to this app's token
    assert _reason(push(server, other_key, token, body)) == (403, "DeviceTokenNotForApp")
    assert push(server, key, token, body).status_code == 200

    # provider JWTs
    private, pem = _keypair()
    _add_key(server, tmp_path, app_id, "k1", pem)
    good = _jwt(private, app_id, "k1", time.time())
    wait_for(lambda: push(server, good, token, body).status_code == 200, what="key k1 loaded")
    wrong_private, _ = _keypair()
    forged = _jwt(wrong_private, app_id, "k1", time.time())
    assert _reason(push(server, forged, token, body)) == (403, "InvalidProviderToken")
    expired = _jwt(private, app_id, "k1", time.time() - 3601 - 60)
    assert _reason(push(server, expired, token, body)) == (403, "ExpiredProviderToken")
    future = _jwt(private, app_id, "k1", time.time() + 3600)
    assert _reason(push(server, future, token, body)) == (403, "InvalidProviderToken")
    unknown_kid = _jwt(private, app_id, "nope", time.time())
    assert _reason(push(server, unknown_kid, token, body)) == (403, "InvalidProviderToken")
    # signed by app_id's key but claiming to be the other app: no key k1 there
    other_iss = _jwt(private, other_app, "k1", time.time())
    assert _reason(push(server, other_iss, token, body)) == (403, "InvalidProviderToken")
    # a symmetric token that names the public key as an HMAC secret is refused
    hs = jwt.encode({"iss": app_id, "iat": int(time.time())}, "x" * 32, "HS256", {"kid": "k1"})
    assert _reason(push(server, hs, token, body)) == (403, "InvalidProviderToken")

    # rotation: a second key works next to the first; revoking one stops it within a second
    private2, pem2 = _keypair()
    _add_key(server, tmp_path, app_id, "k2", pem2)
    good2 = _jwt(private2, app_id, "k2", time.time())
    wait_for(lambda: push(server, good2, token, body).status_code == 200, what="key k2 loaded")
    done = cli(server, "app", "key", "revoke", app_id, "k1")
    assert done.returncode == 0, done.stderr
    # the server's 1 s store poll runs seconds late on a loaded machine: the default bound
    # (was 3 s), the test does not measure the delay
    wait_for(
        lambda: push(server, good, token, body).status_code == 403,
        what="the revoked key to be refused",
    )
    assert _reason(push(server, good, token, body)) == (403, "InvalidProviderToken")
    assert push(server, good2, token, body).status_code == 200
    listed = cli(server, "app", "key", "list", app_id, "--json")
    assert {k["kid"]: k["status"] for k in json.loads(listed.stdout)} == {
        "k1": "revoked",
        "k2": "active",
    }


def test_deleted_token_answers_410_with_its_time(server: ServerProcess) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    before = int(time.time() * 1000)
    r = httpx.delete(f"{base_url(server)}/v1/devices/{device[0]}/tokens/{token}", auth=device)
    assert r.status_code == 204
    r = push(server, key, token, {"alert": "hi"})
    assert r.status_code == 410
    assert r.json()["reason"] == "Unregistered"
    assert before - 1000 <= r.json()["timestamp"] <= int(time.time() * 1000)
    # a new token for the same (device, app) is a different one
    assert device_token(server, device, app_id) != token


def test_bad_requests_get_apns_reasons(server: ServerProcess) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    ok = {"alert": "hi"}
    cases = [
        (push(server, key, "pwt_" + "x" * 43, ok), 400, "BadDeviceToken"),
        (push(server, key, "garbage", ok), 400, "BadDeviceToken"),
        (push(server, key, token, b""), 400, "PayloadEmpty"),
        (push(server, key, token, {}), 400, "PayloadEmpty"),
        (push(server, key, token, b"[1]"), 400, "BadPayload"),
        (push(server, key, token, b"{nope"), 400, "BadPayload"),
        (push(server, key, token, ok, priority="7"), 400, "BadPriority"),
        (push(server, key, token, ok, priority="high"), 400, "BadPriority"),
        (push(server, key, token, ok, expiration="-5"), 400, "BadExpirationDate"),
        (push(server, key, token, ok, expiration="soon"), 400, "BadExpirationDate"),
        (push(server, key, token, ok, collapse_id="c" * 65), 400, "BadCollapseId"),
        (push(server, key, token, ok, push_type="voip"), 400, "BadPushType"),
        (push(server, key, token, ok, id="not-a-uuid"), 400, "BadMessageId"),
    ]
    for r, status, reason in cases:
        assert _reason(r) == (status, reason), r.request.url
    assert push(server, key, token, ok, collapse_id="c" * 64).status_code == 200
    pid = "0b2e3a5c-4f6d-4e8a-9b1c-2d3e4f5a6b7c"
    r = push(server, key, token, ok, id=pid)
    assert r.status_code == 200 and r.headers["Pushwire-Id"] == pid


def test_payload_limit_is_4096_bytes(server: ServerProcess) -> None:
    app_id, key = create_app(server)
    device = register_device(server)
    token = device_token(server, device, app_id)
    overhead = len(json.dumps({"data": ""}).encode())
    exact = json.dumps({"data": "a" * (4096 - overhead)}).encode()
    assert len(exact) == 4096
    assert push(server, key, token, exact).status_code == 200
    over = json.dumps({"data": "a" * (4097 - overhead)}).encode()
    assert len(over) == 4097
    assert _reason(push(server, key, token, over)) == (413, "PayloadTooLarge")
