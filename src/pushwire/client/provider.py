"""The provider SDK: send pushes to device tokens through the gateway's HTTP API.

Two clients with the same methods: :class:`PushProvider` (blocking) and
:class:`AsyncPushProvider` (asyncio), both on httpx with one pooled connection.
Authentication is the app's API key, or an ES256 JWT made from the app's private key and
reused for 30 minutes (:class:`~pushwire.client.jwt_tokens.ProviderTokenFactory`).
Error replies raise the typed exceptions of :mod:`pushwire.client.errors`.

Example (blocking)::

    from pushwire.client import PushProvider, Unregistered

    with PushProvider("http://127.0.0.1:8080", api_key="pwk_...") as provider:
        try:
            push_id = provider.push(token, {"alert": "hello"}, priority=10)
        except Unregistered as exc:
            forget(token, since_ms=exc.timestamp)
        results = provider.push_batch([BatchPush(t, {"alert": "hi"}) for t in tokens])
        print(provider.status(push_id).state)

Example (asyncio, JWT)::

    provider = AsyncPushProvider(
        "http://127.0.0.1:8080", app_id="app_...", key_id="k1", private_key="key.pem"
    )
    async with provider:
        await provider.push(token, {"alert": "hello"})
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from pushwire.client.errors import ExpiredProviderToken, PushError, error_from_reply
from pushwire.client.jwt_tokens import DEFAULT_REFRESH_AFTER, ProviderTokenFactory

PushType = Literal["alert", "background"]
DEFAULT_TIMEOUT = 10.0
MAX_BATCH = 1000


@dataclass(frozen=True)
class BatchPush:
    """One item of :meth:`PushProvider.push_batch` (``payload`` is the provider body)."""

    token: str
    payload: Mapping[str, Any]
    expiration: int | None = None
    priority: int | None = None
    collapse_id: str | None = None
    push_type: PushType | None = None
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"token": self.token, "payload": dict(self.payload)}
        for key in ("expiration", "priority", "collapse_id", "push_type", "id"):
            value = getattr(self, key)
            if value is not None:
                item[key] = value
        return item


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one batch item: ``id`` when accepted, ``error`` when refused."""

    token: str
    status: int
    id: str | None = None
    error: PushError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


@dataclass(frozen=True)
class PushStatus:
    """``GET /v1/push/{id}``: where a push is (``state`` is queued, delivered, expired,
    collapsed, unregistered or dropped)."""

    id: str
    state: str
    token: str | None = None
    app: str | None = None
    device_id: str | None = None
    priority: int | None = None
    created: float | None = None
    updated: float | None = None
    delivered_at: float | None = None
    connection: str | None = None
    reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> PushStatus:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise PushError("BadResponse", 200, message=f"not a push status: {data!r}")
        known: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__ if k != "raw"}
        return cls(**known, raw=data)


@dataclass(frozen=True)
class WakeWebhook:
    """The wake webhook of an app: POSTed when a push waits ``after_seconds`` for an
    offline device; signed with ``secret`` (see :mod:`pushwire.client.webhooks`)."""

    url: str
    secret: str
    after_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "secret": self.secret, "after_seconds": self.after_seconds}


_UNSET: Any = object()


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    json_body: Any = None
    content: bytes | None = None


