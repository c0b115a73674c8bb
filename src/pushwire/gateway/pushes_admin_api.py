"""`GET /v1/admin/pushes`: the push records the gateway holds, for admins (the console's
push status page). Read from the gateway's in-memory records: waiting and handed-out pushes,
and final ones for `push_record_ttl` seconds; with engine=redis, every node's, from Redis."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from pushwire.gateway.model import Push
from pushwire.gateway.state import gateway_state
from pushwire.http.auth import AdminDep
from pushwire.http.errors import ApiError

router = APIRouter(tags=["apps"])

TOTAL_HEADER = {
    "Pushwire-Total": {"description": "how many records match", "schema": {"type": "integer"}}
}


def _newest_first(p: Push) -> tuple[float, int]:
    return (p.created, p.seq)


@router.get(
    "/v1/admin/pushes",
    summary="recent pushes, newest first (filter by app and device)",
    responses={200: {"headers": TOTAL_HEADER}},
)
async def list_pushes(
    request: Request,
    response: Response,
    _: AdminDep,
    app: Annotated[str | None, Query(max_length=64, description="an app id")] = None,
    device: Annotated[str | None, Query(max_length=64, description="a device id")] = None,
    limit: Annotated[
        int, Query(ge=1, description="most records (capped by admin_list_limit)")
    ] = 50,
) -> dict[str, Any]:
    gw = gateway_state(request)
    matching = [
        p
        for p in (await gw.delivery.all_pushes()).values()
        if (app is None or p.app_id == app) and (device is None or p.device_id == device)
    ]
    matching.sort(key=_newest_first, reverse=True)
    response.headers["Pushwire-Total"] = str(len(matching))
    cap = min(limit, gw.settings.admin_list_limit)
    return {"pushes": [p.record() for p in matching[:cap]]}


@router.get("/v1/admin/pushes/{push_id}", summary="one push record, whatever its app")
async def show_push(request: Request, push_id: str, _: AdminDep) -> dict[str, Any]:
    p = await gateway_state(request).delivery.find(push_id)
    if p is None:
        raise ApiError(404, "not_found", f"no push {push_id!r} (unknown, or forgotten)")
    return p.record()
