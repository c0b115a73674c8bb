"""Who is calling, and may they: authentication and topic ACLs for every HTTP door.

Every HTTP endpoint (but `/v1/health` and the API description) resolves its caller with one
of the FastAPI dependencies below; the JSON WebSocket uses the same pieces before `accept()`.
Credentials, in the order they are looked for:

- `Authorization: Bearer <token>` -> `AuthService.authenticate_token`;
- `Authorization: Basic <base64 user:password>` (split on the first colon) ->
  `AuthService.authenticate_password` (the password may also be a token);
- `?auth=<token>` (poll, long-poll, SSE and the WebSocket only: where a browser cannot set
  headers) -> `authenticate_token`; sent together with an Authorization header it is a 400;
- nothing -> `AuthService.admit_anonymous(client ip)`.

A refusal is `401` with `WWW-Authenticate: Bearer realm="pushwire", Basic realm="pushwire"`
and the error model (`{"error": {"code": "unauthorized", "message"}}`); an address over its
failed-login budget gets `429` with `Retry-After`. Credentials are never logged or echoed:
messages come from `AuthResult.message`, which never contains them.

`Caller` bundles the identity, its cached `Permissions` and the client address; its `check_*`
methods raise the `403` (with the ACL decision's reason) that the routes answer with.

`LiveConnections` indexes the long-lived readers (held long-polls, SSE streams, WebSockets)
by token id and by username, so `AuthService.on_revoked` / `on_user_removed` can end them:
a long-poll is answered `401`, an SSE stream gets `event: close` (reason `revoked`) and ends,
a WebSocket is closed with 4403.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
from dataclasses import dataclass
from typing import Annotated, Final, Literal, Protocol

from fastapi import Depends, Security
from fastapi.openapi.models import APIKey, APIKeyIn, HTTPBase, HTTPBearer
from fastapi.security.base import SecurityBase
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection

from pushwire.core.auth import AuthService
from pushwire.core.identity import AuthResult, Identity
from pushwire.core.permissions import Permissions
from pushwire.http.errors import ApiError
from pushwire.tls import scope_certificate_name

log = logging.getLogger(__name__)

REALM: Final = "pushwire"
WWW_AUTHENTICATE: Final = f'Bearer realm="{REALM}", Basic realm="{REALM}"'
QUERY_PARAM: Final = "auth"


# -- OpenAPI: the security schemes (documentation only; parsing is done below) --------------


class _Scheme(SecurityBase):
    """A security scheme FastAPI lists in the OpenAPI description of every route that
    depends on it. Calling it does nothing: `resolve_caller` reads the credentials itself,
    so that WebSockets, `?auth=` and the error model work the same everywhere."""

    def __init__(self, model: HTTPBase | HTTPBearer | APIKey, scheme_name: str) -> None:
        self.model = model
        self.scheme_name = scheme_name

    async def __call__(self) -> None:
        # async on purpose: FastAPI runs plain `def` dependencies in a thread pool
        return None


BEARER_SCHEME: Final = _Scheme(
    HTTPBearer(description="an access token: `Authorization: Bearer pw_<id>_<secret>`"),
    "bearer",
)
BASIC_SCHEME: Final = _Scheme(
    HTTPBase(
        scheme="basic",
        description="a user's name and password (or an empty name and a token as password)",
    ),
    "basic",
)
_QUERY_DESCRIPTION: Final = (
    "an access token in the URL, for browsers (EventSource, WebSocket) that cannot set "
    "headers; poll, long-poll, SSE and WebSocket only. URLs end up in logs: prefer "
    "short-lived, narrowly scoped tokens"
)
QUERY_SCHEME: Final = _Scheme(
    APIKey.model_validate(
        {
            "in": APIKeyIn.query,
            "name": QUERY_PARAM,
            "description": _QUERY_DESCRIPTION,
        }
    ),
    "auth_query",
)


# -- credentials ----------------------------------------------------------------------------

CredentialKind = Literal["none", "bearer", "basic", "query"]


@dataclass(frozen=True, slots=True)
class Credentials:
    kind: CredentialKind
    username: str | None = None
    secret: str | None = None  # the token, or the password; never logged

    def __repr__(self) -> str:  # keep secrets out of tracebacks and debug output
        return f"Credentials({self.kind!r}, username={self.username!r})"


NO_CREDENTIALS: Final = Credentials("none")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": WWW_AUTHENTICATE})


def read_credentials(
    authorization: list[str], query: QueryParams, *, allow_query: bool
) -> Credentials:
    """The credentials of a request: its Authorization header(s) and `?auth=` values.
    Raises 401 for a malformed header, 400 for `?auth=` where it is not accepted or for
    credentials given twice."""
    tokens = query.getlist(QUERY_PARAM)
    if tokens and not allow_query:
        raise ApiError(
            400,
            "bad_request",
            f"?{QUERY_PARAM}= is accepted on poll, long-poll, SSE and WebSocket URLs only: "
            "send an Authorization header",
        )
    if len(authorization) > 1 or len(tokens) > 1 or (authorization and tokens):
        raise ApiError(
            400,
            "bad_request",
            f"send credentials once: one Authorization header or one ?{QUERY_PARAM}=",
        )
    if tokens:
        if not tokens[0]:
            raise unauthorized(f"empty ?{QUERY_PARAM}=")
        return Credentials("query", secret=tokens[0])
    if not authorization:
        return NO_CREDENTIALS
    scheme, _, value = authorization[0].strip().partition(" ")
    value = value.strip()
    kind = scheme.lower()
    if kind == "bearer":
        if not value:
            raise unauthorized("malformed Authorization header: Bearer needs a token")
        return Credentials("bearer", secret=value)
    if kind == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise unauthorized("malformed Authorization header: bad Basic credentials") from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise unauthorized("malformed Authorization header: Basic needs user:password")
        return Credentials("basic", username=username or None, secret=password)
    raise unauthorized("unsupported Authorization scheme: use Bearer or Basic")


async def authenticate(auth: AuthService, creds: Credentials, ip: str) -> AuthResult:
    if creds.kind == "none":
        return auth.admit_anonymous(ip)
    assert creds.secret is not None
    if creds.kind == "basic":
        return await auth.authenticate_password(creds.username, creds.secret, ip)
    return await auth.authenticate_token(creds.secret, ip)


def refusal(result: AuthResult) -> ApiError:
    """The HTTP answer to a failed `AuthResult`: 429 when rate limited, else 401."""
    if result.reason == "rate_limited":
        retry = max(1, math.ceil(result.retry_after or 1.0))
        return ApiError(429, "rate_limited", result.message, {"Retry-After": str(retry)})
    return unauthorized(result.message)


def client_ip(conn: HTTPConnection) -> str:
    """The client's address (uvicorn applies X-Forwarded-For from trusted proxies)."""
    return conn.client.host if conn.client is not None else ""


