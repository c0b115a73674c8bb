"""Typed exceptions for the gateway's error replies (one class per APNs-style reason).

Every error reply of the provider API is ``{"reason": "...", "timestamp": <ms>}`` with a
4xx status; :func:`error_from_reply` turns it into the matching :class:`PushError` subclass.
A reason this SDK does not know yet still becomes a :class:`PushError` (never a crash).

Example::

    >>> err = error_from_reply(410, {"reason": "Unregistered", "timestamp": 1764190000123})
    >>> isinstance(err, Unregistered), err.reason, err.status, err.timestamp
    (True, 'Unregistered', 410, 1764190000123)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PushError(Exception):
    """A push request the gateway refused.

    ``reason`` is the gateway's reason string, ``status`` the HTTP status, ``timestamp``
    the gateway's time of the error in unix milliseconds (for :class:`Unregistered` it is the
    moment the token stopped being valid), or ``None`` when the reply had none.
    """

    default_status = 0

    def __init__(
        self,
        reason: str,
        status: int,
        timestamp: int | None = None,
        message: str | None = None,
    ) -> None:
        self.reason = reason
        self.status = status
        self.timestamp = timestamp
        super().__init__(message or f"{status} {reason}")


class BadRequest(PushError):
    """A 400 reply: the request itself was wrong."""


class BadDeviceToken(BadRequest):
    """The device token is malformed or unknown."""


class PayloadEmpty(BadRequest):
    """The push had no payload."""


class BadExpirationDate(BadRequest):
    """``Pushwire-Expiration`` is not a unix time."""


class BadPriority(BadRequest):
    """``Pushwire-Priority`` is not 10, 5 or 1."""


class BadCollapseId(BadRequest):
    """``Pushwire-Collapse-Id`` is longer than 64 bytes."""


class BadPushType(BadRequest):
    """``Pushwire-Push-Type`` is neither ``alert`` nor ``background``."""


class BadPayload(BadRequest):
    """The body is not a JSON object."""


class BadMessageId(BadRequest):
    """``Pushwire-Id`` is not a UUID."""


class DuplicateMessageId(BadRequest):
    """``Pushwire-Id`` was already used for another push."""


class Unauthorized(PushError):
    """401: a device credential (HTTP Basic) is missing or wrong."""


class Forbidden(PushError):
    """A 403 reply: the provider credential does not allow this."""


class MissingProviderToken(Forbidden):
    """No ``Authorization`` header was sent."""


class InvalidProviderToken(Forbidden):
    """The API key or JWT is not valid for any app."""


class ExpiredProviderToken(Forbidden):
    """The JWT's ``iat`` is older than one hour."""


class DeviceTokenNotForApp(Forbidden):
    """The device token belongs to another app."""


class NotFound(PushError):
    """A 404 reply (unknown push id, content or app)."""


class Unregistered(PushError):
    """410: the device token is no longer valid; ``timestamp`` says since when (ms)."""


class PayloadTooLarge(PushError):
    """413: the body exceeds the gateway's limit (4096 bytes by default)."""


class TooManyPushes(PayloadTooLarge):
    """413: a batch holds more pushes than the gateway allows (1000 by default)."""


class TooManyRequests(PushError):
    """429: slow down; ``retry_after`` is the server's ``Retry-After`` in seconds (or None)."""

    def __init__(
        self,
        reason: str,
        status: int,
        timestamp: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason, status, timestamp, message)
        self.retry_after = retry_after


class ServerError(PushError):
    """5xx: the gateway failed; the push may be retried with the same ``Pushwire-Id``."""


# reason -> class; a reason not listed falls back to the class of its status
REASONS: dict[str, type[PushError]] = {
    cls.__name__: cls
    for cls in (
        BadDeviceToken,
        PayloadEmpty,
        BadExpirationDate,
        BadPriority,
        BadCollapseId,
        BadPushType,
        BadPayload,
        BadMessageId,
        DuplicateMessageId,
        MissingProviderToken,
        InvalidProviderToken,
        ExpiredProviderToken,
        DeviceTokenNotForApp,
        NotFound,
        Unregistered,
        PayloadTooLarge,
        TooManyPushes,
        TooManyRequests,
    )
}

_BY_STATUS: dict[int, type[PushError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    410: Unregistered,
    413: PayloadTooLarge,
    429: TooManyRequests,
}


def _reason_and_message(body: Any) -> tuple[str | None, str | None, int | None]:
    """Read both error shapes: the gateway's ``{"reason", "timestamp"}`` and the project's
    ``{"error": {"code", "message"}}`` (used by the routes outside the push API)."""
    if not isinstance(body, Mapping):
        return None, None, None
    reason = body.get("reason")
    timestamp = body.get("timestamp")
    message: str | None = None
    error = body.get("error")
    if isinstance(error, Mapping):
        code, text = error.get("code"), error.get("message")
        reason = reason if isinstance(reason, str) else code if isinstance(code, str) else None
        message = text if isinstance(text, str) else None
    ts = (
        int(timestamp)
        if isinstance(timestamp, int | float) and not isinstance(timestamp, bool)
        else None
    )
    return (reason if isinstance(reason, str) else None), message, ts


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form; an HTTP date or junk gives None)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_reply(status: int, body: Any, retry_after: str | None = None) -> PushError:
    """The exception for one error reply (``body`` is the parsed JSON, or None if it was not
    JSON). Unknown reasons map by status; unknown statuses give :class:`PushError` or
    :class:`ServerError` for 5xx."""
    reason, message, timestamp = _reason_and_message(body)
    cls = REASONS.get(reason or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else PushError
    name = reason or f"HTTP{status}"
    if issubclass(cls, TooManyRequests):
        return cls(name, status, timestamp, message, retry_after=parse_retry_after(retry_after))
    return cls(name, status, timestamp, message)
