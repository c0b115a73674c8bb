"""The device's saved identity: one JSON file the user names, written atomically, mode 0600.

Layout: ``{"device_id": "dev_...", "device_secret": "pwd_...", "tokens": {"app_...": "pwt_..."}}``.
The push-id dedup log lives next to it (``<file>.seen``, see :mod:`pushwire.client.dedup`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class CredentialsError(ValueError):
    """The credentials file exists but is not a valid pushwire device identity."""


@dataclass
class DeviceCredentials:
    device_id: str
    device_secret: str
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> DeviceCredentials:
        if not isinstance(data, dict):
            raise CredentialsError("credentials must be a JSON object")
        device_id, secret = data.get("device_id"), data.get("device_secret")
        tokens = data.get("tokens", {})
        if not isinstance(device_id, str) or not device_id.startswith("dev_"):
            raise CredentialsError("credentials: device_id missing or not a device id")
        if not isinstance(secret, str) or not secret:
            raise CredentialsError("credentials: device_secret missing")
        if not isinstance(tokens, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tokens.items()
        ):
            raise CredentialsError("credentials: tokens must map app ids to token strings")
        return cls(device_id, secret, dict(tokens))

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "device_secret": self.device_secret,
            "tokens": dict(self.tokens),
        }

    @classmethod
    def load(cls, path: Path) -> DeviceCredentials | None:
        """The saved credentials, or None when the file does not exist yet."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CredentialsError(f"{path}: not JSON ({exc})") from None
        return cls.from_json(data)

    def save(self, path: Path) -> None:
        """Write atomically (temp file + fsync + rename) and readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
