"""A kept-alive long-poll client's next request head, recognised from its bytes.

A long-poll client re-asks with a request whose bytes equal its previous one except the
value of since= (the cursor of the reply it just read). Once the full parser (httptools)
has accepted such a head and the stream route's lane (http/streams.py `_ReaskLane`) took
it, the head is kept split around the cursor (`ReplayHead`: prefix, suffix, and what the
head resolved to). A later read that is exactly prefix + cursor + suffix, where the cursor
is made only of `CURSOR_BYTES`, is the same request but for the cursor: comparing its bytes
with a head the parser accepted is parsing it. The cursor bytes can hold no space, CR, LF,
`&`, `#` or `%`, so such a read is exactly one complete head with the same request line
structure, the same headers and no body; anything else (a partial read, a pipelined
request, another header, a body) does not match and takes the full parse.

The templates are shared by every connection of a listener (`ReplayHeads`, bounded): the
clients of one application send the same head, and an idle connection keeps one reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushwire.http.cursor import MAX_CURSOR_LEN

if TYPE_CHECKING:
    from pushwire.http.routes import StreamLane, StreamRoute

# what a cursor this server hands out is made of (ids, EPOCH:ID, times, durations); the
# lane compares the value with the previous reply's cursor, so nothing else is accepted
CURSOR_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:.@"
REPLAY_HEADS = 256  # templates kept per listener (the clients of one application share one)


def is_cursor_token(value: bytes) -> bool:
    """`value` is a non-empty run of `CURSOR_BYTES`, at most `MAX_CURSOR_LEN` long."""
    return 0 < len(value) <= MAX_CURSOR_LEN and not value.translate(None, CURSOR_BYTES)


class ReplayHead:
    """A long-poll request head accepted by the full parser and taken by its stream lane,
    split around its since= value; with what it resolved to."""

    __slots__ = (
        "expected",
        "expected_cursor",
        "lane",
        "line_fixed",
        "prefix",
        "query_prefix",
        "query_suffix",
        "route",
        "suffix",
        "tail",
    )

    def __init__(
        self,
        prefix: bytes,
        suffix: bytes,
        line_fixed: int,
        route: StreamRoute,
        tail: str,
        query_prefix: bytes,
        query_suffix: bytes,
    ) -> None:
        self.prefix = prefix  # the head's bytes before the cursor
        self.suffix = suffix  # and after it, up to and with the blank line
        self.line_fixed = line_fixed  # the request line's length (with CRLF) but the cursor
        self.route = route
        assert route.reask is not None  # (only a lane's head is kept)
        self.lane: StreamLane = route.reask
        self.tail = tail  # the path after the route's prefix (the filter), decoded
        self.query_prefix = query_prefix  # the query string around the cursor
        self.query_suffix = query_suffix
        # the whole head with the cursor of the last re-ask taken with this template, and
        # that cursor: every client woken by one message re-asks with the same cursor, so
        # the next ones are recognised by one comparison (`expect`)
        self.expected: bytes | None = None
        self.expected_cursor = ""

    def expect(self, head: bytes, cursor: str) -> None:
        """`head` (prefix + `cursor` + suffix, within the head limits) was taken: the next
        read equal to it is this template with `cursor`."""
        self.expected = head
        self.expected_cursor = cursor


def split_head(data: bytes, query: bytes) -> tuple[int, int] | None:
    """Where the since= value lies in `data`, a complete request head (and nothing else)
    whose parsed query string is `query`: (start, end), or None when the head cannot be
    kept (no since= or more than one, a fragment, a value that is not a cursor token)."""
    line_end = data.find(b"\r\n")
    if line_end < 0:
        return None
    line = data[:line_end]
    mark = line.find(b"?")
    if mark < 0 or b"#" in line or line.count(b"since=") != 1:
        return None
    at = line.find(b"since=", mark)
    if at < 0 or line[at - 1] not in b"?&":
        return None
    start = at + 6
    target_end = line.rfind(b" ")
    end = line.find(b"&", start, target_end)
    if end < 0:
        end = target_end
    if not is_cursor_token(line[start:end]):
        return None
    if line[mark + 1 : target_end] != query:  # what the parser saw: the same split
        return None
    return start, end


class ReplayHeads:
    """The listener's templates, keyed by their bytes (oldest out)."""

    __slots__ = ("heads",)

    def __init__(self) -> None:
        self.heads: dict[tuple[bytes, bytes], ReplayHead] = {}

    def learn(self, data: bytes, query: bytes, route: StreamRoute, tail: str) -> ReplayHead | None:
        """The template of `data` (see `split_head`), shared when already known."""
        split = split_head(data, query)
        if split is None:
            return None
        start, end = split
        prefix, suffix = data[:start], data[end:]
        key = (prefix, suffix)
        head = self.heads.get(key)
        if head is not None and head.route is route and head.tail == tail:
            return head
        mark = data.index(b"?")
        line_fixed = data.index(b"\r\n") + 2 - (end - start)
        head = ReplayHead(
            prefix,
            suffix,
            line_fixed,
            route,
            tail,
            data[mark + 1 : start],
            data[end : data.index(b" ", end)],
        )
        if len(self.heads) >= REPLAY_HEADS:
            del self.heads[next(iter(self.heads))]
        self.heads[key] = head
        return head
