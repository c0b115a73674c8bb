"""Which publish heads http/lane_replay.py keeps: only a read that is exactly one request
whose head is the canonical form of what the parser saw; shared per listener unless it
carries credentials; bounded."""

from __future__ import annotations

from pushwire.http import lane_replay
from pushwire.http.lane_replay import LaneHead, LaneHeads, canonical_head, one_request
from pushwire.http.routes import FastRoute
from pushwire.http.wire import WireRequest, WireResponse

HEAD = b"POST /v1/publish/a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
PARSED = [(b"host", b"x"), (b"content-length", b"3")]


async def _handler(request: WireRequest) -> WireResponse:
    raise AssertionError("not called")


ROUTE = FastRoute(frozenset({"POST"}), "/v1/publish/", _handler, 100)


def learn(heads: LaneHeads, data: bytes, authorization: bytes | None = None) -> LaneHead | None:
    head = one_request(data, 3)
    if head is None:
        return None
    return heads.learn(
        head, b"POST", b"/v1/publish/a/b", PARSED, ROUTE, "a/b", "POST", None, authorization
    )


def test_the_canonical_form_is_what_the_parser_saw_in_lower_case() -> None:
    assert canonical_head(b"POST", b"/v1/publish/a/b", PARSED) == HEAD.lower()


def test_one_request_is_kept_and_shared() -> None:
    heads = LaneHeads()
    kept = learn(heads, HEAD + b"abc")
    assert kept is not None
    assert kept.prefix + b"3" + kept.suffix == HEAD
    assert kept.body_at(HEAD + b"abc") == len(HEAD)
    assert learn(heads, HEAD + b"xyz") is kept  # another body: the same head


def test_anything_but_one_canonical_request_is_not_kept() -> None:
    heads = LaneHeads()
    assert learn(heads, HEAD + b"abc" + HEAD[:10]) is None  # more after it
    assert learn(heads, HEAD + b"ab") is None  # less
    spaced = HEAD.replace(b"Host: x", b"Host:  x")  # parsed the same, written otherwise
    assert learn(heads, spaced + b"abc") is None
    assert heads.heads == {}


def test_a_head_with_credentials_is_not_shared() -> None:
    heads = LaneHeads()
    with_token = HEAD.replace(b"\r\n\r\n", b"\r\nAuthorization: Bearer t\r\n\r\n")
    kept = heads.learn(
        with_token,
        b"POST",
        b"/v1/publish/a/b",
        [*PARSED, (b"authorization", b"Bearer t")],
        ROUTE,
        "a/b",
        "POST",
        None,
        b"Bearer t",
    )
    assert kept is not None and kept.authorization == b"Bearer t"
    assert heads.heads == {}


def test_the_table_is_bounded() -> None:
    heads = LaneHeads()
    for n in range(lane_replay.LANE_HEADS + 10):
        url = b"/v1/publish/t%d" % n
        head = b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n" % url
        assert (
            heads.learn(head, b"POST", url, PARSED, ROUTE, f"t{n}", "POST", None, None) is not None
        )
    assert len(heads.heads) == lane_replay.LANE_HEADS


def test_heads_that_differ_only_in_content_length_are_one_head() -> None:
    heads = LaneHeads()
    kept = learn(heads, HEAD + b"abc")
    assert kept is not None
    longer = HEAD.replace(b"Length: 3", b"Length: 11")
    parsed = [(b"host", b"x"), (b"content-length", b"11")]
    again = heads.learn(
        longer, b"POST", b"/v1/publish/a/b", parsed, ROUTE, "a/b", "POST", None, None
    )
    assert again is kept and len(heads.heads) == 1
    assert kept.body_at(longer + b"hello world") == len(longer)


def test_only_digits_and_a_body_of_their_length_match() -> None:
    heads = LaneHeads()
    kept = learn(heads, HEAD + b"abc")
    assert kept is not None
    for read in [
        HEAD + b"ab",  # shorter than declared
        HEAD + b"abcd",  # longer (a pipelined request's first byte)
        HEAD.replace(b"Length: 3", b"Length: +3") + b"abc",
        HEAD.replace(b"Length: 3", b"Length: 3 ") + b"abc",
        HEAD.replace(b"Length: 3", b"Length: ") + b"",
        HEAD.replace(b"Length: 3", b"Length: 0\r\nX: 3") + b"",
        HEAD.replace(b"Length: 3", b"Length: " + b"0" * 20 + b"3") + b"abc",
        HEAD.replace(b"Host: x", b"Host: y") + b"abc",
    ]:
        assert not kept.body_at(read), read
    assert kept.body_at(HEAD.replace(b"Length: 3", b"Length: 0")) > 0  # an empty body


def test_a_head_without_one_content_length_is_not_kept() -> None:
    heads = LaneHeads()
    twice = HEAD.replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\n")
    parsed = [*PARSED, (b"content-length", b"3")]
    assert (
        heads.learn(twice, b"POST", b"/v1/publish/a/b", parsed, ROUTE, "a/b", "POST", None, None)
        is None
    )
    assert heads.heads == {}
