"""Identifiers and secrets of the push gateway: their shapes, generation and hashing.

Shapes (docs/gateway.md): app `app_` + 16, API key `pwk_` + 32, device `dev_` + 16, device
secret `pwd_` + 32, device token `pwt_` + 43, content `pwc_` + 22 url-safe characters. Every
one comes from `secrets`; API keys and device secrets are stored as their SHA-256 (they are
long random strings, so a fast hash is the right tool, as for access tokens).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import uuid
from typing import Final

_ALPHABET: Final = string.ascii_letters + string.digits + "-_"

APP_PREFIX: Final = "app_"
API_KEY_PREFIX: Final = "pwk_"
DEVICE_PREFIX: Final = "dev_"
DEVICE_SECRET_PREFIX: Final = "pwd_"
DEVICE_TOKEN_PREFIX: Final = "pwt_"
CONTENT_PREFIX: Final = "pwc_"

APP_ID_RE: Final = re.compile(r"app_[A-Za-z0-9_-]{16}")
API_KEY_RE: Final = re.compile(r"pwk_[A-Za-z0-9_-]{32}")
DEVICE_ID_RE: Final = re.compile(r"dev_[A-Za-z0-9_-]{16}")
DEVICE_TOKEN_RE: Final = re.compile(r"pwt_[A-Za-z0-9_-]{43}")
CONTENT_ID_RE: Final = re.compile(r"pwc_[A-Za-z0-9_-]{22}")
KEY_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_app_id() -> str:
    return APP_PREFIX + _random(16)


def new_api_key() -> str:
    return API_KEY_PREFIX + _random(32)


def new_device_id() -> str:
    return DEVICE_PREFIX + _random(16)


def new_device_secret() -> str:
    return DEVICE_SECRET_PREFIX + _random(32)


def new_device_token() -> str:
    return DEVICE_TOKEN_PREFIX + _random(43)


def new_content_id() -> str:
    return CONTENT_PREFIX + _random(22)


def new_key_id() -> str:
    return _random(10)


def new_push_id() -> str:
    return str(uuid.uuid4())


def hash_secret(secret: str | bytes) -> str:
    data = secret.encode("utf-8", "replace") if isinstance(secret, str) else secret
    return hashlib.sha256(data).hexdigest()


def parse_push_id(value: str) -> str | None:
    """A provider's `Pushwire-Id`: a UUID, returned in canonical lower-case form."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None
