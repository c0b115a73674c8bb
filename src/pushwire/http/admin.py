"""The admin API, `/v1/admin/...`: users, access tokens, topic ACL rules and named
consumers over HTTP.

The same operations as `pushwire user/token/acl` (docs/security.md), through the running
server's `AuthService`: a change applies at once (no one-second wait for the store watch),
and a revoked token or a removed user ends its connections on every transport.

Only callers with admin rights get in (role `admin`; a token with a scope needs `admin` in
it): 401 without credentials, 403 for anyone else. Errors use the error model: `not_found`
404, `conflict` 409, `bad_request` 400. Passwords and token secrets are never logged; a new
token's secret is in the creation reply only.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from pushwire.core.acl import AclError, AclRule
from pushwire.core.auth import AuthService
from pushwire.core.auth_admin import UserInfo
from pushwire.core.auth_input import parse_duration
from pushwire.core.consumers import Consumer, Consumers
from pushwire.core.log import format_cursor
from pushwire.core.text import JsonError, parse_json
from pushwire.core.tokens import TokenInfo
from pushwire.http.auth import AdminDep
from pushwire.http.errors import ApiError, bad_request, error_responses
from pushwire.http.state import HttpState, get_state
from pushwire.model import Conflict, NotFound

log = logging.getLogger(__name__)


async def checked_json_body(
    request: Request, state: Annotated[HttpState, Depends(get_state)]
) -> None:
    """Every admin request body passes the checks of every other door (core/text.py):
    nesting at most `json_max_depth`, and no text that cannot be encoded as UTF-8."""
    if request.method in ("GET", "HEAD", "DELETE"):
        return
    raw = await request.body()  # cached: FastAPI parses the same bytes
    if raw:
        try:
            parse_json(raw, state.settings.json_max_depth)
        except JsonError as exc:
            raise bad_request(str(exc)) from None


router = APIRouter(
    prefix="/v1/admin", tags=["admin API"], dependencies=[Depends(checked_json_body)]
)

_ERRORS = error_responses(400, 401, 403, 429)
_ERRORS_404 = error_responses(400, 401, 403, 404, 429)


# -- models ---------------------------------------------------------------------------------


class UserOut(BaseModel):
    name: str
    roles: list[str]
    created: float = Field(description="Unix seconds")

    @classmethod
    def of(cls, info: UserInfo) -> UserOut:
        return cls(name=info.username, roles=list(info.roles), created=info.created)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="1..256 characters; no + # / : or control characters")
    password: str = Field(description="the user's password (stored as an argon2id hash)")
    roles: list[str] = Field(default_factory=list, description="e.g. admin, ops")


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str


class RolesChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[str] = Field(description="the user's new roles (replaces the old ones)")


class UserRemoved(BaseModel):
    name: str
    tokens_removed: list[str] = Field(description="ids of the user's tokens, removed with it")


class TokenOut(BaseModel):
    """A token as listings show it: never the secret."""

    id: str = Field(description="not secret: how the token is named in logs and revoked")
    user: str
    name: str | None
    created: float
    expires: float | None = Field(description="Unix seconds; null: never")
    scope: list[str] = Field(description="empty: the user's full rights")
    last_used: float | None
    revoked: float | None
    status: Literal["active", "expired", "revoked"]

    @classmethod
    def of(cls, info: TokenInfo) -> TokenOut:
        return cls(
            id=info.id,
            user=info.username,
            name=info.name,
            created=info.created,
            expires=info.expires,
            scope=list(info.scope),
            last_used=info.last_used,
            revoked=info.revoked,
            status=info.status(),
        )


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown in this reply only")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(description="the user the token acts as")
    expires: str | float | None = Field(
        None,
        description="lifetime: seconds, or 45s, 15m, 12h, 30d, 2w; null or never: no expiry",
    )
    scope: list[str] = Field(
        default_factory=list,
        description="read:FILTER, write:FILTER, readwrite:FILTER, admin; empty: full rights",
    )
    name: str | None = Field(None, description="a label to recognise the token by")


class RuleOut(BaseModel):
    id: int
    subject_kind: Literal["user", "role", "anonymous", "all"]
    subject: str | None
    access: Literal["allow", "deny"]
    permission: Literal["read", "write", "readwrite"]
    filter: str

    @classmethod
    def of(cls, rule: AclRule) -> RuleOut:
        assert rule.id is not None
        return cls(
            id=rule.id,
            subject_kind=rule.subject_kind,
            subject=rule.subject,
            access=rule.access,
            permission=rule.permission,
            filter=rule.filter,
        )


class RuleCreate(BaseModel):
    """Exactly one of `user`, `role`, `anonymous: true`, `all: true` (as in the TOML
    `[[acl]]` tables), and `access`, `permission`, `filter`."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = None
    role: str | None = None
    anonymous: bool | None = None
    all: bool | None = None
    access: Literal["allow", "deny"]
    permission: Literal["read", "write", "readwrite"]
    filter: str = Field(description="topic filter: + and #, %u (username), %c (client id)")


