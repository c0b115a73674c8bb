"""The provider side: POST /v1/push/{token}, POST /v1/push (batch), GET /v1/push/{id},
POST /v1/content.

Errors use APNs' vocabulary, `{"reason": ..., "timestamp": ms}` (docs/gateway.md), not the
project's error model: providers port APNs code to this API.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pushwire.gateway import ids
from pushwire.gateway.content import body_content, device_message, new_content, notice_payload
from pushwire.gateway.delivery import PushOptions
from pushwire.gateway.journal import StoreUnavailable
from pushwire.gateway.model import PRIORITIES, PUSH_TYPES, App, Content, Push
from pushwire.gateway.state import GatewayState, gateway_state

router = APIRouter(tags=["push"])

COLLAPSE_ID_MAX = 64
CONTENT_TYPE_MAX = 200


class PushError(Exception):
    """An APNs-style refusal: status, reason and (410) when the token stopped working."""

    def __init__(
        self,
        status: int,
        reason: str,
        timestamp_ms: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.timestamp_ms = timestamp_ms
        self.retry_after = retry_after

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        hdrs = dict(headers or {})
        if self.retry_after is not None:
            hdrs["Retry-After"] = str(self.retry_after)
        ts = self.timestamp_ms if self.timestamp_ms is not None else int(time.time() * 1000)
        return JSONResponse(
            {"reason": self.reason, "timestamp": ts}, status_code=self.status, headers=hdrs
        )

    def item(self, token: Any) -> dict[str, Any]:
        ts = self.timestamp_ms if self.timestamp_ms is not None else int(time.time() * 1000)
        return {"token": token, "status": self.status, "reason": self.reason, "timestamp": ts}


def _provider(gw: GatewayState, request: Request) -> App:
    result = gw.providers.authenticate(request.headers.get("authorization"))
    if result.app is None:
        assert result.reason is not None
        raise PushError(403, result.reason)
    return result.app


def _rate(gw: GatewayState, app: App, n: int = 1) -> None:
    if gw.limiter is None or gw.limiter.try_acquire(app.app_id, float(n)):
        return
    retry = max(1, math.ceil(gw.limiter.retry_after(app.app_id, float(n))))
    raise PushError(429, "TooManyRequests", retry_after=retry)


def parse_options(
    expiration: Any, priority: Any, collapse_id: Any, push_type: Any, push_id: Any
) -> PushOptions:
    """Header (or batch item) values -> options; PushError 400 for a bad one."""
    exp: int | None = None
    if expiration is not None:
        try:
            exp = int(str(expiration).strip())
        except ValueError:
            raise PushError(400, "BadExpirationDate") from None
        if exp < 0 or isinstance(expiration, bool | float):
            raise PushError(400, "BadExpirationDate")
    prio = 10
    if priority is not None:
        try:
            prio = int(str(priority).strip())
        except ValueError:
            raise PushError(400, "BadPriority") from None
        if prio not in PRIORITIES or isinstance(priority, bool | float):
            raise PushError(400, "BadPriority")
    cid: str | None = None
    if collapse_id is not None:
        if not isinstance(collapse_id, str) or not collapse_id:
            raise PushError(400, "BadCollapseId")
        if len(collapse_id.encode()) > COLLAPSE_ID_MAX:
            raise PushError(400, "BadCollapseId")
        cid = collapse_id
    ptype = "alert"
    if push_type is not None:
        if push_type not in PUSH_TYPES:
            raise PushError(400, "BadPushType")
        ptype = push_type
    pid: str | None = None
    if push_id is not None:
        pid = ids.parse_push_id(push_id) if isinstance(push_id, str) else None
        if pid is None:
            raise PushError(400, "BadMessageId")
    return PushOptions(prio, ptype, exp, cid, pid)


def parse_body(gw: GatewayState, raw: bytes) -> dict[str, Any]:
    if len(raw) > gw.settings.push_max_payload:
        raise PushError(413, "PayloadTooLarge")
    if not raw.strip():
        raise PushError(400, "PayloadEmpty")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise PushError(400, "BadPayload") from None
    if not isinstance(body, dict):
        raise PushError(400, "BadPayload")
    if not body:
        raise PushError(400, "PayloadEmpty")
    return body


def _token_for(gw: GatewayState, app: App, token: Any) -> Any:
    if not isinstance(token, str) or not ids.DEVICE_TOKEN_RE.fullmatch(token):
        raise PushError(400, "BadDeviceToken")
    stored = gw.registry.token(token)
    if stored is None:
        raise PushError(400, "BadDeviceToken")
    if stored.app_id != app.app_id:
        raise PushError(403, "DeviceTokenNotForApp")
    if stored.deleted is not None:
        raise PushError(410, "Unregistered", int(stored.deleted * 1000))
    return stored


async def submit(
    gw: GatewayState, app: App, token: Any, body: dict[str, Any], opts: PushOptions
) -> Push:
    """Validate the target, build the device message, hand it to delivery (durable)."""
    p, stored = await prepare(gw, app, token, body, opts)
    try:
        await gw.delivery.accept(p, stored)
    except StoreUnavailable:
        raise PushError(503, "ServiceUnavailable", retry_after=1) from None
    return p


async def prepare(
    gw: GatewayState, app: App, token: Any, body: dict[str, Any], opts: PushOptions
) -> tuple[Push, Content | None]:
    """The push (and its content, for a notice) for one request or batch item."""
    stored = _token_for(gw, app, token)
    d = gw.delivery
    now = time.time()
    if opts.push_id is not None and await d.find(opts.push_id) is not None:
        raise PushError(400, "DuplicateMessageId")
    p = d.make_push(stored, opts, b"", now)
    ttl = gw.settings.push_content_ttl
    stored_content: Content | None = None
    alert = notice_payload(body)
    content_id = body.get("content_id")
    if content_id is not None:
        if not isinstance(content_id, str) or not ids.CONTENT_ID_RE.fullmatch(content_id):
            raise PushError(400, "BadPayload")
        found = await gw.registry.call(gw.store.get_content, content_id)
        if found is None or found.device_id != p.device_id or found.app_id != p.app_id:
            raise PushError(400, "BadPayload")
        p.body = device_message(p, alert, found)
        d.stats.notices += 1
    elif body.get("fetch") is True:
        stored_content = new_content(p, body_content(body), "application/json", now, ttl)
        p.body = device_message(p, alert, stored_content)
        d.stats.notices += 1
    else:
        p.body = device_message(p, body)
        if len(p.body) > gw.settings.push_notice_threshold:
            stored_content = new_content(p, body_content(body), "application/json", now, ttl)
            p.body = device_message(p, alert, stored_content)
            d.stats.notices += 1
    return p, stored_content


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema,
    }


_PUSH_OPENAPI: dict[str, Any] = {
    "parameters": [
        _header("Pushwire-Expiration", "unix seconds; 0: now or never", {"type": "integer"}),
        _header(
            "Pushwire-Priority",
            "10 immediate, 5 may be batched, 1 lowest",
            {"type": "integer", "enum": [10, 5, 1]},
        ),
        _header("Pushwire-Collapse-Id", "at most 64 bytes", {"type": "string"}),
        _header(
            "Pushwire-Push-Type",
            "alert or background",
            {"type": "string", "enum": ["alert", "background"]},
        ),
        _header("Pushwire-Id", "a UUID, echoed back", {"type": "string", "format": "uuid"}),
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "maxProperties": 64}}},
        "description": "the push: alert, data, badge, sound, content_available, fetch, "
        "content_id (at most push_max_payload bytes)",
    },
    "responses": {
        "400": {
            "description": "BadDeviceToken, PayloadEmpty, BadPayload, BadExpirationDate, "
            "BadPriority, BadCollapseId, BadPushType, BadMessageId"
        },
        "403": {
            "description": "MissingProviderToken, InvalidProviderToken, "
            "ExpiredProviderToken, DeviceTokenNotForApp"
        },
        "410": {"description": "Unregistered (timestamp: when the token stopped)"},
        "413": {"description": "PayloadTooLarge"},
        "429": {"description": "TooManyRequests, with Retry-After"},
    },
}


@router.post(
    "/v1/push/{device_token}",
    summary="send one push to a device token",
    openapi_extra=_PUSH_OPENAPI,
)
async def push_one(request: Request, device_token: str) -> Response:
    gw = gateway_state(request)
    h = request.headers
    echo: dict[str, str] = {}
    if h.get("pushwire-id") is not None:
        echo["Pushwire-Id"] = h["pushwire-id"]
    try:
        app = _provider(gw, request)
        _rate(gw, app)
        opts = parse_options(
            h.get("pushwire-expiration"),
            h.get("pushwire-priority"),
            h.get("pushwire-collapse-id"),
            h.get("pushwire-push-type"),
            h.get("pushwire-id"),
        )
        raw = await _read_limited(request, gw.settings.push_max_payload)
        body = parse_body(gw, raw)
        p = await submit(gw, app, device_token, body, opts)
    except PushError as exc:
        gw.delivery.stats.reject(exc.reason)
        return exc.response(echo)
    return JSONResponse({"id": p.id}, headers={"Pushwire-Id": p.id})


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it is over `limit`: never buffer a huge one."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PushError(413, "PayloadTooLarge")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PushError(413, "PayloadTooLarge")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/v1/push", summary="send up to push_max_batch pushes, one result per item")
async def push_batch(request: Request) -> Response:
    gw = gateway_state(request)
    try:
        app = _provider(gw, request)
        # each item may carry up to push_max_payload bytes of JSON, plus its fields
        limit = gw.settings.push_max_batch * (gw.settings.push_max_payload * 6 + 512)
        raw = await _read_limited(request, limit)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise PushError(400, "BadPayload") from None
        items = data.get("pushes") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise PushError(400, "BadPayload")
        if len(items) > gw.settings.push_max_batch:
            raise PushError(413, "TooManyPushes")
        _rate(gw, app, len(items))
    except PushError as exc:
        gw.delivery.stats.reject(exc.reason)
        return exc.response()
    results: list[dict[str, Any]] = []
    admitted: list[Push] = []
    d = gw.delivery
    for item in items:
        token = item.get("token") if isinstance(item, dict) else None
        try:
            if not isinstance(item, dict):
                raise PushError(400, "BadPayload")
            opts = parse_options(
                item.get("expiration"),
                item.get("priority"),
                item.get("collapse_id"),
                item.get("push_type"),
                item.get("id"),
            )
            payload = item.get("payload")
            if payload is None:
                raise PushError(400, "PayloadEmpty")
            encoded = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
            body = parse_body(gw, encoded)
            p, stored = await prepare(gw, app, token, body, opts)
            if stored is not None:
                await gw.registry.call(gw.store.put_content, stored)
            d.admit(p)
            admitted.append(p)
            results.append({"token": token, "status": 200, "id": p.id})
        except PushError as exc:
            d.stats.reject(exc.reason)
            results.append(exc.item(token))
    # one commit for the whole batch, then delivery in order
    try:
        await d.journal.durable()
    except StoreUnavailable:
        # not one of them may be reported accepted
        d.unadmit(admitted)
        return PushError(503, "ServiceUnavailable", retry_after=1).response()
    for p in admitted:
        d.dispatch(p)
    return JSONResponse({"results": results})


@router.get("/v1/push/{push_id}", summary="the state of a push")
async def push_status(request: Request, push_id: str) -> Response:
    gw = gateway_state(request)
    try:
        app = _provider(gw, request)
    except PushError as exc:
        return exc.response()
    canonical = ids.parse_push_id(push_id)
    p = await gw.delivery.find(canonical) if canonical is not None else None
    if p is None or p.app_id != app.app_id:
        return PushError(404, "NotFound").response()
    return JSONResponse(p.record())


@router.post("/v1/content", status_code=201, summary="store content for notify-then-fetch")
async def content_post(request: Request) -> Response:
    gw = gateway_state(request)
    try:
        app = _provider(gw, request)
        _rate(gw, app)
        stored = _token_for(gw, app, request.headers.get("pushwire-device-token"))
        raw = await _read_limited(request, gw.settings.push_content_max)
        if not raw:
            raise PushError(400, "PayloadEmpty")
        ctype = request.headers.get("content-type") or "application/octet-stream"
        if len(ctype) > CONTENT_TYPE_MAX or any(ord(c) < 32 for c in ctype):
            raise PushError(400, "BadContentType")
    except PushError as exc:
        gw.delivery.stats.reject(exc.reason)
        return exc.response()
    now = time.time()
    content = Content(
        ids.new_content_id(),
        stored.device_id,
        stored.app_id,
        ctype,
        raw,
        now,
        now + gw.settings.push_content_ttl,
    )
    await gw.registry.call(gw.store.put_content, content)
    return JSONResponse({"content_id": content.content_id}, status_code=201)
