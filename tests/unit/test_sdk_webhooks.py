"""Wake-webhook signatures: HMAC-SHA256 over "timestamp.body", with replay window."""

from __future__ import annotations

import hashlib
import hmac

from pushwire.client.webhooks import sign_webhook, verify_webhook


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    body = b'{"type":"wake"}'
    expected = hmac.new(b"k", b"100." + body, hashlib.sha256).hexdigest()
    assert sign_webhook("k", 100, body) == f"sha256={expected}"


def test_verify_rejects_tampering_replay_and_junk() -> None:
    body = b'{"type":"wake"}'
    sig = sign_webhook("k", 100, body)
    assert verify_webhook("k", "100", body, sig, now=150)
    assert not verify_webhook("k", "100", body + b" ", sig, now=150)
    assert not verify_webhook("k", "101", body, sig, now=150)
    assert not verify_webhook("k", "100", body, sig, now=100 + 301)
    assert not verify_webhook("k", None, body, sig, now=150)
    assert not verify_webhook("k", "soon", body, sig, now=150)
    assert not verify_webhook("k", "100", body, None, now=150)
