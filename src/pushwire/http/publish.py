"""Publishing over HTTP: raw body, JSON form, batch. Every message goes through
`hub.publish`, so MQTT subscribers get it (with the QoS and retain asked for) and the log
observer gives it its id; the reply comes only once it is durable (write before ack)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from pushwire.core.log import format_cursor
from pushwire.core.message import Message, next_uid
from pushwire.core.receipt import Receipt
from pushwire.core.text import JsonError, TextError, check_text, parse_json
from pushwire.core.topics import TopicError, validate_topic_name
from pushwire.engines.base import WriteError
from pushwire.http.auth import Caller, CallerCache, cached_caller_from, caller_now
from pushwire.http.cursor import parse_duration
from pushwire.http.encode import PRIORITY_PROPERTY
from pushwire.http.endpoints import Endpoint, Header, Option, api_error_response
from pushwire.http.errors import ApiError, bad_request, bad_topic, error_responses
from pushwire.http.state import HttpState
from pushwire.http.wire import JSON_ENCODER as _JSON_ENCODER
from pushwire.http.wire import WireRequest, WireResponse, json_response

log = logging.getLogger(__name__)

PRIORITY_NAMES = {"min": 1, "low": 2, "default": 3, "normal": 3, "high": 4, "max": 5, "urgent": 5}
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class PublishResult(BaseModel):
    id: int | None = Field(
        description="the message's id in the log (null for `$` topics, which are not logged)"
    )
    topic: str
    epoch: str = Field(description="the log's epoch (see since=)")
    time: float = Field(description="when the message was published, Unix seconds")
    cursor: str | None = Field(description="`EPOCH:ID`: resume right after this message")
    stored: bool = Field(
        description="false when the store refused to keep this message (status 202): it "
        "reached live subscribers and has an id, but a restart loses it, and a reader whose "
        "cursor crosses its id is told of a gap"
    )


class PublishRequest(BaseModel):
    """One message of the JSON form (`POST /v1/publish`, alone or in a batch array)."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(description="topic name (no wildcards)")
    payload: str | None = Field(None, description="payload as UTF-8 text")
    payload_base64: str | None = Field(None, description="payload as base64 (binary)")
    content_type: str | None = Field(None, description="kept as the MQTT 5 content type")
    qos: int = Field(0, ge=0, le=2, description="QoS for MQTT subscribers")
    retain: bool = Field(False, description="retain for MQTT subscribers")
    ttl: float | str | None = Field(
        None, description="expire after this long: seconds or a duration (10m)"
    )
    priority: int | str | None = Field(
        None, description="1..5 or min, low, default, high, max (kept as a user property)"
    )


_REQUEST_SCHEMA = PublishRequest.model_json_schema()
_BATCH_ADAPTER: TypeAdapter[list[PublishRequest]] = TypeAdapter(list[PublishRequest])


@dataclass(slots=True)
class PublishSpec:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    ttl: float | None = None
    priority: int | None = None
    content_type: str | None = None


# -- validation shared with the WebSocket protocol ---------------------------------------


# topics that passed `check_topic`, per level limit: a publisher reuses its topics, and the
# answer depends on nothing else (bounded; oldest out)
_CHECKED_TOPICS: dict[tuple[str, int], None] = {}
_CHECKED_TOPICS_MAX = 4096


def check_topic(topic: str, max_levels: int) -> None:
    key = (topic, max_levels)
    if key in _CHECKED_TOPICS:
        return
    _check_topic(topic, max_levels)
    if len(_CHECKED_TOPICS) >= _CHECKED_TOPICS_MAX:
        del _CHECKED_TOPICS[next(iter(_CHECKED_TOPICS))]
    _CHECKED_TOPICS[key] = None


def _check_topic(topic: str, max_levels: int) -> None:
    try:
        check_text(topic, "topic")
        validate_topic_name(topic, max_levels)
    except TextError as exc:
        raise bad_topic(str(exc)) from None
    except TopicError as exc:
        raise bad_topic(f"{exc}: {topic!r}") from None
    if topic.startswith("$SYS") or topic.startswith("$share"):
        raise ApiError(403, "forbidden", f"cannot publish to the reserved topic {topic!r}")