class ConsumerOut(BaseModel):
    """A named consumer (the server-side cursor of WebSocket `ack` subscriptions)."""

    owner: str = Field(
        description='whose it is: "user:NAME", "anonymous:IP", or "" (from a store '
        "written before consumers had owners: the first identity to use it takes it over)"
    )
    name: str
    filter: str
    acked: int = Field(description="every message id up to this one was acknowledged")
    cursor: str = Field(description="EPOCH:ID of `acked`")
    attached: int = Field(description="live subscriptions using it now")
    last_used: float = Field(description="Unix seconds of the last subscribe, ack or detach")
    expires: float | None = Field(
        description="Unix seconds when it is forgotten if nobody uses it; null: while "
        "attached, or when consumer_idle_timeout is 0"
    )

    @classmethod
    def of(cls, c: Consumer, consumers: Consumers, epoch: str) -> ConsumerOut:
        timeout = consumers.idle_timeout
        expires = c.last_used + timeout if timeout > 0 and c.attached == 0 else None
        return cls(
            owner=c.owner,
            name=c.name,
            filter=c.filter,
            acked=c.acked,
            cursor=format_cursor(epoch, c.acked),
            attached=c.attached,
            last_used=c.last_used,
            expires=expires,
        )


# -- helpers --------------------------------------------------------------------------------


async def _auth(state: Annotated[HttpState, Depends(get_state)]) -> AuthService:
    return state.auth


AuthDep = Annotated[AuthService, Depends(_auth)]


def _store_error(exc: Exception) -> ApiError:
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", str(exc))
    return bad_request(str(exc))


_ADMIN_ERRORS = (NotFound, Conflict, ValueError, AclError)


# -- users ----------------------------------------------------------------------------------


@router.get("/users", summary="List users", response_model=list[UserOut], responses=_ERRORS)
async def list_users(_admin: AdminDep, auth: AuthDep) -> list[UserOut]:
    return [UserOut.of(u) for u in await auth.list_users()]


@router.post(
    "/users",
    summary="Add a user",
    status_code=201,
    response_model=UserOut,
    responses=_ERRORS | error_responses(409),
)
async def add_user(body: UserCreate, admin: AdminDep, auth: AuthDep) -> UserOut:
    try:
        info = await auth.add_user(body.name, body.password, body.roles)
    except _ADMIN_ERRORS as exc:
        raise _store_error(exc) from None
    log.info("admin %r added user %r", admin.identity.username, info.username)
    return UserOut.of(info)


@router.get("/users/{name}", summary="One user", response_model=UserOut, responses=_ERRORS_404)
async def get_user(name: str, _admin: AdminDep, auth: AuthDep) -> UserOut:
    for user in await auth.list_users():
        if user.username == name:
            return UserOut.of(user)
    raise ApiError(404, "not_found", f"no user {name!r}")


@router.put(
    "/users/{name}/password",
    summary="Set a user's password",
    status_code=204,
    response_class=Response,
    responses=_ERRORS_404,
)
async def set_password(name: str, body: PasswordChange, admin: AdminDep, auth: AuthDep) -> Response:
    """Existing connections stay; new logins need the new password."""
    try:
        await auth.set_password(name, body.password)
    except _ADMIN_ERRORS as exc:
        raise _store_error(exc) from None
    log.info("admin %r set the password of %r", admin.identity.username, name)
    return Response(status_code=204)


@router.put(
    "/users/{name}/roles",
    summary="Set a user's roles",
    response_model=UserOut,
    responses=_ERRORS_404,
)
async def set_roles(name: str, body: RolesChange, admin: AdminDep, auth: AuthDep) -> UserOut:
    """Applies to connections made from now on."""
    try:
        info = await auth.set_roles(name, body.roles)
    except _ADMIN_ERRORS as exc:
        raise _store_error(exc) from None
    log.info("admin %r set the roles of %r: %s", admin.identity.username, name, info.roles)
    return UserOut.of(info)


@router.delete(
    "/users/{name}",
    summary="Remove a user and its tokens",
    response_model=UserRemoved,
    responses=_ERRORS_404,
)
async def remove_user(name: str, admin: AdminDep, auth: AuthDep) -> UserRemoved:
    """The user's connections are closed, on every transport."""
    try:
        removed = await auth.remove_user(name)
    except _ADMIN_ERRORS as exc:
        raise _store_error(exc) from None
    log.info("admin %r removed user %r", admin.identity.username, name)
    return UserRemoved(name=name, tokens_removed=removed)


# -- tokens ---------------------------------------------------------------------------------


@router.get(
    "/tokens",
    summary="List tokens (never their secrets)",
    response_model=list[TokenOut],
    responses=_ERRORS,
)
async def list_tokens(
    _admin: AdminDep,
    auth: AuthDep,
    user: Annotated[str | None, Query(description="only this user's tokens")] = None,
) -> list[TokenOut]:
    return [TokenOut.of(t) for t in await auth.list_tokens(user)]