# -- the caller -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request or connection: who, with which topic rights, from where."""

    identity: Identity
    permissions: Permissions
    ip: str

    def check_publish(self, topic: str) -> None:
        permissions = self.permissions
        if permissions.can_publish(topic):
            return  # the cached answer (per topic; rebuilt when the rules change)
        decision = permissions.check_publish(topic)
        if not decision.allowed:
            raise ApiError(
                403, "forbidden", f"not allowed to publish to {topic!r}: {decision.reason}"
            )

    def check_subscribe(self, flt: str) -> None:
        decision = self.permissions.check_subscribe(flt)
        if not decision.allowed:
            raise ApiError(403, "forbidden", f"not allowed to read {flt!r}: {decision.reason}")

    def can_receive(self, topic: str) -> bool:
        return self.permissions.can_receive(topic)


def make_caller(auth: AuthService, identity: Identity, ip: str) -> Caller:
    # HTTP has no MQTT client id: rules using %c do not apply to HTTP callers
    return Caller(identity, auth.permissions(identity, None), ip)


def auth_service(conn: HTTPConnection) -> AuthService:
    service: AuthService = conn.app.state.pushwire.auth
    return service


async def resolve_caller(conn: HTTPConnection, *, allow_query: bool) -> Caller:
    """Authenticate a request (raises the 400/401/429 ApiError)."""
    return await caller_from(
        auth_service(conn),
        conn.headers.getlist("authorization"),
        conn.query_params,
        client_ip(conn),
        scope_certificate_name(conn.scope),
        allow_query=allow_query,
    )