def parse_bool(value: str | bool | None, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise bad_request(f"{name} must be true or false, not {value!r}")


def parse_qos(value: str | int | None) -> int:
    if value is None or value == "":
        return 0
    try:
        qos = int(value)
    except ValueError:
        raise bad_request(f"qos must be 0, 1 or 2, not {value!r}") from None
    if qos not in (0, 1, 2):
        raise bad_request(f"qos must be 0, 1 or 2, not {value!r}")
    return qos


def parse_ttl(value: str | float | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        ttl = float(value) if isinstance(value, int | float) else parse_duration(value)
    except ValueError as exc:
        raise bad_request(f"ttl: {exc}") from None
    if not ttl > 0 or ttl > 10 * 365 * 86400:
        raise bad_request(f"ttl must be a positive duration, not {value!r}")
    return ttl


def parse_priority(value: str | int | None) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        v = value.strip().lower()
        if v in PRIORITY_NAMES:
            return PRIORITY_NAMES[v]
        if not v.isdigit():
            raise bad_request(f"priority must be 1..5 or min/low/default/high/max: {value!r}")
        value = int(v)
    if isinstance(value, bool) or not 1 <= value <= 5:
        raise bad_request(f"priority must be 1..5 or min/low/default/high/max: {value!r}")
    return value


def optional_text(value: str | None, what: str) -> str | None:
    """A client's text (header, option) checked like every other text (core/text.py)."""
    if value is None:
        return None
    try:
        return check_text(value, what)
    except TextError as exc:
        raise bad_request(str(exc)) from None


def spec_from_request(req: PublishRequest, max_payload: int, max_levels: int) -> PublishSpec:
    # every text is checked before anything is routed: a lone surrogate would be routed,
    # logged, and then fail in the store and in every reader that reaches it
    check_topic(req.topic, max_levels)
    optional_text(req.payload, "payload")
    optional_text(req.content_type, "content_type")
    if req.payload is not None and req.payload_base64 is not None:
        raise bad_request("give payload or payload_base64, not both")
    if req.payload_base64 is not None:
        try:
            payload = base64.b64decode(req.payload_base64, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("payload_base64 is not valid base64") from None
    else:
        payload = (req.payload or "").encode("utf-8")
    if len(payload) > max_payload:
        raise payload_too_large(len(payload), max_payload)
    return PublishSpec(
        topic=req.topic,
        payload=payload,
        qos=req.qos,
        retain=req.retain,
        ttl=parse_ttl(req.ttl),
        priority=parse_priority(req.priority),
        content_type=req.content_type or None,
    )


def charge_publish(state: HttpState, caller: Caller | None, count: int) -> None:
    """The caller's publish rate (`publish_rate_per_client`): 429 with Retry-After when it is
    used up. A batch costs one token per message (at most a full bucket)."""
    limiter = state.publish_rate
    if limiter is None or caller is None:
        return
    identity = caller.identity
    key = identity.token_id or identity.username or f"ip:{caller.ip}"
    cost = min(float(count), limiter.burst)
    if not limiter.try_acquire(key, cost):
        state.stats.rate_limited += 1
        wait = max(1, int(limiter.retry_after(key, cost) + 0.999))
        raise ApiError(
            429,
            "rate_limited",
            f"publish rate limit: {limiter.rate:g} messages per second",
            {"Retry-After": str(wait)},
        )


# `curl -d` sends this header on its own; nobody publishes a form on purpose, and MQTT 5
# subscribers would see it as the message's content type
_CURL_DEFAULT_CONTENT_TYPE = "application/x-www-form-urlencoded"


def given_content_type(header: str | None) -> str | None:
    """The raw publish's content type as the user meant it: none when absent or when it is
    the form type `curl -d` adds by itself (a bare `curl -d goal` publishes plain text)."""
    if not header:
        return None
    if header.split(";")[0].strip().lower() == _CURL_DEFAULT_CONTENT_TYPE:
        return None
    return header


def payload_too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"payload of {size} bytes is over {limit} bytes")


# -- publishing ---------------------------------------------------------------------------


def route(state: HttpState, spec: PublishSpec, origin: str) -> Receipt:
    """Hand one message to the hub (MQTT sessions + log, or the broker)."""
    props: dict[str, Any] = {}
    if spec.content_type:
        props["content_type"] = spec.content_type
    if spec.priority is not None:
        props["user_property"] = [(PRIORITY_PROPERTY, str(spec.priority))]
    now = time.time()
    message = Message(
        topic=spec.topic,
        payload=spec.payload,
        qos=spec.qos,
        retain=spec.retain,
        properties=props,
        expires_at=now + spec.ttl if spec.ttl is not None else None,
        created_at=now,
        origin=origin,
    )
    return state.hub.submit(message)


async def make_durable(receipts: list[Receipt]) -> None:
    """Write before acknowledging: wait for the receipts' durability (one shared commit).

    Whether each message was stored is asked afterwards (`result`): a write the store
    refused fails alone, and is not an error for the others of its commit."""
    waits = {id(r.durable): r.durable for r in receipts if r.durable is not None}
    for durable in waits.values():
        try:
            await durable
        except WriteError as exc:
            # a write of no message (a log trim, a consumer cursor) failed: not ours
            log.warning("store: %s", exc)
        except Exception as exc:
            # the engine could not tell (it is stopping): say so, without its details
            log.error("store: sync failed", exc_info=exc)
            raise ApiError(
                503, "not_durable", "the store could not confirm the write; try again"
            ) from None


def result(state: HttpState, message: Message) -> dict[str, Any]:
    epoch = state.log.epoch
    lid = message.log_id
    return {
        "id": lid,
        "topic": message.topic,
        "epoch": epoch,
        "time": round(message.created_at, 3),
        "cursor": format_cursor(epoch, lid) if lid is not None else None,
        "stored": not state.hub.engine.write_failed(message),
    }


async def publish_specs(
    state: HttpState, specs: list[PublishSpec], origin: str, transport: str
) -> list[Message]:
    """Publish `specs` in order and wait until they may be acknowledged. A batch's fan-out
    is paced over loop turns as an MQTT read's is (mqtt/reading.py): once a turn's
    `fanout_deliveries_per_turn` deliveries are spent, the rest waits for the next turn,
    so the writes of the fan-out go out and other clients are served in between. (With a
    broker, engine=redis, nothing is routed here: the fan-out reader paces what comes
    back, core/pacing.py.)"""
    hub = state.hub
    budget = state.settings.fanout_deliveries_per_turn
    spent_at = hub.routed + budget
    receipts = []
    for spec in specs:
        if hub.routed >= spent_at:
            await asyncio.sleep(0)  # one loop turn
            spent_at = hub.routed + budget
        receipts.append(route(state, spec, origin))
    messages = [r.message for r in receipts]
    state.stats.messages_in[transport] += len(specs)
    await make_durable(receipts)
    if any(r.refused() for r in receipts):
        # engine=redis and Redis did not take it: it reached nobody (never a false ack)
        raise ApiError(503, "store_unavailable", "the message store is unreachable; try again")
    await state.hub.wait_store()  # the store's write backlog is bounded: wait for the disk
    return messages


# the JSON of a topic and of an epoch, as `json_response` would write them (bounded)
_JSON_STRINGS: dict[str, str] = {}
_JSON_STRINGS_MAX = 4096


def _json_string(text: str) -> str:
    encoded = _JSON_STRINGS.get(text)
    if encoded is None:
        encoded = _JSON_ENCODER.encode(text)
        if len(_JSON_STRINGS) >= _JSON_STRINGS_MAX:
            del _JSON_STRINGS[next(iter(_JSON_STRINGS))]
        _JSON_STRINGS[text] = encoded
    return encoded


def result_response(state: HttpState, message: Message) -> WireResponse:
    """The reply to a single publish: the bytes `json_response(_status(...), result(...))`
    gives, written without building the dict (the hot path of every raw publish)."""
    lid = message.log_id
    stored = not state.hub.engine.write_failed(message)
    if lid is None:
        body = result(state, message)
        return json_response(_status([body]), body)
    epoch = _json_string(state.log.epoch)
    return WireResponse(
        201 if stored else 202,
        (
            f'{{"id":{lid},"topic":{_json_string(message.topic)},"epoch":{epoch},'
            f'"time":{round(message.created_at, 3)!r},"cursor":{epoch[:-1]}:{lid}",'
            f'"stored":{"true" if stored else "false"}}}'
        ).encode(),
    )


def json_body_limit(max_payload: int) -> int:
    """Largest JSON-form body: one payload as base64 or escaped text, plus the envelope
    (a batch shares it; each payload is also checked on its own)."""
    return 4 * max_payload + 65536


def _status(results: list[dict[str, Any]]) -> int:
    """201 when every message is in the log; 202 when the store refused one (`stored`
    false: routed, not kept); 200 for `$` topics, which are not logged."""
    if not all(r["stored"] for r in results):
        return 202
    return 201 if all(r["id"] is not None for r in results) else 200


# -- routes -------------------------------------------------------------------------------

_RAW_BODY = {
    "requestBody": {
        "description": "the payload, as is (any Content-Type; it is kept as the message's "
        "content type)",
        "required": False,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": {"type": "string"}},
            "*/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

_JSON_BODY = {
    "requestBody": {
        "description": "one message, or an array of them (a batch, all validated before any "
        "is published)",
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _REQUEST_SCHEMA,
                        {"type": "array", "items": _REQUEST_SCHEMA},
                    ]
                }
            }
        },
    }
}

