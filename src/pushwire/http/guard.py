"""The HTTP listener's guard on the request head: a client must finish it in time and keep
it small, and a head the parser rejects gets the JSON error model.

The owned protocol (http/connection.py) applies it: one timer per connection, armed when the
connection is made and when bytes of a new request arrive on a kept-alive connection,
disarmed when the head is complete; on expiry `408 Request Timeout` (only if part of a head
arrived) and the connection closed.

Size: the parser (httptools) buffers a header value until it is complete, so an endless
header would grow in memory unseen. `HeadMeter` counts the bytes of each request head before
the parser sees them: a request line longer than `max_request_line` is answered
`414 URI Too Long`, a head longer than `max_head` `431 Request Header Fields Too Large`, at
once and then the connection is closed (a lingering close). Malformed requests (a garbage
request line, an unknown HTTP version, a bad chunk size) get `400` with the JSON error
model, then the connection is closed.
"""

from __future__ import annotations

import json


def _closing_response(status: str, code: str, message: str, extra: bytes = b"") -> bytes:
    """A complete response with the JSON error model, for a connection about to close."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n".encode()
        + extra
        + b"connection: close\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


RESPONSE_429 = _closing_response(
    "429 Too Many Requests",
    "rate_limited",
    "too many connections from this address",
    b"retry-after: 1\r\n",
)
RESPONSE_408 = _closing_response(
    "408 Request Timeout", "request_timeout", "the request head took too long"
)
RESPONSE_400 = _closing_response("400 Bad Request", "bad_request", "malformed HTTP request")


class HeadCounters:
    """Heads the guard acted on since the process started (all listeners)."""

    timeouts_total = 0  # connections closed by the head timer
    refused_total: dict[str, int] = {"too_long": 0, "malformed": 0}


class HeadMeter:
    """Counts the bytes of the current request head (see the module docstring)."""

    __slots__ = ("line_done", "max_head", "max_request_line", "size", "tail")

    def __init__(self, max_request_line: int, max_head: int) -> None:
        self.max_request_line = max_request_line
        self.max_head = max_head
        self.size = 0
        self.line_done = False
        self.tail = b""  # the last bytes seen: a blank line may straddle two reads

    def reset(self) -> None:
        """A new head starts with the next byte."""
        self.size = 0
        self.line_done = False
        self.tail = b""

    def oversize(self, data: bytes) -> bytes | None:
        """Count `data` into the current head, before the parser buffers it: the refusal
        (414, 431) when the request line or the head is over its limit, else None.

        A read may hold the end of the head and then body bytes (or a pipelined request):
        only bytes up to the blank line that ends the head count."""
        start = self.size
        size = start + len(data)
        self.size = size
        tail, self.tail = self.tail, data[-3:]
        if not self.line_done:
            eol = data.find(b"\n")
            line = size if eol < 0 else start + eol + 1
            self.line_done = eol >= 0
            if line > self.max_request_line:
                return _closing_response(
                    "414 URI Too Long",
                    "uri_too_long",
                    f"the request line is over {self.max_request_line} bytes",
                )
        if size <= self.max_head:
            return None
        end = (tail + data).find(b"\r\n\r\n")
        if end >= 0 and start - len(tail) + end + 4 <= self.max_head:
            return None  # the head ended in time; the rest is not head
        return _closing_response(
            "431 Request Header Fields Too Large",
            "header_fields_too_large",
            f"the request head is over {self.max_head} bytes",
        )


def head_timeouts_total() -> int:
    """Connections the guard closed, since the process started."""
    return HeadCounters.timeouts_total


def heads_refused_total() -> dict[str, int]:
    """Request heads refused since the process started: too_long (414, 431), malformed
    (400)."""
    return dict(HeadCounters.refused_total)