async def caller_from(
    auth: AuthService,
    authorization: list[str],
    query: QueryParams,
    ip: str,
    cert_name: str | None,
    *,
    allow_query: bool,
) -> Caller:
    """Authenticate from the parts of a request, whichever server parsed it (the ASGI app
    or the owned protocol, http/connection.py). `cert_name`: the connection's verified client
    certificate CN, used when the request carries no other credentials."""
    creds = read_credentials(authorization, query, allow_query=allow_query)
    if creds.kind != "none":
        cert_name = None
    if cert_name is not None:
        # a client certificate the TLS layer verified, and no other credentials: its CN
        result = auth.authenticate_certificate(cert_name, ip)
    else:
        result = await authenticate(auth, creds, ip)
    return caller_of(auth, result, ip)


def caller_of(auth: AuthService, result: AuthResult, ip: str) -> Caller:
    """The caller `result` admitted, or its refusal raised (the 401/429 `ApiError`)."""
    if not result.ok or result.identity is None:
        raise refusal(result)
    return make_caller(auth, result.identity, ip)


_NO_QUERY: Final = QueryParams("")


def caller_now(auth: AuthService, authorization: str, ip: str) -> Caller | None:
    """`caller_from` for one `Authorization` header, without an await: the caller, or the
    same 400/401/429 `ApiError`; checked in full on every call (a token's expiry, its
    revocation, the failed-login budget: `AuthService.authenticate_token_now`). None when
    the check would have to wait (a password: its hash runs in a thread), with nothing
    done: only a Bearer token is checked here."""
    scheme, _, _ = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    creds = read_credentials([authorization], _NO_QUERY, allow_query=False)
    assert creds.kind == "bearer" and creds.secret is not None
    return caller_of(auth, auth.authenticate_token_now(creds.secret, ip), ip)


class CallerCache:
    """One connection's last anonymous caller (the owned protocol keeps one per connection).

    Admitting an anonymous client depends only on the `anonymous` setting, the users of the
    auth snapshot and the client's address, which is fixed for the connection: the answer
    is reused while the snapshot is the same object. Any change to users, tokens or rules
    replaces the snapshot (`AuthService.reload`), so the next request asks again. Requests
    with credentials are not cached: tokens expire by time and failed-login budgets apply
    per request. The admission counter still counts every request, as without the cache."""

    __slots__ = ("caller", "snapshot")

    def __init__(self) -> None:
        self.caller: Caller | None = None
        self.snapshot: object = None

    def anonymous(self, auth: AuthService) -> Caller | None:
        caller = self.caller
        if caller is None or self.snapshot is not auth.snapshot:
            return None
        auth.stats.anonymous_admitted += 1
        return caller

    def keep(self, auth: AuthService, snapshot: object, caller: Caller) -> None:
        if caller.identity.anonymous:
            self.caller = caller
            self.snapshot = snapshot


async def cached_caller_from(
    auth: AuthService,
    cache: CallerCache | None,
    authorization: list[str],
    query: QueryParams,
    ip: str,
    cert_name: str | None,
) -> Caller:
    """`caller_from` for a publish (headers only), with the connection's `cache`."""
    if cache is None:
        return await caller_from(auth, authorization, query, ip, cert_name, allow_query=False)
    if not authorization and cert_name is None and (QUERY_PARAM not in query):
        found = cache.anonymous(auth)
        if found is not None:
            return found
    snapshot = auth.snapshot
    caller = await caller_from(auth, authorization, query, ip, cert_name, allow_query=False)
    if not authorization and cert_name is None:
        cache.keep(auth, snapshot, caller)
    return caller


async def caller_dependency(
    conn: HTTPConnection,
    _bearer: Annotated[None, Security(BEARER_SCHEME)],
    _basic: Annotated[None, Security(BASIC_SCHEME)],
) -> Caller:
    """Endpoints that take headers only (publish, metrics)."""
    return await resolve_caller(conn, allow_query=False)