_PUBLISH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PublishResult, "description": "routed; not logged (`$` topic)"},
    201: {"model": PublishResult, "description": "routed and appended to the log"},
    202: {
        "model": PublishResult,
        "description": "routed to live subscribers, but the store refused to keep it "
        "(`stored`: false); not an error, and not worth a retry",
    },
    **error_responses(400, 401, 403, 413, 429, 503),
}


PUBLISH_RAW = Endpoint(
    path="/v1/publish/{topic}",
    param="topic",
    operations=(("POST", "publish_post"), ("PUT", "publish_put")),
    summary="Publish the request body to a topic",
    description="The body is the payload, byte for byte. Options come as query parameters "
    "or as\n`Pushwire-*` headers (the query wins). `Content-Type` is kept as the message's "
    "content\ntype (MQTT 5 subscribers see it), except `application/x-www-form-urlencoded`, "
    "which\n`curl -d` sends by itself and is taken as no content type. Answers once the "
    "message is\ndurable. 403 when the topic ACL does not let the caller write to the topic.",
    tag="publish",
    security="headers",
    options=(
        Option("retain", "retain for MQTT (true/false)", "Pushwire-Retain"),
        Option("qos", "QoS for MQTT subscribers: 0, 1, 2", "Pushwire-QoS"),
        Option("ttl", "expiry: seconds or a duration (10m)", "Pushwire-TTL"),
        Option("priority", "1..5 or min..max", "Pushwire-Priority"),
    ),
    headers=(Header("Content-Type"),),
    request_body=_RAW_BODY["requestBody"],
    responses=_PUBLISH_RESPONSES,
)


