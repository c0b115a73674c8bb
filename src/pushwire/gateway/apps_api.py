"""Apps: the admin API (`/v1/admin/apps...`) and an app's own webhook settings.

The admin API needs the admin role (http/auth.py `AdminDep`); `PUT /v1/apps/{id}/webhooks`
takes the app's own provider credential too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pushwire.gateway.model import App, WakeHook
from pushwire.gateway.state import GatewayState, gateway_state
from pushwire.gateway.store import Conflict, NotFound
from pushwire.http.auth import AdminDep, resolve_caller, unauthorized
from pushwire.http.errors import ApiError

router = APIRouter(tags=["apps"])


def _app(gw: GatewayState, app_id: str) -> App:
    app = gw.registry.app(app_id)
    if app is None:
        raise ApiError(404, "not_found", f"no app {app_id!r}")
    return app


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "bad_request", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return body


@router.get("/v1/admin/apps", summary="list apps")
async def list_apps(request: Request, _: AdminDep) -> dict[str, Any]:
    gw = gateway_state(request)
    return {"apps": [a.public() for a in sorted(gw.registry.reg.apps.values(), key=_created)]}


def _created(app: App) -> float:
    return app.created


@router.post("/v1/admin/apps", status_code=201, summary="create an app (credentials shown once)")
async def create_app(request: Request, _: AdminDep) -> Response:
    gw = gateway_state(request)
    body = await _json(request)
    name = body.get("name")
    if not isinstance(name, str):
        raise ApiError(400, "bad_request", 'the body is {"name": NAME}')
    reg = gw.registry
    try:
        new = await reg.call(reg.admin.create_app, name)
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    await reg.wrote(new.generation, lambda: reg.put_app(new.app))
    return JSONResponse(
        {"app_id": new.app.app_id, "api_key": new.api_key, "name": name}, status_code=201
    )


@router.get("/v1/admin/apps/{app_id}", summary="one app and its keys")
async def show_app(request: Request, app_id: str, _: AdminDep) -> dict[str, Any]:
    gw = gateway_state(request)
    app = _app(gw, app_id)
    keys = [k.public() for (a, _k), k in gw.registry.reg.keys.items() if a == app_id]
    return {**app.public(), "keys": keys}


@router.delete("/v1/admin/apps/{app_id}", status_code=204, summary="remove an app")
async def remove_app(request: Request, app_id: str, _: AdminDep) -> Response:
    gw = gateway_state(request)
    reg = gw.registry
    _app(gw, app_id)
    try:
        gen = await reg.call(reg.admin.remove_app, app_id)
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    await reg.settled(gen)
    return Response(status_code=204)


@router.post("/v1/admin/apps/{app_id}/keys", status_code=201, summary="add an ES256 public key")
async def add_key(request: Request, app_id: str, _: AdminDep) -> Response:
    gw = gateway_state(request)
    _app(gw, app_id)
    body = await _json(request)
    pem, kid = body.get("public_key"), body.get("kid")
    if not isinstance(pem, str) or (kid is not None and not isinstance(kid, str)):
        raise ApiError(400, "bad_request", 'the body is {"public_key": PEM, "kid"?: KEY_ID}')
    reg = gw.registry
    try:
        key, gen = await reg.call(reg.admin.add_key, app_id, pem, kid)
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    await reg.wrote(gen, lambda: reg.put_key(key))
    return JSONResponse(key.public(), status_code=201)


@router.delete("/v1/admin/apps/{app_id}/keys/{kid}", status_code=204, summary="revoke an app's key")
async def revoke_key(request: Request, app_id: str, kid: str, _: AdminDep) -> Response:
    gw = gateway_state(request)
    reg = gw.registry
    try:
        gen = await reg.call(reg.admin.revoke_key, app_id, kid)
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    await reg.settled(gen)
    return Response(status_code=204)


def _parse_webhooks(body: dict[str, Any], app: App) -> tuple[str | None, WakeHook | None]:
    receipt = body.get("receipt_url", app.receipt_url)
    if receipt is not None and not isinstance(receipt, str):
        raise ApiError(400, "bad_request", "receipt_url is a URL or null")
    wake = app.wake
    if "wake" in body:
        w = body["wake"]
        if w is None:
            wake = None
        elif (
            isinstance(w, dict)
            and isinstance(w.get("url"), str)
            and isinstance(w.get("secret"), str)
            and isinstance(w.get("after_seconds"), int | float)
            and not isinstance(w.get("after_seconds"), bool)
        ):
            wake = WakeHook(w["url"], w["secret"], float(w["after_seconds"]))
        else:
            raise ApiError(400, "bad_request", 'wake is {"url", "secret", "after_seconds"} or null')
    return receipt, wake


async def _set_webhooks(request: Request, gw: GatewayState, app: App) -> dict[str, Any]:
    receipt, wake = _parse_webhooks(await _json(request), app)
    reg = gw.registry
    try:
        gen = await reg.call(reg.admin.set_webhooks, app.app_id, receipt, wake)
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    await reg.settled(gen)
    return _app(gw, app.app_id).webhooks()


@router.put("/v1/admin/apps/{app_id}/webhooks", summary="set an app's webhooks (admin)")
async def admin_webhooks(request: Request, app_id: str, _: AdminDep) -> dict[str, Any]:
    gw = gateway_state(request)
    return await _set_webhooks(request, gw, _app(gw, app_id))


@router.put("/v1/apps/{app_id}/webhooks", summary="set an app's webhooks (its own credential)")
async def app_webhooks(request: Request, app_id: str) -> dict[str, Any]:
    gw = gateway_state(request)
    result = gw.providers.authenticate(request.headers.get("authorization"))
    if result.app is None:
        caller = await resolve_caller(request, allow_query=False)
        if caller.identity.anonymous:
            raise unauthorized("the app's credential or an admin is needed")
        if not caller.identity.is_admin:
            raise ApiError(403, "forbidden", "the app's credential or an admin is needed")
    elif result.app.app_id != app_id:
        raise ApiError(403, "forbidden", "these credentials belong to another app")
    return await _set_webhooks(request, gw, _app(gw, app_id))


@router.get("/v1/admin/devices", summary="list devices")
async def list_devices(request: Request, _: AdminDep) -> dict[str, Any]:
    gw = gateway_state(request)
    d = gw.delivery
    return {
        "devices": [
            {
                "device_id": dev.device_id,
                "created": dev.created,
                "online": d.online(dev.device_id),
                "last_seen": d.device_seen(dev.device_id),
                "apps": gw.registry.device_apps(dev.device_id),
                # tokens are not credentials (pushing needs the app's too); no secret is shown
                "tokens": [
                    {"token": t.token, "app": t.app_id, "created": t.created}
                    for (d, _a), t in sorted(gw.registry.live_tokens.items())
                    if d == dev.device_id
                ],
            }
            for dev in gw.registry.reg.devices.values()
        ]
    }


@router.delete("/v1/admin/devices/{device_id}", status_code=204, summary="remove a device")
async def remove_device(request: Request, device_id: str, _: AdminDep) -> Response:
    gw = gateway_state(request)
    reg = gw.registry
    try:
        gen = await reg.call(reg.admin.remove_device, device_id)
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    await reg.settled(gen)
    return Response(status_code=204)
