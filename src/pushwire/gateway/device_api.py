"""The device side: registration, presence, device tokens, and fetching content.

Device requests carry the device credential as HTTP Basic (`device_id:device_secret`);
errors use the project's error model (`{"error": {"code", "message"}}`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pushwire.core.loopback import is_loopback
from pushwire.gateway import ids
from pushwire.gateway.model import Device
from pushwire.gateway.state import GatewayState, gateway_state
from pushwire.gateway.store import GatewayStoreError
from pushwire.http.auth import client_ip, resolve_caller, unauthorized
from pushwire.http.errors import ApiError

router = APIRouter(tags=["devices"])

NOT_FOUND = "not_found"


async def _own_device(gw: GatewayState, request: Request, device_id: str) -> Device:
    device = await gw.device_from_basic(request)
    if device is None:
        raise unauthorized("a device credential (HTTP Basic device_id:device_secret) is needed")
    if device.device_id != device_id:
        raise ApiError(403, "forbidden", "a device may act only on itself")
    return device


@router.post("/v1/devices", status_code=201, summary="register a device")
async def register_device(request: Request) -> Response:
    gw = gateway_state(request)
    if not gw.registration_allowed(request, is_loopback(client_ip(request))):
        raise ApiError(
            403,
            "forbidden",
            "device registration needs the registration secret "
            "(header Pushwire-Registration-Secret)"
            if gw.settings.device_registration_secret
            else "device registration is open from this host only (set "
            "device_registration_secret to register from elsewhere)",
        )
    new = await gw.registry.call(gw.registry.admin.register_device)
    await gw.registry.wrote(new.generation, lambda: gw.registry.put_device(new.device))
    return JSONResponse(
        {"device_id": new.device.device_id, "device_secret": new.secret}, status_code=201
    )


@router.get("/v1/devices/{device_id}", summary="a device's presence and apps")
async def device_status(request: Request, device_id: str) -> dict[str, Any]:
    gw = gateway_state(request)
    if await gw.device_from_basic(request) is None:
        caller = await resolve_caller(request, allow_query=False)
        if not caller.identity.is_admin:
            raise ApiError(403, "forbidden", "a device's own credential or an admin is needed")
    else:
        await _own_device(gw, request, device_id)
    device = gw.registry.device(device_id)
    if device is None:
        raise ApiError(404, NOT_FOUND, f"no device {device_id!r}")
    online = await gw.delivery.online_anywhere(device_id)
    return {
        "device_id": device.device_id,
        "online": online,
        "last_seen": await gw.delivery.last_seen_anywhere(device_id, online),
        "created": device.created,
        "apps": gw.registry.device_apps(device_id),
    }


@router.post("/v1/devices/{device_id}/tokens", summary="the device token for one app")
async def create_token(request: Request, device_id: str) -> dict[str, Any]:
    gw = gateway_state(request)
    await _own_device(gw, request, device_id)
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "bad_request", 'the body is JSON {"app": APP_ID}') from None
    app_id = body.get("app") if isinstance(body, dict) else None
    if not isinstance(app_id, str) or not ids.APP_ID_RE.fullmatch(app_id):
        raise ApiError(400, "bad_request", 'the body is JSON {"app": APP_ID}')
    if gw.registry.app(app_id) is None:
        raise ApiError(404, NOT_FOUND, f"no app {app_id!r}")
    reg = gw.registry
    # one at a time: two concurrent requests for one (device, app) get one token
    async with reg.token_lock:
        existing = reg.live_tokens.get((device_id, app_id))
        if existing is None:
            token, gen = await reg.call(reg.admin.create_token, device_id, app_id)
            await reg.wrote(gen, lambda: reg.put_token(token))
            existing = reg.live_tokens.get((device_id, app_id), token)
    return {"token": existing.token, "app": app_id}


@router.delete(
    "/v1/devices/{device_id}/tokens/{token}", status_code=204, summary="delete a device token"
)
async def delete_token(request: Request, device_id: str, token: str) -> Response:
    gw = gateway_state(request)
    await _own_device(gw, request, device_id)
    reg = gw.registry
    stored = reg.token(token)
    if stored is None or stored.device_id != device_id:
        raise ApiError(404, NOT_FOUND, "no such token for this device")
    if stored.deleted is None:
        try:
            gen, when = await reg.call(reg.admin.delete_token, token)
        except GatewayStoreError as exc:
            raise ApiError(404, NOT_FOUND, str(exc)) from None
        await reg.wrote(gen, lambda: reg.put_token(replace(stored, deleted=when)))
        gw.delivery.unregister_token(token)
    return Response(status_code=204)


@router.get("/v1/content/{content_id}", summary="fetch notify-then-fetch content")
async def content_get(request: Request, content_id: str) -> Response:
    gw = gateway_state(request)
    device = await gw.device_from_basic(request)
    if device is None:
        raise unauthorized("a device credential (HTTP Basic device_id:device_secret) is needed")
    content = None
    if ids.CONTENT_ID_RE.fullmatch(content_id):
        content = await gw.registry.call(gw.store.get_content, content_id)
    # another device's content is "not found": its existence is not for this device to know
    if content is None or content.device_id != device.device_id or content.expires <= time.time():
        raise ApiError(404, NOT_FOUND, "no such content")
    return Response(content.data, media_type=content.content_type)