def raw_body_limit(state: HttpState) -> int:
    return state.settings.http_max_payload


async def publish_raw(
    state: HttpState, request: WireRequest, options: Mapping[str, str | None]
) -> WireResponse:
    """`POST|PUT /v1/publish/{topic}` (declared by `PUBLISH_RAW`), from either server."""
    authorization = request.header_list(b"authorization")
    callers = request.callers
    caller = (
        callers.anonymous(state.auth)  # the connection's anonymous caller, without an await
        if callers is not None
        and not authorization
        and request.cert_name is None
        and not request.query_string
        else None
    )
    if caller is None:
        caller = await cached_caller_from(
            state.auth, callers, authorization, request.query, request.ip, request.cert_name
        )
    topic = request.path_tail
    check_topic(topic, state.settings.max_topic_levels)
    caller.check_publish(topic)  # before the body is looked at
    spec = PublishSpec(
        topic=topic,
        payload=b"",
        qos=parse_qos(options["qos"]),
        retain=parse_bool(options["retain"], "retain"),
        ttl=parse_ttl(options["ttl"]),
        priority=parse_priority(options["priority"]),
        content_type=given_content_type(optional_text(options["content-type"], "Content-Type")),
    )
    charge_publish(state, caller, 1)
    if request.oversize:
        raise payload_too_large(request.oversize, state.settings.http_max_payload)
    spec.payload = request.body
    receipt = route(state, spec, "http")
    state.stats.messages_in["http"] += 1
    return await acknowledge(state, receipt)


