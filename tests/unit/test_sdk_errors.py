"""Error replies of the gateway become the typed exceptions of pushwire.client (no sockets)."""

from __future__ import annotations

import pytest

from pushwire.client import errors as e


@pytest.mark.parametrize(
    ("status", "reason", "cls"),
    [
        (400, "BadDeviceToken", e.BadDeviceToken),
        (400, "PayloadEmpty", e.PayloadEmpty),
        (400, "BadExpirationDate", e.BadExpirationDate),
        (400, "BadPriority", e.BadPriority),
        (400, "BadCollapseId", e.BadCollapseId),
        (400, "BadPushType", e.BadPushType),
        (400, "BadPayload", e.BadPayload),
        (400, "BadMessageId", e.BadMessageId),
        (400, "DuplicateMessageId", e.DuplicateMessageId),
        (404, "NotFound", e.NotFound),
        (413, "TooManyPushes", e.TooManyPushes),
        (403, "MissingProviderToken", e.MissingProviderToken),
        (403, "InvalidProviderToken", e.InvalidProviderToken),
        (403, "ExpiredProviderToken", e.ExpiredProviderToken),
        (403, "DeviceTokenNotForApp", e.DeviceTokenNotForApp),
        (410, "Unregistered", e.Unregistered),
        (413, "PayloadTooLarge", e.PayloadTooLarge),
        (429, "TooManyRequests", e.TooManyRequests),
    ],
)
def test_each_reason_has_its_class(status: int, reason: str, cls: type[e.PushError]) -> None:
    err = e.error_from_reply(status, {"reason": reason, "timestamp": 1764190000123})
    assert type(err) is cls
    assert isinstance(err, e.PushError)
    assert (err.reason, err.status, err.timestamp) == (reason, status, 1764190000123)


def test_too_many_requests_carries_retry_after() -> None:
    err = e.error_from_reply(429, {"reason": "TooManyRequests", "timestamp": 1}, "7")
    assert isinstance(err, e.TooManyRequests)
    assert err.retry_after == 7.0
    junk = e.error_from_reply(429, {"reason": "TooManyRequests"}, "Wed, 21 Oct 2015 07:28:00 GMT")
    assert isinstance(junk, e.TooManyRequests) and junk.retry_after is None


def test_unknown_reason_falls_back_to_status_class() -> None:
    err = e.error_from_reply(403, {"reason": "SomethingNew", "timestamp": 5})
    assert type(err) is e.Forbidden and err.reason == "SomethingNew"
    assert type(e.error_from_reply(418, {"reason": "Teapot"})) is e.PushError
    assert type(e.error_from_reply(503, None)) is e.ServerError
    assert type(e.error_from_reply(401, {"error": {"code": "unauthorized"}})) is e.Unauthorized


def test_project_error_body_and_hostile_bodies() -> None:
    err = e.error_from_reply(404, {"error": {"code": "not_found", "message": "no such push"}})
    assert type(err) is e.NotFound and err.reason == "not_found" and "no such push" in str(err)
    hostile: list[object] = [None, [], "x", {"reason": 5, "timestamp": "soon"}, {"timestamp": True}]
    for body in hostile:
        err = e.error_from_reply(400, body)
        assert type(err) is e.BadRequest and err.timestamp is None