async def reader_dependency(
    conn: HTTPConnection,
    _bearer: Annotated[None, Security(BEARER_SCHEME)],
    _basic: Annotated[None, Security(BASIC_SCHEME)],
    _query: Annotated[None, Security(QUERY_SCHEME)],
) -> Caller:
    """Reading endpoints (poll, long-poll, SSE): headers or `?auth=`."""
    return await resolve_caller(conn, allow_query=True)


async def admin_dependency(
    conn: HTTPConnection,
    _bearer: Annotated[None, Security(BEARER_SCHEME)],
    _basic: Annotated[None, Security(BASIC_SCHEME)],
) -> Caller:
    """The admin API: an identity with admin rights (role `admin`, and `admin` in a
    token's scope when it has one). Anonymous: 401; anyone else: 403."""
    caller = await resolve_caller(conn, allow_query=False)
    if caller.identity.anonymous:
        raise unauthorized("the admin API needs credentials")
    if not caller.identity.is_admin:
        why = (
            "the token's scope does not include admin"
            if caller.identity.scope and "admin" in caller.identity.roles
            else "the admin API needs the admin role"
        )
        raise ApiError(403, "forbidden", why)
    return caller


CallerDep = Annotated[Caller, Depends(caller_dependency)]
ReaderDep = Annotated[Caller, Depends(reader_dependency)]
AdminDep = Annotated[Caller, Depends(admin_dependency)]


# -- revocation -----------------------------------------------------------------------------


class Revocable(Protocol):
    """A long-lived reader that can be ended when its credentials stop being valid."""

    def revoke(self, reason: str) -> None: ...


class LiveConnections:
    """Held long-polls, SSE streams and WebSockets by token id and username (as
    `MQTTBroker` keeps MQTT connections), ended when `AuthService` reports the token revoked
    or expired, or the user removed. Anonymous callers are not tracked."""

    def __init__(self, auth: AuthService) -> None:
        self.auth = auth
        self._by_token: dict[str, set[Revocable]] = {}
        self._by_user: dict[str, set[Revocable]] = {}
        self.revoked_total = 0
        auth.on_revoked(self.token_revoked)
        auth.on_user_removed(self.user_removed)

    def __len__(self) -> int:
        return len({c for conns in self._by_user.values() for c in conns})

    def alive(self, identity: Identity) -> bool:
        """False when the identity's token or user is gone from the current snapshot
        (revoked between authenticating and registering: the callback has already fired)."""
        if identity.username is None:
            return True
        snap = self.auth.snapshot
        if identity.token_id is not None:
            token = snap.tokens.get(identity.token_id)
            if token is None or not token.active(self.auth.clock()):
                return False
        if identity.username in snap.users:
            return True
        devices = self.auth.devices  # a registered push device is no user, but alive
        return devices is not None and devices.owns(identity.username)

    def track(self, identity: Identity, conn: Revocable) -> bool:
        """Register `conn`; False (and not registered) when the identity is already dead."""
        if identity.username is None:
            return True
        if not self.alive(identity):
            return False
        if identity.token_id is not None:
            self._by_token.setdefault(identity.token_id, set()).add(conn)
        self._by_user.setdefault(identity.username, set()).add(conn)
        return True

    def untrack(self, identity: Identity, conn: Revocable) -> None:
        for index, key in ((self._by_token, identity.token_id), (self._by_user, identity.username)):
            if key is None:
                continue
            conns = index.get(key)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del index[key]

    def token_revoked(self, token_id: str) -> None:
        conns = list(self._by_token.get(token_id, ()))
        if conns:
            log.info("ending %d http reader(s) of revoked/expired token %s", len(conns), token_id)
        self._end(conns, "the access token was revoked or expired")

    def user_removed(self, username: str) -> None:
        conns = list(self._by_user.get(username, ()))
        if conns:
            log.info("ending %d http reader(s) of removed user %r", len(conns), username)
        self._end(conns, "the user was removed")

    def _end(self, conns: list[Revocable], reason: str) -> None:
        for conn in conns:
            self.revoked_total += 1
            try:
                conn.revoke(reason)
            except Exception:
                log.exception("ending a revoked http reader failed")