@router.post(
    "/tokens",
    summary="Create a token (its secret is in this reply only)",
    status_code=201,
    response_model=TokenCreated,
    responses=_ERRORS_404,
)
async def create_token(body: TokenCreate, admin: AdminDep, auth: AuthDep) -> JSONResponse:
    try:
        if body.expires is None:
            expires_in: float | None = None
        elif isinstance(body.expires, str):
            expires_in = parse_duration(body.expires)
        else:
            expires_in = float(body.expires)
        new = await auth.create_token(
            body.user, expires_in=expires_in, scope=body.scope, name=body.name
        )
    except _ADMIN_ERRORS as exc:
        raise _store_error(exc) from None
    log.info("admin %r created token %s for %r", admin.identity.username, new.info.id, body.user)
    out: dict[str, Any] = {"token": new.token, **TokenOut.of(new.info).model_dump()}
    return JSONResponse(out, status_code=201, headers={"Cache-Control": "no-store"})


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke a token",
    response_model=TokenOut,
    responses=_ERRORS_404,
)
async def revoke_token(token_id: str, admin: AdminDep, auth: AuthDep) -> TokenOut:
    """The token stops authenticating at once and the connections opened with it are
    closed, on every transport. It stays listed, with status `revoked`."""
    try:
        info = await auth.revoke_token(token_id)
    except _ADMIN_ERRORS as exc:
        raise _store_error(exc) from None
    log.info("admin %r revoked token %s", admin.identity.username, info.id)
    return TokenOut.of(info)


# -- ACL rules ------------------------------------------------------------------------------


@router.get("/acl", summary="List ACL rules", response_model=list[RuleOut], responses=_ERRORS)
async def list_rules(_admin: AdminDep, auth: AuthDep) -> list[RuleOut]:
    return [RuleOut.of(r) for r in await auth.list_rules()]


@router.post(
    "/acl",
    summary="Add an ACL rule",
    status_code=201,
    response_model=RuleOut,
    responses=_ERRORS | error_responses(409),
)
async def add_rule(body: RuleCreate, admin: AdminDep, auth: AuthDep) -> RuleOut:
    """Applies at once, to open connections too. Adding the first rule switches the server
    from "no rules: open" to default deny."""
    entry = body.model_dump(exclude_none=True)
    try:
        rule = await auth.add_rule(AclRule.from_config(entry))
    except _ADMIN_ERRORS as exc:
        raise _store_error(exc) from None
    log.info("admin %r added acl rule %s: %s", admin.identity.username, rule.id, rule)
    return RuleOut.of(rule)


@router.delete(
    "/acl/{rule_id}",
    summary="Remove an ACL rule",
    response_model=RuleOut,
    responses=_ERRORS_404,
)
async def remove_rule(rule_id: int, admin: AdminDep, auth: AuthDep) -> RuleOut:
    try:
        rule = await auth.remove_rule(rule_id)
    except _ADMIN_ERRORS as exc:
        raise _store_error(exc) from None
    log.info("admin %r removed acl rule %s: %s", admin.identity.username, rule.id, rule)
    return RuleOut.of(rule)


# -- named consumers ------------------------------------------------------------------------


@router.get(
    "/consumers",
    summary="List named consumers",
    response_model=list[ConsumerOut],
    responses=_ERRORS,
)
async def list_consumers(
    _admin: AdminDep,
    state: Annotated[HttpState, Depends(get_state)],
    owner: Annotated[
        str | None, Query(description='only this owner\'s ("user:NAME", "anonymous:IP")')
    ] = None,
) -> list[ConsumerOut]:
    consumers = state.log.consumers
    epoch = state.log.epoch
    return [ConsumerOut.of(c, consumers, epoch) for c in consumers.owned_by(owner)]


@router.delete(
    "/consumers",
    summary="Delete named consumers",
    response_model=list[ConsumerOut],
    responses=_ERRORS_404,
)
async def delete_consumers(
    admin: AdminDep,
    state: Annotated[HttpState, Depends(get_state)],
    owner: Annotated[str, Query(description='whose ("user:NAME", "anonymous:IP", or "")')],
    name: Annotated[str | None, Query(description="only the consumers of this name")] = None,
    filter: Annotated[str | None, Query(description="only the consumers on this filter")] = None,
) -> list[ConsumerOut]:
    """Forget the owner's consumers (all, or those of `name` and/or `filter`); 404 when
    none matched. A subscription using one keeps its messages flowing, but its acks are
    no longer recorded; the next subscribe with that name starts a new consumer."""
    consumers = state.log.consumers
    epoch = state.log.epoch
    gone = consumers.delete(owner, name, filter)
    if not gone:
        raise ApiError(404, "not_found", f"no consumer of {owner!r} matches")
    log.info("admin %r deleted %d consumers of %r", admin.identity.username, len(gone), owner)
    return [ConsumerOut.of(c, consumers, epoch) for c in gone]
