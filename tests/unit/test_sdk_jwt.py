"""The provider JWT: ES256 with kid, iss and iat; one token reused until refresh_after."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushwire.client.jwt_tokens import ProviderTokenFactory


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_is_es256_with_kid_and_claims() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    factory = ProviderTokenFactory("app_x", "k1", key, clock=FakeClock(1764190000.7))
    token = factory.token()
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "k1", "typ": "JWT"}
    claims = jwt.decode(token, key.public_key(), algorithms=["ES256"])
    assert claims == {"iss": "app_x", "iat": 1764190000}


def test_same_token_until_refresh_after_then_a_new_one() -> None:
    clock = FakeClock(1000.0)
    key = ec.generate_private_key(ec.SECP256R1())
    factory = ProviderTokenFactory("app_x", "k1", key, refresh_after=1800, clock=clock)
    first = factory.token()
    clock.now += 1799
    assert factory.token() == first and factory.tokens_made == 1
    clock.now += 1
    second = factory.token()
    assert second != first and factory.tokens_made == 2
    factory.invalidate()
    assert factory.token() != second and factory.tokens_made == 3


def test_key_from_pem_file_and_bad_settings(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    for source in (path, str(path), pem, pem.decode()):
        token = ProviderTokenFactory("app_x", "k1", source).token()
        assert jwt.decode(token, key.public_key(), algorithms=["ES256"])["iss"] == "app_x"
    with pytest.raises(ValueError):
        ProviderTokenFactory("app_x", "k1", key, refresh_after=3600)
