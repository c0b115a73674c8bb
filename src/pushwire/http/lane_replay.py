"""A kept-alive publisher's next request, recognised from its bytes.

A device or service that publishes on a kept-alive connection usually repeats the same
request head (same topic, same headers, same `Content-Length`) with another body. Once the
full parser (httptools) has parsed such a request, the publish lane (http/publish.py
`PublishLane`) took it, and the read was exactly that one request, its head is kept
(`LaneHead`). A later read that is exactly those head bytes followed by `Content-Length`
bytes is the same request with another body: comparing its bytes with a head the parser
accepted is parsing it, so it goes to the lane without the parser and its callbacks
(`HttpProtocol._lane_replayed`). Anything else (a partial read, a pipelined request,
another header, another length) does not match and takes the full parse.

A head is kept only when its bytes are, up to ASCII case, the canonical form of what the
parser saw (`METHOD URL HTTP/1.1`, `name: value` lines, CRLF endings, the blank line):
that proves the read held that one head and its body, and nothing before or after. What
the lane checks per request (the cached caller against the auth snapshot, the topic ACL,
the publish rate) is still checked per request; the head limits are the same bytes'.

The heads are shared by every connection of a listener (`LaneHeads`, bounded): the
clients of one application send the same head, and a connection keeps one reference. A head
with an `Authorization` header (a Bearer token, checked again on every request) is its
connection's alone: a secret is not kept past the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pushwire.http.routes import FastRoute

LANE_HEADS = 256  # heads kept per listener, oldest out


class LaneHead:
    """A publish request head the full parser accepted and the lane took, with what it
    resolved to; `size` is the length of the head and its body."""

    __slots__ = ("authorization", "ctype", "head", "headers", "method", "route", "size", "tail")

    def __init__(
        self,
        head: bytes,
        size: int,
        route: FastRoute,
        tail: str,
        method: str,
        ctype: bytes | None,
        headers: list[tuple[bytes, bytes]],
        authorization: bytes | None,
    ) -> None:
        self.head = head
        self.size = size
        self.route = route
        self.tail = tail  # the path after the route's prefix (the topic), decoded
        self.method = method
        self.ctype = ctype  # the Content-Type header's value, or None
        self.headers = headers  # as the parser gave them (for a reply that needs a cycle)
        # the Authorization header's value (checked again on every request), or None
        self.authorization = authorization


def canonical_head(raw_method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The bytes of an HTTP/1.1 head with exactly these parts, lower case."""
    parts = [raw_method, b" ", url, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts).lower()


class LaneHeads:
    """The listener's heads, keyed by their bytes (oldest out)."""

    __slots__ = ("heads",)

    def __init__(self) -> None:
        self.heads: dict[bytes, LaneHead] = {}

    def learn(
        self,
        data: bytes,
        body_size: int,
        raw_method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        route: FastRoute,
        tail: str,
        method: str,
        ctype: bytes | None,
        authorization: bytes | None,
    ) -> LaneHead | None:
        """The head of `data`, one read that began between requests and held a lane
        request whose body is `body_size` bytes, when `data` is exactly that request (see
        the module docstring); shared when already known. None: nothing to keep."""
        split = len(data) - body_size
        if split <= 4 or data.find(b"\r\n\r\n") != split - 4:
            return None  # the read held more (or less) than one head and its body
        head = data[:split]
        known = self.heads.get(head)
        if known is not None:
            # the same bytes resolve to the same route, topic and content type
            return known if known.route is route and known.tail == tail else None
        if head.lower() != canonical_head(raw_method, url, headers):
            return None
        kept = LaneHead(head, len(data), route, tail, method, ctype, headers, authorization)
        if authorization is not None:
            return kept  # a secret: the connection's own, not kept past it
        if len(self.heads) >= LANE_HEADS:
            del self.heads[next(iter(self.heads))]
        self.heads[head] = kept
        return kept