async def acknowledge(state: HttpState, receipt: Receipt) -> WireResponse:
    """The reply to one raw publish once it may be given: `publish_specs` for one message,
    without its awaits when there is nothing to wait for (no durable engine, or nothing
    journaled; the store not backlogged)."""
    if receipt.durable is not None:
        await make_durable([receipt])
    if receipt.refused():
        # engine=redis and Redis did not take it: it reached nobody (never a false ack)
        raise ApiError(503, "store_unavailable", "the message store is unreachable; try again")
    if state.hub.store_held:
        await state.hub.wait_store()
    return result_response(state, receipt.message)


_UNKNOWN = "\0unknown"  # not a content type anyone can send (a NUL is refused)


class LaneRefusal:
    """What `PublishLane.admit` answers for a request it checked and refused (a Bearer
    token's 401/429, the topic's 400, the ACL's 403): `run` answers `error`, so the check
    is not made twice (a failed login counts once)."""

    __slots__ = ("error",)

    def __init__(self, error: ApiError) -> None:
        self.error = error


class PublishLane:
    """`publish_raw`'s common case as two synchronous calls on the owned protocol's publish
    path (http/routes.py `Lane`): a request whose only headers are in `headers` (no
    `Pushwire-*` options, no query string: the protocol checks), either anonymous from a
    connection whose anonymous caller is cached, to a valid topic the caller may write to,
    or with one `Authorization: Bearer` header (the token checked on every request, as
    `publish_raw` does, and its refusals answered here). Everything else (a password, a
    first anonymous request, a refused anonymous one) goes through `publish_raw`, which
    says why; so there is one set of rules, and this is its shortcut.

    `admit` (at the end of the head) answers the caller, or None for "ask `publish_raw`";
    `run` (with the body) publishes and answers the reply body of a 201, a `WireResponse`
    for anything else, or a coroutine when the reply must wait (the store's sync, its
    backlog): the protocol runs it and replies when it finishes."""

    # headers a lane request may carry: the ones it reads (content-type, content-length,
    # authorization) and ones no publish looks at; anything else goes to `publish_raw`
    headers = frozenset(
        (
            b"host",
            b"authorization",
            b"content-length",
            b"content-type",
            b"user-agent",
            b"accept",
            b"accept-encoding",
            b"connection",
        )
    )

    __slots__ = (
        "_content_types",
        "_ms",
        "_replies",
        "_time",
        "_topics",
        "engine",
        "hub",
        "max_levels",
        "state",
    )

    def __init__(self, state: HttpState) -> None:
        self.state = state
        self.hub = state.hub
        self.engine = state.hub.engine
        # per topic: (epoch, the reply's JSON between the id and the time, the cursor's
        # start); bounded, oldest out
        self._replies: dict[str, tuple[str, bytes, bytes]] = {}
        self.max_levels = state.settings.max_topic_levels
        # topics `check_topic` passed (bounded, oldest out)
        self._topics: dict[str, None] = {}
        self._ms = 0  # the millisecond of `_time`
        self._time = b""
        # Content-Type header -> the message's content type (`given_content_type` of the
        # checked text); bounded, oldest out
        self._content_types: dict[bytes, str | None] = {}

    def admit(
        self,
        callers: CallerCache | None,
        topic: str,
        authorization: bytes | None,
        client: tuple[str, int] | None,
    ) -> Caller | LaneRefusal | None:
        if authorization is not None:
            return self._admit_credentials(topic, authorization, client)
        if callers is None:
            return None  # the connection's first request finds its caller the long way
        caller = callers.caller
        if caller is None:
            return None
        auth = self.state.auth
        if callers.snapshot is not auth.snapshot:
            return None
        if topic not in self._topics:
            try:
                self._check_topic(topic)
            except ApiError:
                return None
        if not caller.permissions.can_publish(topic):
            return None
        auth.stats.anonymous_admitted += 1  # as `CallerCache.anonymous` counts it
        return caller

    def _admit_credentials(
        self, topic: str, authorization: bytes, client: tuple[str, int] | None
    ) -> Caller | LaneRefusal | None:
        """`publish_raw`'s checks in its order (the caller, the topic, the ACL) for a
        request with credentials, when they need no wait (a Bearer token)."""
        try:
            caller = caller_now(
                self.state.auth,
                authorization.decode("latin-1"),
                client[0] if client is not None else "",
            )
            if caller is None:
                return None  # a password (or an unknown scheme): `publish_raw`
            if topic not in self._topics:
                self._check_topic(topic)
            caller.check_publish(topic)
        except ApiError as exc:
            return LaneRefusal(exc)
        return caller

    def _check_topic(self, topic: str) -> None:
        """`check_topic`, remembered when it passes (bounded, oldest out)."""
        check_topic(topic, self.max_levels)
        if len(self._topics) >= _CHECKED_TOPICS_MAX:
            del self._topics[next(iter(self._topics))]
        self._topics[topic] = None

    def run(
        self, caller: Caller | LaneRefusal, topic: str, content_type: bytes | None, body: bytes
    ) -> bytes | WireResponse | Coroutine[Any, Any, WireResponse]:
        state = self.state
        if isinstance(caller, LaneRefusal):
            return api_error_response(state, caller.error)
        ctype: str | None = None
        try:
            if content_type is not None:
                ctype = self._content_types.get(content_type, _UNKNOWN)
                if ctype is _UNKNOWN:
                    ctype = self._content_type(content_type)
            if state.publish_rate is not None:
                charge_publish(state, caller, 1)
        except ApiError as exc:
            return api_error_response(state, exc)
        now = time.time()
        message = Message(
            topic,
            body,
            0,
            False,
            {"content_type": ctype} if ctype else {},
            None,
            now,
            next_uid(),
            None,
            "http",
        )
        hub = self.hub
        # `hub.submit` without its `Receipt` when there is nothing to wait for
        journaled = hub.publish(message)
        state.stats.messages_in["http"] += 1
        if (journaled and self.engine.durable) or hub.store_held or hub.broker is not None:
            durable = hub.sync_future() if journaled and self.engine.durable else None
            receipt = Receipt(message, durable, hub)
            return self._acknowledge(receipt)
        lid = message.log_id
        if lid is None or self.engine.write_failed(message):
            return result_response(state, message)
        epoch = state.log.epoch
        reply = self._replies.get(topic)
        if reply is None or reply[0] != epoch:
            reply = self._reply(topic, epoch)
        ms = int(now * 1000.0 + 0.5)
        if ms != self._ms:
            # `round(created_at, 3)` as JSON, once per millisecond (repr is the costly part)
            self._ms = ms
            self._time = repr(round(now, 3)).encode()
        return b'{"id":%d%b%b%b%d","stored":true}' % (lid, reply[1], self._time, reply[2], lid)

    async def _acknowledge(self, receipt: Receipt) -> WireResponse:
        try:
            return await acknowledge(self.state, receipt)
        except ApiError as exc:
            return api_error_response(self.state, exc)

    def _reply(self, topic: str, epoch: str) -> tuple[str, bytes, bytes]:
        replies = self._replies
        if len(replies) >= _JSON_STRINGS_MAX:
            del replies[next(iter(replies))]
        epoch_json = _json_string(epoch)
        reply = replies[topic] = (
            epoch,
            f',"topic":{_json_string(topic)},"epoch":{epoch_json},"time":'.encode(),
            f',"cursor":{epoch_json[:-1]}:'.encode(),
        )
        return reply

    def _content_type(self, header: bytes) -> str | None:
        known = self._content_types
        if header in known:
            return known[header]
        ctype = given_content_type(optional_text(header.decode("latin-1"), "Content-Type"))
        if len(known) >= _JSON_STRINGS_MAX:
            del known[next(iter(known))]
        known[header] = ctype
        return ctype


