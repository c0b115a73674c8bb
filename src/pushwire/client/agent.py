"""The device side: one connection for all of a device's apps.

:class:`DeviceAgent` registers the device once (``POST /v1/devices``) and keeps its
credentials in a JSON file the caller names; it gets a device token per app, holds ONE
persistent MQTT session (client id = device id, QoS 1 on ``devices/{device_id}/#``) and hands
every push to the handler of its app. It:

- acknowledges a push (PUBACK) only after its handler returned, so a push whose handler
  failed or never ran is redelivered by the server;
- remembers handled push ids in a bounded file next to the credentials
  (:class:`~pushwire.client.dedup.DedupStore`), so a redelivered push is not handed over twice;
- fetches the content of a notify-then-fetch notice (``GET /v1/content/{id}``) before the
  handler sees the push;
- pings every ``heartbeat_interval`` seconds of silence and reconnects after
  ``heartbeat_misses`` unanswered pings, and after any lost connection, with exponential
  backoff and jitter.

``transport="ws"`` uses the JSON WebSocket (``/v1/ws``, an ack subscription) instead of MQTT.

Example::

    import asyncio
    from pushwire.client import DeviceAgent, Push

    async def on_chat(push: Push) -> None:
        print("chat:", push.payload)

    async def on_news(push: Push) -> None:
        print("news:", push.content)   # notify-then-fetch: the fetched bytes

    async def main() -> None:
        agent = DeviceAgent("http://127.0.0.1:8080", "device.json", mqtt_port=1883)
        agent.add_app(CHAT_APP_ID, on_chat)      # "app_..." ids from `pushwire app create`
        agent.add_app(NEWS_APP_ID, on_news)
        async with agent:                       # registers or loads, connects
            print(agent.tokens)                 # {app_id: device token} for your providers
            await asyncio.Event().wait()        # run until cancelled

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import aiomqtt
import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from pushwire.client import _paho_link as link
from pushwire.client.backoff import Backoff
from pushwire.client.credentials import DeviceCredentials
from pushwire.client.dedup import DedupStore
from pushwire.client.errors import PushError, error_from_reply
from pushwire.client.heartbeat import Heartbeat
from pushwire.client.notices import BadNotice, Push, parse_notice

log = logging.getLogger("pushwire.client.agent")

Handler = Callable[[Push], Awaitable[None]]
Transport = Literal["mqtt", "ws"]
WS_SUB = "push"
WS_CONSUMER = "device"

CONTENT_FETCH_ATTEMPTS = 3


def _ws_url_of(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/v1/ws"


class HandlerFailed(Exception):
    """A push was not handled; on the WebSocket (cumulative acks) the session restarts so
    the server redelivers from the last acknowledged push."""


class ServerRefused(Exception):
    """The server refused the WebSocket subscription or answered with an error frame."""


class HeartbeatLost(Exception):
    """The server answered none of ``heartbeat_misses`` pings in a row."""


class ContentUnavailable(Exception):
    """The content of a notify-then-fetch push could not be fetched (it stays unacknowledged)."""


@dataclass
class AgentStats:
    """Counters of what the agent did (for logs, tests and the demo)."""

    connects: int = 0
    connection_losses: int = 0
    delivered: int = 0
    duplicates: int = 0
    handler_errors: int = 0
    bad_notices: int = 0
    unrouted: int = 0
    content_fetched: int = 0
    pings: int = 0
    heartbeat_deaths: int = 0


class DeviceAgent:
    """One device, many apps, one MQTT connection. See the module docstring.

    ``base_url`` is the gateway's HTTP address; MQTT goes to ``mqtt_host`` (default: the
    host of ``base_url``) on ``mqtt_port``. ``credentials_path`` is created on first start
    (mode 0600); the dedup log is ``<credentials_path>.seen``.
    """

    def __init__(
        self,
        base_url: str,
        credentials_path: str | Path,
        *,
        mqtt_host: str | None = None,
        mqtt_port: int = 1883,
        registration_secret: str | None = None,
        heartbeat_interval: float = 30.0,
        heartbeat_misses: int = 2,
        backoff: Backoff | None = None,
        dedup_capacity: int = 10_000,
        fsync: bool = True,
        connect_timeout: float = 10.0,
        http_timeout: float = 10.0,
        max_content: int = 16 * 1024 * 1024,
        transport: Transport = "mqtt",
        ws_url: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials_path = Path(credentials_path)
        self.mqtt_host = mqtt_host or urlsplit(self.base_url).hostname or "127.0.0.1"
        self.mqtt_port = mqtt_port
        self.registration_secret = registration_secret
        self.heartbeat = Heartbeat(heartbeat_interval, heartbeat_misses)
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.max_content = max_content
        if transport not in ("mqtt", "ws"):
            raise ValueError("transport is 'mqtt' or 'ws'")
        self.transport = transport
        self.ws_url = ws_url or _ws_url_of(self.base_url)
        self.stats = AgentStats()
        self.connected = asyncio.Event()
        self._handlers: dict[str, Handler] = {}
        self._seen = DedupStore(
            self.credentials_path.with_name(self.credentials_path.name + ".seen"),
            dedup_capacity,
            fsync=fsync,
        )
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=http_timeout)
        self._credentials: DeviceCredentials | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # -- identity ---------------------------------------------------------------------------------
    @property
    def device_id(self) -> str:
        return self._require_credentials().device_id

    @property
    def tokens(self) -> dict[str, str]:
        """``{app_id: device token}`` of the registered apps (give these to your providers)."""
        return dict(self._require_credentials().tokens)

    def _require_credentials(self) -> DeviceCredentials:
        if self._credentials is None:
            raise RuntimeError("the agent has no credentials yet: await start() first")
        return self._credentials

    def _auth(self) -> httpx.BasicAuth:
        creds = self._require_credentials()
        return httpx.BasicAuth(creds.device_id, creds.device_secret)

    def add_app(self, app_id: str, handler: Handler) -> None:
        """Route pushes of ``app_id`` to ``handler`` (an ``async def f(push)``). Call before
        :meth:`start`, or use :meth:`register_app` while running."""
        self._handlers[app_id] = handler

    async def register_app(self, app_id: str, handler: Handler) -> str:
        """Add an app while running; returns its device token."""
        self.add_app(app_id, handler)
        return await self._ensure_token(app_id)

    @staticmethod
    def _reply(response: httpx.Response) -> Any:
        if response.status_code >= 300:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_from_reply(response.status_code, body)
        return response.json() if response.content else None

    async def ensure_registered(self) -> DeviceCredentials:
        """Load the saved credentials, or register a new device and save them."""
        if self._credentials is not None:
            return self._credentials
        creds = DeviceCredentials.load(self.credentials_path)
        if creds is None:
            headers = {}
            if self.registration_secret is not None:
                headers["pushwire-registration-secret"] = self.registration_secret
            body = self._reply(await self._http.post("/v1/devices", headers=headers))
            if not isinstance(body, dict) or not isinstance(body.get("device_id"), str):
                raise PushError("BadResponse", 201, message=f"bad registration reply {body!r}")
            creds = DeviceCredentials(str(body["device_id"]), str(body["device_secret"]))
            creds.save(self.credentials_path)
            log.info("registered device %s", creds.device_id)
        self._credentials = creds
        return creds

    async def _ensure_token(self, app_id: str) -> str:
        creds = self._require_credentials()
        if app_id in creds.tokens:
            return creds.tokens[app_id]
        path = f"/v1/devices/{quote(creds.device_id, safe='')}/tokens"
        body = self._reply(await self._http.post(path, json={"app": app_id}, auth=self._auth()))
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise PushError("BadResponse", 200, message=f"bad token reply {body!r}")
        creds.tokens[app_id] = str(body["token"])
        creds.save(self.credentials_path)
        return creds.tokens[app_id]

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Register (or load), get every app's token, and start the connection in the
        background; returns at once (await :meth:`wait_connected` for the first connection;
        the agent keeps retrying with backoff). HTTP errors while registering are raised as
        :class:`~pushwire.client.errors.PushError` subclasses."""
        if self._task is not None and not self._task.done():
            return
        await self.ensure_registered()
        for app_id in list(self._handlers):
            await self._ensure_token(app_id)
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"device-agent-{self.device_id}")

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def stop(self) -> None:
        """Close the connection (the server keeps the session and queues pushes meanwhile).
        A handler still running is cancelled; its push was not acknowledged and comes again."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected.clear()

    async def aclose(self) -> None:
        await self.stop()
        await self._http.aclose()
        self._seen.close()

    async def __aenter__(self) -> DeviceAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the connection ---------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (
                aiomqtt.MqttError,
                websockets.WebSocketException,
                OSError,
                HeartbeatLost,
                HandlerFailed,
                ServerRefused,
            ) as exc:
                log.info("device %s: connection ended: %s", self.device_id, exc)
            except Exception:
                log.exception("device %s: connection failed", self.device_id)
            if self.connected.is_set():
                self.stats.connection_losses += 1
            self.connected.clear()
            delay = self.backoff.next_delay()
            log.info("device %s: reconnecting in %.2fs", self.device_id, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _client(self) -> aiomqtt.Client:
        creds = self._require_credentials()
        client = aiomqtt.Client(
            self.mqtt_host,
            self.mqtt_port,
            identifier=creds.device_id,
            username=creds.device_id,
            password=creds.device_secret,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=False,  # the server keeps what we did not acknowledge
            keepalive=max(1, math.ceil(self.heartbeat.interval)),
            timeout=self.connect_timeout,
        )
        link.check_supported(client)
        link.enable_manual_ack(client)
        return client

    async def _session(self) -> None:
        if self.transport == "ws":
            await self._session_ws()
            return
        client = self._client()
        async with client:
            link.take_over_keepalive(client)
            await client.subscribe(f"devices/{self.device_id}/#", qos=1)
            self.heartbeat.reset()
            self.backoff.reset()
            self.stats.connects += 1
            self.connected.set()
            log.info("device %s: connected", self.device_id)
            watchdog = asyncio.create_task(self._watch(client))
            receiver = asyncio.create_task(self._receive(client))
            try:
                done, _ = await asyncio.wait(
                    {watchdog, receiver}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()  # raise what ended the session
            finally:
                for task in (watchdog, receiver):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _watch(self, client: aiomqtt.Client) -> None:
        step = min(1.0, self.heartbeat.interval / 4)
        while True:
            await asyncio.sleep(step)
            action = self.heartbeat.tick(
                time.monotonic(), link.last_heard(client), link.last_sent(client)
            )
            if action == "ping":
                self.stats.pings += 1
                link.send_ping(client)
            elif action == "dead":
                self.stats.heartbeat_deaths += 1
                link.drop_link(client)
                raise HeartbeatLost(
                    f"no answer to {self.heartbeat.misses} pings "
                    f"({self.heartbeat.interval:g}s apart)"
                )

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            # an unhandled push stays unacknowledged; MQTT acks are per message, so the
            # session goes on and the server redelivers it on the next connection
            ack = functools.partial(link.ack, client, message.mid, message.qos)
            await self._deliver(str(message.topic), payload, ack)
        raise aiomqtt.MqttError("message stream ended")

    async def _deliver(self, topic: str, payload: bytes, ack: Callable[[], object]) -> bool:
        """Hand one message to its handler; ``ack`` once it is done with. False when the
        handler (or the content fetch) failed and the message was left unacknowledged."""
        try:
            push = parse_notice(topic, payload, self.device_id)
        except BadNotice as exc:
            # it will never parse: acknowledge so it does not block the session forever
            self.stats.bad_notices += 1
            log.warning("device %s: dropped a bad notice on %s: %s", self.device_id, topic, exc)
            ack()
            return True
        if push.id in self._seen:
            self.stats.duplicates += 1
            ack()
            return True
        handler = self._handlers.get(push.app)
        if handler is None:
            # a token of an app this agent no longer serves: acknowledged and logged
            self.stats.unrouted += 1
            log.warning(
                "device %s: push %s for app %s with no handler", self.device_id, push.id, push.app
            )
            ack()
            return True
        try:
            if push.content_ref is not None:
                await self._fetch_content(push)
            await handler(push)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("device %s: push %s not handled", self.device_id, push.id)
            return False
        self._seen.add(push.id)  # durable before the ack: a redelivery is recognised
        self.stats.delivered += 1
        ack()
        return True

    # -- the JSON WebSocket transport -------------------------------------------------------------
    async def _session_ws(self) -> None:
        creds = self._require_credentials()
        token = base64.b64encode(f"{creds.device_id}:{creds.device_secret}".encode()).decode()
        async with ws_connect(
            self.ws_url,
            additional_headers={"Authorization": f"Basic {token}"},
            ping_interval=None,  # the agent's heartbeat: JSON pings, with a miss threshold
            open_timeout=self.connect_timeout,
            max_size=2**20,
        ) as ws:
            clock = _WsClock()
            await self._ws_send(ws, clock, {
                "type": "subscribe", "sub": WS_SUB, "filter": f"devices/{creds.device_id}/#",
                "ack": True, "consumer": WS_CONSUMER,
            })  # fmt: skip
            first = await asyncio.wait_for(self._ws_frame(ws, clock), self.connect_timeout)
            if first.get("type") != "subscribed":
                raise ServerRefused(f"subscription refused: {first}")
            self.heartbeat.reset()
            self.backoff.reset()
            self.stats.connects += 1
            self.connected.set()
            log.info("device %s: connected (WebSocket)", self.device_id)
            watchdog = asyncio.create_task(self._watch_ws(ws, clock))
            receiver = asyncio.create_task(self._receive_ws(ws, clock))
            try:
                done, _ = await asyncio.wait(
                    {watchdog, receiver}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()
            finally:
                for task in (watchdog, receiver):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _ws_send(self, ws: ClientConnection, clock: _WsClock, frame: dict[str, Any]) -> None:
        await ws.send(json.dumps(frame))
        clock.sent = time.monotonic()

    async def _ws_frame(self, ws: ClientConnection, clock: _WsClock) -> dict[str, Any]:
        raw = await ws.recv()
        clock.heard = time.monotonic()
        try:
            frame = json.loads(raw)
        except (TypeError, ValueError):
            frame = None
        if not isinstance(frame, dict):
            raise websockets.WebSocketException("the server sent a frame that is not JSON")
        return frame

    async def _receive_ws(self, ws: ClientConnection, clock: _WsClock) -> None:
        while True:
            frame = await self._ws_frame(ws, clock)
            kind = frame.get("type")
            if kind == "ping":
                await self._ws_send(ws, clock, {"type": "pong"})
            elif kind == "message" and frame.get("sub") == WS_SUB:
                await self._deliver_ws(ws, clock, frame)
            elif kind == "gap":
                log.warning("device %s: the server lost pushes before %s", self.device_id, frame)
            elif kind == "error":
                raise ServerRefused(f"server error: {frame}")

    async def _deliver_ws(
        self, ws: ClientConnection, clock: _WsClock, frame: dict[str, Any]
    ) -> None:
        msg_id, topic = frame.get("id"), frame.get("topic")
        if not isinstance(msg_id, int) or not isinstance(topic, str):
            raise websockets.WebSocketException("a message frame without id or topic")
        if isinstance(frame.get("payload_base64"), str):
            payload = base64.b64decode(frame["payload_base64"], validate=False)
        else:
            payload = str(frame.get("payload", "")).encode()
        acks: list[int] = []
        if not await self._deliver(topic, payload, lambda: acks.append(msg_id)):
            # acks are cumulative: acknowledging a later push would drop this one, so end
            # the session; the server redelivers from the last acknowledged push
            raise HandlerFailed(f"push in message {msg_id} not handled")
        if acks:
            await self._ws_send(ws, clock, {"type": "ack", "sub": WS_SUB, "id": msg_id})

    async def _watch_ws(self, ws: ClientConnection, clock: _WsClock) -> None:
        step = min(1.0, self.heartbeat.interval / 4)
        while True:
            await asyncio.sleep(step)
            action = self.heartbeat.tick(time.monotonic(), clock.heard, clock.sent)
            if action == "ping":
                self.stats.pings += 1
                await self._ws_send(ws, clock, {"type": "ping"})
            elif action == "dead":
                self.stats.heartbeat_deaths += 1
                ws.transport.abort()  # no closing handshake with a server that is gone
                raise HeartbeatLost(
                    f"no answer to {self.heartbeat.misses} pings "
                    f"({self.heartbeat.interval:g}s apart)"
                )

    async def _fetch_content(self, push: Push) -> None:
        assert push.content_ref is not None
        path = f"/v1/content/{quote(push.content_ref.id, safe='')}"
        retry = Backoff(base=0.2, cap=2.0)
        for attempt in range(CONTENT_FETCH_ATTEMPTS):
            try:
                status, ctype, body = await self._get_content(path)
            except httpx.HTTPError as exc:
                if attempt == CONTENT_FETCH_ATTEMPTS - 1:
                    raise ContentUnavailable(f"content {push.content_ref.id}: {exc}") from exc
                await asyncio.sleep(retry.next_delay())
                continue
            if status == 200 and body is not None:
                push.content, push.content_type = body, ctype
                self.stats.content_fetched += 1
                return
            if status in (200, 404):
                # expired, gone, or larger than max_content: it will never come, so the
                # handler gets the notice without content rather than a redelivery loop
                log.warning(
                    "device %s: content %s not available (HTTP %d)",
                    self.device_id,
                    push.content_ref.id,
                    status,
                )
                return
            if attempt == CONTENT_FETCH_ATTEMPTS - 1 or status < 500:
                raise ContentUnavailable(f"content {push.content_ref.id}: HTTP {status}")
            await asyncio.sleep(retry.next_delay())

    async def _get_content(self, path: str) -> tuple[int, str | None, bytes | None]:
        """(status, content type, bytes); bytes is None when the body exceeds max_content
        (read as a stream: a hostile size is never buffered)."""
        async with self._http.stream("GET", path, auth=self._auth()) as response:
            if response.status_code != 200:
                return response.status_code, None, None
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_content:
                    return 200, None, None
                chunks.append(chunk)
            return 200, response.headers.get("content-type"), b"".join(chunks)


class _WsClock:
    """monotonic() of the last frame received from and sent to the server."""

    def __init__(self) -> None:
        self.heard = self.sent = time.monotonic()
