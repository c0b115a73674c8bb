"""Python SDKs for the pushwire device gateway (see docs/sdk.md).

- :class:`DeviceAgent` (asyncio): the device side, one MQTT connection for many apps.
- :class:`PushProvider` / :class:`AsyncPushProvider`: the provider side, on httpx.
"""

from pushwire.client.agent import AgentStats, DeviceAgent, Handler, HeartbeatLost
from pushwire.client.backoff import Backoff
from pushwire.client.credentials import CredentialsError, DeviceCredentials
from pushwire.client.dedup import DedupStore
from pushwire.client.errors import (
    BadCollapseId,
    BadDeviceToken,
    BadExpirationDate,
    BadMessageId,
    BadPayload,
    BadPriority,
    BadPushType,
    BadRequest,
    DeviceTokenNotForApp,
    DuplicateMessageId,
    ExpiredProviderToken,
    Forbidden,
    InvalidProviderToken,
    MissingProviderToken,
    NotFound,
    PayloadEmpty,
    PayloadTooLarge,
    PushError,
    ServerError,
    TooManyPushes,
    TooManyRequests,
    Unauthorized,
    Unregistered,
    error_from_reply,
)
from pushwire.client.heartbeat import Heartbeat
from pushwire.client.jwt_tokens import ProviderTokenFactory
from pushwire.client.notices import BadNotice, ContentRef, Push, parse_notice
from pushwire.client.provider import (
    AsyncPushProvider,
    BatchPush,
    BatchResult,
    PushProvider,
    PushStatus,
    WakeWebhook,
)
from pushwire.client.webhooks import sign_webhook, verify_webhook

__all__ = [
    "AgentStats",
    "AsyncPushProvider",
    "Backoff",
    "BadCollapseId",
    "BadDeviceToken",
    "BadExpirationDate",
    "BadMessageId",
    "BadNotice",
    "BadPayload",
    "BadPriority",
    "BadPushType",
    "BadRequest",
    "BatchPush",
    "BatchResult",
    "ContentRef",
    "CredentialsError",
    "DedupStore",
    "DeviceAgent",
    "DeviceCredentials",
    "DeviceTokenNotForApp",
    "DuplicateMessageId",
    "ExpiredProviderToken",
    "Forbidden",
    "Handler",
    "Heartbeat",
    "HeartbeatLost",
    "InvalidProviderToken",
    "MissingProviderToken",
    "NotFound",
    "PayloadEmpty",
    "PayloadTooLarge",
    "ProviderTokenFactory",
    "Push",
    "PushError",
    "PushProvider",
    "PushStatus",
    "ServerError",
    "TooManyPushes",
    "TooManyRequests",
    "Unauthorized",
    "Unregistered",
    "WakeWebhook",
    "error_from_reply",
    "parse_notice",
    "sign_webhook",
    "verify_webhook",
]
