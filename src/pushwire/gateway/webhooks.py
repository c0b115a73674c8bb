"""Outgoing webhooks: delivery receipts and offline wake notices.

Each webhook is a JSON POST. Wake notices are signed: `Pushwire-Timestamp: <unix s>` and
`Pushwire-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, so the
receiver can reject forgeries and replays (an old timestamp). A failed attempt (network
error, timeout, any status other than 2xx) is retried with exponential backoff and full
jitter, at most `max_attempts` times; `still_wanted()` is asked before every attempt (a wake
is not sent once the device came online). In memory only: a restart drops the retries in
progress (receipts are a convenience; GET /v1/push/{id} is the record).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("pushwire.gateway.webhooks")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(slots=True)
class WebhookStats:
    sent: int = 0
    failed_attempts: int = 0
    gave_up: int = 0


class WebhookSender:
    def __init__(self, timeout: float, max_attempts: int, backoff: float) -> None:
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.stats: dict[str, WebhookStats] = {"receipt": WebhookStats(), "wake": WebhookStats()}
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._client

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def send(
        self,
        kind: str,
        url: str,
        payload: dict[str, Any],
        *,
        secret: str | None = None,
        still_wanted: Callable[[], bool] = lambda: True,
    ) -> asyncio.Task[bool]:
        task = asyncio.create_task(self._deliver(kind, url, payload, secret, still_wanted))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(
        self,
        kind: str,
        url: str,
        payload: dict[str, Any],
        secret: str | None,
        still_wanted: Callable[[], bool],
    ) -> bool:
        stats = self.stats[kind]
        for attempt in range(self.max_attempts):
            if attempt:
                # full jitter: spread the retries of many webhooks to one receiver
                delay = self.backoff * 2 ** (attempt - 1)
                await asyncio.sleep(random.uniform(delay / 2, delay))
            if not still_wanted():
                return False
            now = int(time.time())
            if "timestamp" in payload:
                payload = {**payload, "timestamp": now}
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "User-Agent": "pushwire"}
            if secret is not None:
                headers["Pushwire-Timestamp"] = str(now)
                headers["Pushwire-Signature"] = sign(secret, now, body)
            try:
                resp = await self._http().post(url, content=body, headers=headers)
                ok = 200 <= resp.status_code < 300
                why = f"status {resp.status_code}"
            except httpx.HTTPError as exc:
                ok, why = False, type(exc).__name__
            if ok:
                stats.sent += 1
                return True
            stats.failed_attempts += 1
            log.info("%s webhook to %s failed (%s), attempt %d", kind, url, why, attempt + 1)
        stats.gave_up += 1
        log.warning("%s webhook to %s: giving up after %d attempts", kind, url, self.max_attempts)
        return False
