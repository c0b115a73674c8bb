"""GET /v1/me: who the server takes the caller for (the console asks it at login)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from pushwire.http.auth import CallerDep
from pushwire.http.errors import error_responses

router = APIRouter(tags=["admin"])


class MeOut(BaseModel):
    user: str | None = Field(description="null: anonymous")
    roles: list[str]
    admin: bool = Field(description="may use the admin API")
    token_id: str | None = Field(description="set when the caller used an access token")
    scope: list[str] = Field(description="the token's scope; empty: the user's full rights")


@router.get(
    "/v1/me",
    summary="The caller's identity",
    response_model=MeOut,
    responses=error_responses(401, 429),
)
async def me(caller: CallerDep) -> MeOut:
    """The identity the credentials stand for (401 when they are bad). Checks a login
    without touching anything else."""
    identity = caller.identity
    return MeOut(
        user=identity.username,
        roles=sorted(identity.roles),
        admin=identity.is_admin,
        token_id=identity.token_id,
        scope=list(identity.scope),
    )
