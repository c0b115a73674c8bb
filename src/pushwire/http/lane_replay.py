"""A kept-alive publisher's next request, recognised from its bytes.

A device or service that publishes on a kept-alive connection usually repeats the same
request head (same topic, same headers) with another body, and so perhaps another
`Content-Length`. Once the full parser (httptools) has parsed such a request, the publish
lane (http/publish.py `PublishLane`) took it, and the read was exactly that one request,
its head is kept split around the Content-Length value (`LaneHead`: prefix, suffix). A later
read that is exactly prefix + digits + suffix followed by that many body bytes is the same
request with another body: comparing its bytes with a head the parser accepted is parsing
it (the digits are ASCII digits only, so the header lines and the blank line are where they
were), so it goes to the lane without the parser and its callbacks
(`HttpProtocol._lane_replayed`). Anything else (a partial read, a pipelined request,
another header, a body of another length than declared) does not match and takes the full
parse. A publisher whose body length varies is therefore one head, not one per length.

A head is kept only when its bytes are, up to ASCII case, the canonical form of what the
parser saw (`METHOD URL HTTP/1.1`, `name: value` lines, CRLF endings, the blank line) with
one `Content-Length`: that proves the read held that one head and its body, and nothing
before or after. What the lane checks per request (the cached caller against the auth
snapshot, the topic ACL, the publish rate, the body limit) is still checked per request; the
head limits are checked on the read's head, whose length only the digits change.

The heads are shared by every connection of a listener (`LaneHeads`, bounded): the
clients of one application send the same head, and a connection keeps one reference. A head
with an `Authorization` header (a Bearer token, checked again on every request) is its
connection's alone: a secret is not kept past the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pushwire.http.routes import FastRoute

# Heads kept per listener, oldest out. Not a limit on clients, so not a setting: a
# connection keeps its own head's reference, so a head out of the table still serves its
# connections; the table only lets a new connection (or one whose head changed) share a
# head instead of building its own, once. Its bound caps the memory of heads no connection
# uses any more (a few hundred bytes each).
LANE_HEADS = 256
# Heads a connection may learn (or try to) from reads that were one request, with no
# request taken from bytes in between: a publisher whose heads keep changing (another topic
# or header every time) then stops learning, so it pays no canonical form per request and
# fills no table with heads nobody repeats; it tries again on every `LANE_RETRY`th such
# read (a publisher may settle). A heuristic of the fast path, not a limit (the full parse
# serves everything else), so not a setting.
LANE_LEARNS = 3
LANE_RETRY = 64
# ASCII digits of a Content-Length a replayed head may carry (10^15 bytes: well over any
# body limit, which the lane checks too); bounds the scan for the value's end
MAX_LENGTH_DIGITS = 15
_LENGTH = b"\r\ncontent-length: "


class LaneHead:
    """A publish request head the full parser accepted and the lane took, with what it
    resolved to, split around its Content-Length value: `prefix` (up to and with
    `Content-Length: `), `suffix` (from the CRLF after the value to the blank line)."""

    __slots__ = (
        "at",
        "authorization",
        "ctype",
        "headers",
        "method",
        "prefix",
        "route",
        "size",
        "suffix",
        "tail",
        "whole",
    )

    def __init__(
        self,
        prefix: bytes,
        suffix: bytes,
        route: FastRoute,
        tail: str,
        method: str,
        ctype: bytes | None,
        headers: list[tuple[bytes, bytes]],
        authorization: bytes | None,
    ) -> None:
        self.prefix = prefix
        self.suffix = suffix
        # the head with the Content-Length of the last request taken with it, its length,
        # and the length of that request: the next request of that length (a publisher
        # whose length does not vary) is recognised by one comparison (`expect`)
        self.whole = b""
        self.at = 0
        self.size = 0
        self.route = route
        self.tail = tail  # the path after the route's prefix (the topic), decoded
        self.method = method
        self.ctype = ctype  # the Content-Type header's value, or None
        # as the parser gave them, for a reply that needs a cycle (http/cycles.py
        # `_FastCycle`, which reads only Content-Length, against the body limit, and
        # Expect): the Content-Length of the request learned, within the body limit as
        # every replayed one is
        self.headers = headers
        # the Authorization header's value (checked again on every request), or None
        self.authorization = authorization

    def expect(self, data: bytes, at: int) -> None:
        """`data` (this head and a body from `at`, within the limits) was taken: the next
        read of its length that starts with its head is this head too."""
        self.whole = data[:at]
        self.at = at
        self.size = len(data)

    def body_at(self, data: bytes) -> int:
        """Where the body starts in `data` when `data` is this head with some
        Content-Length and exactly that many body bytes after it, else 0."""
        prefix = self.prefix
        if not data.startswith(prefix):
            return 0
        start = len(prefix)
        end = data.find(b"\r\n", start, start + MAX_LENGTH_DIGITS + 2)
        if end <= start or not data[start:end].isdigit():
            return 0
        suffix = self.suffix
        body = end + len(suffix)
        if not data.startswith(suffix, end) or len(data) - body != int(data[start:end]):
            return 0
        return body


def one_request(data: bytes, body_size: int) -> bytes | None:
    """The head of `data`, a read that began between requests and held a lane request
    whose body is `body_size` bytes, when `data` is exactly that request, else None."""
    split = len(data) - body_size
    if split <= 4 or data.find(b"\r\n\r\n") != split - 4:
        return None  # the read held more (or less) than one head and its body
    return data[:split]


def canonical_head(raw_method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The bytes of an HTTP/1.1 head with exactly these parts, lower case."""
    parts = [raw_method, b" ", url, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts).lower()


class LaneHeads:
    """The listener's heads, keyed by their bytes around the Content-Length value (oldest
    out)."""

    __slots__ = ("heads",)

    def __init__(self) -> None:
        self.heads: dict[tuple[bytes, bytes], LaneHead] = {}

    def learn(
        self,
        head: bytes,
        raw_method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        route: FastRoute,
        tail: str,
        method: str,
        ctype: bytes | None,
        authorization: bytes | None,
    ) -> LaneHead | None:
        """`head` (see `one_request`) split around its Content-Length when it is the
        canonical form of what the parser saw (see the module docstring); shared when
        already known. None: nothing to keep."""
        lowered = head.lower()
        at = lowered.find(_LENGTH)
        if at < 0 or lowered.find(_LENGTH, at + 1) >= 0:
            return None  # no Content-Length, or two: nothing to split around
        start = at + len(_LENGTH)
        end = head.find(b"\r\n", start)
        if not 0 < end - start <= MAX_LENGTH_DIGITS or not head[start:end].isdigit():
            return None
        key = (head[:start], head[end:])
        known = self.heads.get(key)
        if known is not None:
            # the same bytes resolve to the same route, topic and content type
            return known if known.route is route and known.tail == tail else None
        if lowered != canonical_head(raw_method, url, headers):
            return None
        kept = LaneHead(key[0], key[1], route, tail, method, ctype, headers, authorization)
        kept.whole, kept.at, kept.size = head, len(head), len(head) + int(head[start:end])
        if authorization is not None:
            return kept  # a secret: the connection's own, not kept past it
        if len(self.heads) >= LANE_HEADS:
            del self.heads[next(iter(self.heads))]
        self.heads[key] = kept
        return kept
