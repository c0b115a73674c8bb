"""Raw-socket HTTP/1.1 helpers for the tests of pushwire's owned HTTP protocol.

The requests are written byte by byte and the responses read off the socket by hand, so
the tests see exactly what goes over the wire (pipelining, keep-alive, chunked bodies)
rather than what an HTTP client library makes of it. For an `InProcessServer`.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable
from typing import Any

from helpers.inproc import InProcessServer

DEADLINE = 10.0
"""Seconds `until` waits for its condition."""


class Reader:
    """Reads HTTP/1.1 responses one after the other from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = self.file.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:
            return status, headers, b""
        if "content-length" in headers:
            body = self.file.read(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int(self.file.readline().strip(), 16)
                if size == 0:
                    self.file.readline()
                    break
                parts.append(self.file.read(size))
                self.file.readline()
            body = b"".join(parts)
        else:
            body = self.file.read()
        return status, headers, body

    def closed(self) -> bool:
        return self.file.read(1) == b""


def publish_request(topic: str, body: bytes, extra: bytes = b"") -> bytes:
    """A `POST /v1/publish/<topic>` request; `extra` is more header lines, CRLF-ended."""
    return (
        f"POST /v1/publish/{topic} HTTP/1.1\r\nHost: x\r\n".encode()
        + extra
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def longpoll_request(
    flt: str, since: str | None = None, timeout: str = "30", extra: str = "", head: str = ""
) -> bytes:
    """A `GET /v1/longpoll/<flt>` request; `extra` is more query (`&k=v`), `head` more
    header lines (CRLF-ended)."""
    query = f"timeout={timeout}{extra}" + (f"&since={since}" if since else "")
    return f"GET /v1/longpoll/{flt}?{query} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode()


def connect(srv: InProcessServer) -> socket.socket:
    """A socket connected to the server's HTTP listener."""
    assert srv.server is not None and srv.server.http_address is not None
    return socket.create_connection(srv.server.http_address, timeout=10)


def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition` to hold, failing after `DEADLINE` seconds."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def publish(srv: InProcessServer, topic: str, body: bytes) -> None:
    """Publish `body` to `topic` on a connection of its own; it must be accepted (201)."""
    with connect(srv) as sock:
        sock.sendall(publish_request(topic, body))
        assert Reader(sock).response()[0] == 201


def waiters(srv: InProcessServer, flt: str) -> list[Any]:
    """The listeners held on `flt` now, read on the server's loop."""
    assert srv.server is not None
    log = srv.server.log

    def held() -> list[Any]:
        group = log._groups.get(flt)
        # (a long-poll waiter answered by a wake stays in its group, `done`, `between` its
        # connection's requests: not held)
        members = group.members if group is not None else ()
        return [m for m in members if not getattr(m, "between", False)]

    return srv.call(held)


def held_on_lane(srv: InProcessServer, flt: str) -> bool:
    """One request held on `flt`, and it is the re-ask lane's (its reused cycle)."""
    held = waiters(srv, flt)
    if len(held) != 1:
        return False
    poller = held[0].sink
    return srv.call(lambda: poller.cycle is not None and poller.cycle is poller.lane_cycle)


def message_payloads(body: bytes) -> list[str]:
    """The payloads of a poll or long-poll response body, in order."""
    return [m["payload"] for m in json.loads(body)["messages"]]


def woken(
    srv: InProcessServer, flt: str, readers: list[Reader], payload: bytes, topic: str = ""
) -> list[str]:
    """Wait until every reader's long-poll on `flt` is held, publish `payload` to `topic`
    (`flt`), read each reader's answer (that one message); their cursors, in order."""
    until(lambda: len(waiters(srv, flt)) == len(readers))
    publish(srv, topic or flt, payload)
    cursors = []
    for reader in readers:
        status, headers, body = reader.response()
        assert status == 200 and message_payloads(body) == [payload.decode()], body
        cursors.append(headers["pushwire-cursor"])
    return cursors


def basic_auth(user: str, password: str) -> str:
    """An `Authorization: Basic` header line (with its CRLF) for a raw request's `head`."""
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Authorization: Basic {raw}\r\n"
