"""`pushwire pub` / `sub` over the JSON WebSocket protocol (`ws(s)://host:port/v1/ws`,
docs/websocket.md), with the `websockets` sync client."""

from __future__ import annotations

import base64
import json
import queue
import threading
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from pushwire.cli_common import (
    CliError,
    Endpoint,
    Gap,
    Outgoing,
    Ready,
    failed,
    http_refusal,
    refused,
)
from pushwire.cli_format import Received

OPEN_TIMEOUT = 10.0
REPLY_TIMEOUT = 10.0
_REFUSED_CLOSE_CODES = {4401, 4403, 4429}
_REFUSED_ERRORS = {"forbidden", "unauthorized"}


def open_ws(ep: Endpoint) -> ClientConnection:
    try:
        return connect(
            ep.ws_url,
            additional_headers=ep.basic_or_bearer(),
            ssl=ep.ssl_context(),
            open_timeout=OPEN_TIMEOUT,
            max_size=None,
        )
    except InvalidStatus as exc:
        raise http_refusal(exc.response.status_code, bytes(exc.response.body or b"")) from None
    except (OSError, WebSocketException, TimeoutError) as exc:
        raise failed(f"cannot open {ep.ws_url}: {exc}") from None


def _closed(exc: ConnectionClosed) -> CliError:
    rcvd = exc.rcvd
    code = rcvd.code if rcvd is not None else None
    reason = rcvd.reason if rcvd is not None else ""
    message = f"the server closed the WebSocket ({code} {reason})".rstrip()
    return refused(message) if code in _REFUSED_CLOSE_CODES else failed(message)


def _frame_error(frame: dict[str, Any]) -> CliError:
    message = f"{frame.get('code')}: {frame.get('message')}"
    return refused(message) if frame.get("code") in _REFUSED_ERRORS else failed(message)


class JsonWsSubscriber:
    def __init__(
        self, ep: Endpoint, filters: list[str], events: queue.Queue[Any], since: str | None
    ) -> None:
        self.ep = ep
        self.filters = filters
        self.events = events
        self.since = since
        self.ws: ClientConnection | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        self.ws = open_ws(self.ep)
        for i, flt in enumerate(self.filters):
            frame: dict[str, Any] = {"type": "subscribe", "sub": f"s{i}", "filter": flt}
            if self.since is not None:
                frame["since"] = self.since
            self.ws.send(json.dumps(frame))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.ws is not None
        try:
            for raw in self.ws:
                self._frame(json.loads(raw))
        except ConnectionClosed as exc:
            if not self.stopping.is_set():
                self.events.put(_closed(exc))
        except (ValueError, OSError) as exc:
            if not self.stopping.is_set():
                self.events.put(failed(f"WebSocket error: {exc}"))

    def _frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self.events.put(Received.from_json(frame))
        elif kind == "gap":
            self.events.put(Gap(self._filter(frame), frame.get("cursor")))
        elif kind == "subscribed":
            self.events.put(Ready(self._filter(frame)))
        elif kind == "ping":
            assert self.ws is not None
            self.ws.send('{"type":"pong"}')
        elif kind == "error":
            self.events.put(_frame_error(frame))

    def _filter(self, frame: dict[str, Any]) -> str:
        sub = str(frame.get("sub", ""))
        index = sub[1:]
        if index.isdigit() and int(index) < len(self.filters):
            return self.filters[int(index)]
        return sub

    def close(self) -> None:
        self.stopping.set()
        if self.ws is not None:
            self.ws.close()


class JsonWsPublisher:
    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep
        self.ws: ClientConnection | None = None
        self.ref = 0

    def connect(self) -> None:
        self.ws = open_ws(self.ep)

    def publish(self, out: Outgoing) -> None:
        assert self.ws is not None
        self.ref += 1
        frame: dict[str, Any] = {
            "type": "publish",
            "topic": out.topic,
            "qos": out.qos,
            "retain": out.retain,
            "ref": self.ref,
        }
        try:
            frame["payload"] = out.payload.decode("utf-8")
        except UnicodeDecodeError:
            frame["payload_base64"] = base64.b64encode(out.payload).decode()
        for key in ("ttl", "priority", "content_type"):
            value = getattr(out, key)
            if value is not None:
                frame[key] = value
        try:
            self.ws.send(json.dumps(frame))
            while True:  # until the reply to this publish
                reply = json.loads(self.ws.recv(timeout=REPLY_TIMEOUT))
                if reply.get("type") == "ping":
                    self.ws.send('{"type":"pong"}')
                elif reply.get("ref") == self.ref:
                    if reply.get("type") == "error":
                        raise _frame_error(reply)
                    return
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        except TimeoutError:
            raise failed(f"no reply to the publish within {REPLY_TIMEOUT:g}s") from None

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
