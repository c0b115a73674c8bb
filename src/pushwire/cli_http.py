"""`pushwire pub` / `sub` over HTTP(S) (httpx): publish with `POST /v1/publish`; subscribe
with Server-Sent Events (default), long-poll (`--longpoll`) or poll (`--poll`). One reader
thread per topic filter (the HTTP endpoints take one filter each)."""

from __future__ import annotations

import base64
import json
import queue
import threading
from typing import Any

import httpx

from pushwire.cli_common import (
    CliError,
    Endpoint,
    Gap,
    Outgoing,
    Ready,
    failed,
    http_refusal,
    quote_filter,
)
from pushwire.cli_format import Received

CONNECT_TIMEOUT = 10.0
LONGPOLL_WAIT = 30  # seconds the server holds one long-poll
# SSE close reasons after which reconnecting with the cursor loses nothing
_RESUMABLE = {"overflow"}


def http_client(ep: Endpoint) -> httpx.Client:
    verify: Any = True
    if ep.insecure:
        verify = False
    elif ep.cafile is not None:
        verify = ep.ssl_context()
    return httpx.Client(
        base_url=ep.http_base,
        headers={"User-Agent": "pushwire-cli", **ep.basic_or_bearer()},
        verify=verify,
        timeout=httpx.Timeout(CONNECT_TIMEOUT, read=LONGPOLL_WAIT + CONNECT_TIMEOUT),
    )


def _transport_error(ep: Endpoint, exc: httpx.HTTPError) -> CliError:
    return failed(f"HTTP request to {ep.http_base} failed: {exc}")


class HttpPublisher:
    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep
        self.client = http_client(ep)

    def connect(self) -> None:
        pass  # every publish is a request

    def publish(self, out: Outgoing) -> None:
        body: dict[str, Any] = {"topic": out.topic, "qos": out.qos, "retain": out.retain}
        try:
            body["payload"] = out.payload.decode("utf-8")
        except UnicodeDecodeError:
            body["payload_base64"] = base64.b64encode(out.payload).decode()
        for key in ("ttl", "priority", "content_type"):
            value = getattr(out, key)
            if value is not None:
                body[key] = value
        try:
            reply = self.client.post("/v1/publish", json=body)
        except httpx.HTTPError as exc:
            raise _transport_error(self.ep, exc) from None
        if reply.status_code not in (200, 201):
            raise http_refusal(reply.status_code, reply.content)

    def close(self) -> None:
        self.client.close()


class HttpSubscriber:
    """`mode`: "sse", "longpoll" or "poll"."""

    def __init__(
        self,
        ep: Endpoint,
        filters: list[str],
        events: queue.Queue[Any],
        *,
        mode: str = "sse",
        since: str | None = None,
        interval: float = 1.0,
    ) -> None:
        self.ep = ep
        self.filters = filters
        self.events = events
        self.mode = mode
        self.since = since
        self.interval = interval
        self.client = http_client(ep)
        self.stopping = threading.Event()

    def start(self) -> None:
        run = self._sse if self.mode == "sse" else self._pull
        for flt in self.filters:
            threading.Thread(target=self._guard, args=(run, flt), daemon=True).start()

    def close(self) -> None:
        self.stopping.set()
        self.client.close()

    def _guard(self, run: Any, flt: str) -> None:
        try:
            run(flt)
        except CliError as exc:
            self.events.put(exc)
        except httpx.HTTPError as exc:
            if not self.stopping.is_set():
                self.events.put(_transport_error(self.ep, exc))

    # -- Server-Sent Events ------------------------------------------------------------

    def _sse(self, flt: str) -> None:
        path = f"/v1/sse/{quote_filter(flt)}"
        params = {"since": self.since} if self.since else {}
        last_id: str | None = None
        ready = False
        while not self.stopping.is_set():
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            timeout = httpx.Timeout(CONNECT_TIMEOUT, read=None)  # heartbeats keep it alive
            with self.client.stream(
                "GET", path, params=params, headers=headers, timeout=timeout
            ) as reply:
                if reply.status_code != 200:
                    raise http_refusal(reply.status_code, reply.read())
                event, data = "message", []
                close_reason: str | None = None
                for line in reply.iter_lines():
                    if line.startswith(":"):
                        if not ready:  # the stream's first comment: it is registered
                            ready = True
                            self.events.put(Ready(flt))
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif line.startswith("id:"):
                        last_id = line[3:].strip()
                    elif line == "":
                        if data:
                            close_reason = self._sse_event(flt, event, "\n".join(data))
                        event, data = "message", []
                        if close_reason is not None:
                            break
            if self.stopping.is_set():
                return
            if close_reason not in _RESUMABLE:
                raise failed(f"the server ended the stream for {flt!r}: {close_reason or 'eof'}")

    def _sse_event(self, flt: str, event: str, data: str) -> str | None:
        payload = json.loads(data)
        if event == "message":
            self.events.put(Received.from_json(payload))
        elif event == "gap":
            self.events.put(Gap(flt, payload.get("cursor")))
        elif event == "close":
            return str(payload.get("reason", "close"))
        return None

    # -- poll and long-poll --------------------------------------------------------------

    def _pull(self, flt: str) -> None:
        quoted = quote_filter(flt)
        cursor = self.since
        if cursor is None:
            # where "now" is, so nothing published after Ready is missed between requests
            cursor = self._ask(f"/v1/poll/{quoted}", {"since": "latest", "limit": "1"})["cursor"]
        self.events.put(Ready(flt))
        path = f"/v1/longpoll/{quoted}" if self.mode == "longpoll" else f"/v1/poll/{quoted}"
        while not self.stopping.is_set():
            params = {"since": cursor}
            if self.mode == "longpoll":
                params["timeout"] = str(LONGPOLL_WAIT)
            reply = self._ask(path, params)
            if reply.get("gap"):
                self.events.put(Gap(flt, reply.get("cursor")))
            for message in reply.get("messages", []):
                self.events.put(Received.from_json(message))
            cursor = reply.get("cursor") or cursor
            if self.mode == "poll" and not reply.get("more") and not reply.get("messages"):
                self.stopping.wait(self.interval)

    def _ask(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        reply = self.client.get(path, params=params)
        if reply.status_code != 200:
            raise http_refusal(reply.status_code, reply.content)
        data: dict[str, Any] = reply.json()
        return data