_JSON_201: dict[str, Any] = {
    # as FastAPI rendered the route's `response_model` (a single result or a batch's list)
    "description": "routed and appended to the log",
    "content": {
        "application/json": {
            "schema": {
                "$ref": "#/components/schemas/PublishResult",
                "anyOf": [
                    {"$ref": "#/components/schemas/PublishResult"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/PublishResult"}},
                ],
                "title": "Response Publish Json V1 Publish Post",
            }
        }
    },
}

PUBLISH_JSON = Endpoint(
    path="/v1/publish",
    param=None,
    operations=(("POST", "publish_json_v1_publish_post"),),
    summary="Publish one message (JSON) or a batch (JSON array)",
    description='`{"topic", "payload" | "payload_base64", "content_type", "qos", "retain", '
    '"ttl",\n"priority"}`, or an array of those (a batch: one reply per message, in order; '
    "nothing is\npublished when any of them is invalid, or when the topic ACL denies any of "
    "them: 403\nnaming the first such message and its topic).",
    tag="publish",
    security="headers",
    request_body=_JSON_BODY["requestBody"],
    responses=_PUBLISH_RESPONSES | {201: _JSON_201} | error_responses(415),
)


def json_publish_body_limit(state: HttpState) -> int:
    return json_body_limit(state.settings.http_max_payload)


async def publish_json(
    state: HttpState, request: WireRequest, _options: Mapping[str, str | None]
) -> WireResponse:
    """`POST /v1/publish` (declared by `PUBLISH_JSON`), from either server: one message or
    a batch; every message is validated (and its ACL checked) before any is published."""
    caller = await cached_caller_from(
        state.auth,
        request.callers,
        request.header_list(b"authorization"),
        request.query,
        request.ip,
        request.cert_name,
    )
    ctype = (request.header(b"content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "POST /v1/publish takes application/json; to publish a raw body use "
            "POST /v1/publish/{topic}",
        )
    s = state.settings
    if request.oversize:  # refused before the body is read (its Content-Length) or kept
        raise payload_too_large(request.oversize, json_body_limit(s.http_max_payload))
    try:
        data = parse_json(request.body, s.json_max_depth)
    except JsonError as exc:
        raise bad_request(str(exc)) from None
    batch = isinstance(data, list)
    if batch and len(data) > s.http_max_batch:
        raise ApiError(
            413, "payload_too_large", f"batch of {len(data)} messages is over {s.http_max_batch}"
        )
    if batch and not data:
        raise bad_request("empty batch")
    try:
        reqs = _BATCH_ADAPTER.validate_python(data if batch else [data])
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = list(err.get("loc", ()))
            if not batch:
                loc = loc[1:]
            parts.append(f"{'.'.join(str(p) for p in loc) or 'body'}: {err.get('msg')}")
        raise bad_request("; ".join(parts)) from None
    specs = []
    for i, req in enumerate(reqs):
        try:
            spec = spec_from_request(req, s.http_max_payload, s.max_topic_levels)
            caller.check_publish(spec.topic)
        except ApiError as exc:
            if batch:
                exc.message = f"message {i}: {exc.message}"
            raise
        specs.append(spec)
    charge_publish(state, caller, len(specs))
    messages = await publish_specs(state, specs, "http", "http")
    results = [result(state, m) for m in messages]
    return json_response(_status(results), results if batch else results[0])