class _ProviderCore:
    """Request building and reply parsing shared by the blocking and asyncio clients."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        app_id: str | None,
        key_id: str | None,
        private_key: str | bytes | Path | EllipticCurvePrivateKey | None,
        token_factory: ProviderTokenFactory | None,
        refresh_after: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.api_key = api_key
        if token_factory is None and private_key is not None:
            if app_id is None or key_id is None:
                raise ValueError("JWT authentication needs app_id, key_id and private_key")
            token_factory = ProviderTokenFactory(
                app_id, key_id, private_key, refresh_after=refresh_after
            )
        if (api_key is None) == (token_factory is None):
            raise ValueError("give exactly one of api_key or a private key / token_factory")
        self.tokens = token_factory
        if token_factory is not None and self.app_id is None:
            self.app_id = token_factory.app_id

    def authorization(self) -> str:
        if self.tokens is not None:
            return f"Bearer {self.tokens.token()}"
        return f"Bearer {self.api_key}"

    # -- requests ----------------------------------------------------------------------------
    @staticmethod
    def push_request(
        token: str,
        payload: Mapping[str, Any],
        *,
        expiration: int | None,
        priority: int | None,
        collapse_id: str | None,
        push_type: PushType | None,
        push_id: str | None,
        fetch: bool,
    ) -> _Request:
        headers: dict[str, str] = {}
        for name, value in (
            ("pushwire-expiration", expiration),
            ("pushwire-priority", priority),
            ("pushwire-collapse-id", collapse_id),
            ("pushwire-push-type", push_type),
            ("pushwire-id", push_id),
        ):
            if value is not None:
                headers[name] = str(value)
        body = dict(payload)
        if fetch:
            body["fetch"] = True
        return _Request("POST", f"/v1/push/{quote(token, safe='')}", headers, body)

    @staticmethod
    def batch_request(pushes: Sequence[BatchPush | Mapping[str, Any]]) -> _Request:
        if len(pushes) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} pushes, not {len(pushes)}")
        items = [p.to_json() if isinstance(p, BatchPush) else dict(p) for p in pushes]
        return _Request("POST", "/v1/push", {}, {"pushes": items})

    @staticmethod
    def content_request(token: str, data: bytes, content_type: str) -> _Request:
        headers = {"pushwire-device-token": token, "content-type": content_type}
        return _Request("POST", "/v1/content", headers, content=data)

    def webhooks_request(
        self, app_id: str | None, receipt_url: str | None, wake: WakeWebhook | None
    ) -> _Request:
        app = app_id or self.app_id
        if app is None:
            raise ValueError("set_webhooks needs app_id (the provider was made with an API key)")
        body: dict[str, Any] = {}
        if receipt_url is not _UNSET:
            body["receipt_url"] = receipt_url
        if wake is not _UNSET:
            body["wake"] = wake.to_json() if wake is not None else None
        return _Request("PUT", f"/v1/apps/{quote(app, safe='')}/webhooks", {}, body)

    # -- replies -----------------------------------------------------------------------------
    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def check(self, response: httpx.Response) -> Any:
        """The JSON of a 2xx reply, or raise the typed error of any other."""
        body = self._json(response)
        if response.status_code >= 300:
            raise error_from_reply(response.status_code, body, response.headers.get("retry-after"))
        return body

    @staticmethod
    def push_id(response: httpx.Response, body: Any) -> str:
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return str(body["id"])
        header = response.headers.get("pushwire-id")
        if header:
            return str(header)
        raise PushError("BadResponse", response.status_code, message="reply has no push id")

    @staticmethod
    def batch_results(body: Any, sent: int) -> list[BatchResult]:
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != sent:
            raise PushError("BadResponse", 200, message="batch reply does not match the request")
        out: list[BatchResult] = []
        for item in results:
            if not isinstance(item, dict) or not isinstance(item.get("status"), int):
                raise PushError("BadResponse", 200, message=f"bad batch result {item!r}")
            token, status = str(item.get("token", "")), int(item["status"])
            if status == 200:
                out.append(BatchResult(token, status, id=str(item.get("id"))))
            else:
                out.append(BatchResult(token, status, error=error_from_reply(status, item)))
        return out

    @staticmethod
    def content_id(body: Any) -> str:
        if isinstance(body, dict) and isinstance(body.get("content_id"), str):
            return str(body["content_id"])
        raise PushError("BadResponse", 201, message="reply has no content_id")

    def should_retry(self, exc: PushError) -> bool:
        """A JWT refused as expired is re-made once (a sleeping laptop skews the clock)."""
        if isinstance(exc, ExpiredProviderToken) and self.tokens is not None:
            self.tokens.invalidate()
            return True
        return False


class PushProvider:
    """Blocking provider client. See the module docstring for examples.

    Give ``api_key``, or ``app_id`` + ``key_id`` + ``private_key`` (PEM path/text or key
    object) for ES256 JWTs, or a ready ``token_factory``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        app_id: str | None = None,
        key_id: str | None = None,
        private_key: str | bytes | Path | EllipticCurvePrivateKey | None = None,
        token_factory: ProviderTokenFactory | None = None,
        refresh_after: float = DEFAULT_REFRESH_AFTER,
        timeout: float = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        self._core = _ProviderCore(
            base_url,
            api_key=api_key,
            app_id=app_id,
            key_id=key_id,
            private_key=private_key,
            token_factory=token_factory,
            refresh_after=refresh_after,
        )
        self._http = http or httpx.Client(base_url=self._core.base_url, timeout=timeout)

    @property
    def token_factory(self) -> ProviderTokenFactory | None:
        return self._core.tokens

    def _send(self, req: _Request) -> tuple[httpx.Response, Any]:
        for attempt in (0, 1):
            headers = {"authorization": self._core.authorization(), **req.headers}
            response = self._http.request(
                req.method, req.path, headers=headers, json=req.json_body, content=req.content
            )
            try:
                return response, self._core.check(response)
            except PushError as exc:
                if attempt == 0 and self._core.should_retry(exc):
                    continue
                raise
        raise AssertionError("unreachable")

    def push(
        self,
        token: str,
        payload: Mapping[str, Any],
        *,
        expiration: int | None = None,
        priority: int | None = None,
        collapse_id: str | None = None,
        push_type: PushType | None = None,
        push_id: str | None = None,
        fetch: bool = False,
    ) -> str:
        """Send one push; returns its push id. ``fetch=True`` sends it notify-then-fetch."""
        req = self._core.push_request(
            token,
            payload,
            expiration=expiration,
            priority=priority,
            collapse_id=collapse_id,
            push_type=push_type,
            push_id=push_id,
            fetch=fetch,
        )
        response, body = self._send(req)
        return self._core.push_id(response, body)

    def push_batch(self, pushes: Sequence[BatchPush | Mapping[str, Any]]) -> list[BatchResult]:
        """Send up to 1000 pushes in one request; one :class:`BatchResult` per item, in order
        (a refused item has ``error`` set to its typed exception, nothing is raised)."""
        _, body = self._send(self._core.batch_request(pushes))
        return self._core.batch_results(body, len(pushes))

    def status(self, push_id: str) -> PushStatus:
        """Where the push is now."""
        _, body = self._send(_Request("GET", f"/v1/push/{quote(push_id, safe='')}", {}))
        return PushStatus.from_json(body)

    def post_content(
        self, token: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        """Store content for the device of ``token``; returns the content id to push with
        ``{"content_id": id}`` (notify-then-fetch)."""
        _, body = self._send(self._core.content_request(token, data, content_type))
        return self._core.content_id(body)

    def set_webhooks(
        self,
        *,
        app_id: str | None = None,
        receipt_url: str | None = _UNSET,
        wake: WakeWebhook | None = _UNSET,
    ) -> dict[str, Any]:
        """Set the app's receipt and/or wake webhook (None clears one, leaving a keyword out
        keeps it); returns the stored settings."""
        _, body = self._send(self._core.webhooks_request(app_id, receipt_url, wake))
        return dict(body) if isinstance(body, dict) else {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PushProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPushProvider:
    """The asyncio twin of :class:`PushProvider` (same arguments, awaitable methods)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        app_id: str | None = None,
        key_id: str | None = None,
        private_key: str | bytes | Path | EllipticCurvePrivateKey | None = None,
        token_factory: ProviderTokenFactory | None = None,
        refresh_after: float = DEFAULT_REFRESH_AFTER,
        timeout: float = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._core = _ProviderCore(
            base_url,
            api_key=api_key,
            app_id=app_id,
            key_id=key_id,
            private_key=private_key,
            token_factory=token_factory,
            refresh_after=refresh_after,
        )
        self._http = http or httpx.AsyncClient(base_url=self._core.base_url, timeout=timeout)

    @property
    def token_factory(self) -> ProviderTokenFactory | None:
        return self._core.tokens

    async def _send(self, req: _Request) -> tuple[httpx.Response, Any]:
        for attempt in (0, 1):
            headers = {"authorization": self._core.authorization(), **req.headers}
            response = await self._http.request(
                req.method, req.path, headers=headers, json=req.json_body, content=req.content
            )
            try:
                return response, self._core.check(response)
            except PushError as exc:
                if attempt == 0 and self._core.should_retry(exc):
                    continue
                raise
        raise AssertionError("unreachable")

    async def push(
        self,
        token: str,
        payload: Mapping[str, Any],
        *,
        expiration: int | None = None,
        priority: int | None = None,
        collapse_id: str | None = None,
        push_type: PushType | None = None,
        push_id: str | None = None,
        fetch: bool = False,
    ) -> str:
        """Send one push; returns its push id."""
        req = self._core.push_request(
            token,
            payload,
            expiration=expiration,
            priority=priority,
            collapse_id=collapse_id,
            push_type=push_type,
            push_id=push_id,
            fetch=fetch,
        )
        response, body = await self._send(req)
        return self._core.push_id(response, body)

    async def push_batch(
        self, pushes: Sequence[BatchPush | Mapping[str, Any]]
    ) -> list[BatchResult]:
        """Send up to 1000 pushes in one request; per-item results in order."""
        _, body = await self._send(self._core.batch_request(pushes))
        return self._core.batch_results(body, len(pushes))

    async def status(self, push_id: str) -> PushStatus:
        _, body = await self._send(_Request("GET", f"/v1/push/{quote(push_id, safe='')}", {}))
        return PushStatus.from_json(body)

    async def post_content(
        self, token: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        _, body = await self._send(self._core.content_request(token, data, content_type))
        return self._core.content_id(body)

    async def set_webhooks(
        self,
        *,
        app_id: str | None = None,
        receipt_url: str | None = _UNSET,
        wake: WakeWebhook | None = _UNSET,
    ) -> dict[str, Any]:
        _, body = await self._send(self._core.webhooks_request(app_id, receipt_url, wake))
        return dict(body) if isinstance(body, dict) else {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPushProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
