"""`AuthService.authenticate_token_now`, the synchronous token check the HTTP publish lane
uses (http/auth.py `caller_now`), is the async `authenticate_token`'s one implementation:
the same answers (ok, unknown, revoked, rate limited), counted the same; and `caller_now`
turns them into the caller or the same 401/429 `ApiError` as `caller_from`."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from pushwire.core.auth import AuthService
from pushwire.core.auth_settings import AuthSettings
from pushwire.core.passwords import Passwords
from pushwire.engines.auth_store import MemoryAuthStore
from pushwire.http.auth import caller_from, caller_now
from pushwire.http.errors import ApiError


def _service() -> AuthService:
    passwords = Passwords(time_cost=1, memory_cost_kib=8, parallelism=1)
    return AuthService(MemoryAuthStore(), AuthSettings(login_failures_burst=2), passwords=passwords)


async def test_the_synchronous_check_answers_and_counts_as_the_async_one() -> None:
    service = _service()
    await service.add_user("alice", "a long enough password", ["ops"])
    token = (await service.create_token("alice")).token
    now = service.authenticate_token_now(token, "10.0.0.1")
    later = await service.authenticate_token(token, "10.0.0.1")
    assert now.ok and later.ok and now.identity == later.identity
    assert service.stats.logins_ok == 2
    wrong = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    answers = [service.authenticate_token_now(wrong, "10.0.0.2") for _ in range(2)]
    answers.append(await service.authenticate_token(wrong, "10.0.0.2"))
    assert [a.reason for a in answers] == ["bad_credentials", "bad_credentials", "rate_limited"]
    assert service.stats.logins_failed == 2  # one budget, whichever form took the attempt


async def test_caller_now_is_caller_from_for_a_bearer_header() -> None:
    service = _service()
    await service.add_user("alice", "a long enough password")
    new = await service.create_token("alice")
    header = f"Bearer {new.token}"
    caller = caller_now(service, header, "10.0.0.1")
    assert caller is not None and caller.identity.username == "alice"
    slow = await caller_from(
        service, [header], QueryParams(""), "10.0.0.1", None, allow_query=False
    )
    assert slow.identity == caller.identity
    assert caller_now(service, "Basic YTpi", "10.0.0.1") is None  # a password: the long way
    await service.revoke_token(new.info.id)
    with pytest.raises(ApiError) as refused:
        caller_now(service, header, "10.0.0.1")
    assert refused.value.status == 401
    with pytest.raises(ApiError) as empty:
        caller_now(service, "Bearer ", "10.0.0.1")
    assert empty.value.status == 401
