"""Where a long-poll head's cursor lies (http/replay.py `split_head`, `is_cursor_token`):
only a head whose since= value is one unambiguous cursor token is kept as a template."""

from __future__ import annotations

import pytest

from pushwire.http.replay import is_cursor_token, split_head


def _head(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("target", "query", "cursor"),
    [
        ("/v1/longpoll/a?since=E:12", "since=E:12", b"E:12"),
        ("/v1/longpoll/a?timeout=30&since=E:12", "timeout=30&since=E:12", b"E:12"),
        ("/v1/longpoll/a?since=E:12&timeout=30", "since=E:12&timeout=30", b"E:12"),
    ],
)
def test_a_head_splits_around_its_cursor(target: str, query: str, cursor: bytes) -> None:
    data = _head(target)
    split = split_head(data, query.encode())
    assert split is not None
    start, end = split
    assert data[start:end] == cursor


@pytest.mark.parametrize(
    ("target", "query"),
    [
        ("/v1/longpoll/a?timeout=30", "timeout=30"),  # no since=
        ("/v1/longpoll/a?since=1&since=2", "since=1&since=2"),  # two
        ("/v1/longpoll/since=1?since=2", "since=2"),  # one in the path too
        ("/v1/longpoll/a?xsince=1", "xsince=1"),  # not the parameter
        ("/v1/longpoll/a?since=1%20", "since=1%20"),  # percent-encoded
        ("/v1/longpoll/a?since=", "since="),  # empty
        ("/v1/longpoll/a?since=1#f", "since=1"),  # a fragment
        ("/v1/longpoll/a?since=1", "since=2"),  # not what the parser saw
    ],
)
def test_a_head_without_one_plain_cursor_is_not_kept(target: str, query: str) -> None:
    assert split_head(_head(target), query.encode()) is None


def test_cursor_tokens_hold_no_separator() -> None:
    assert is_cursor_token(b"E-1_x:123")
    assert is_cursor_token(b"@1764190000.5")
    for bad in (b"", b"1 2", b"1\r\n", b"1&a=2", b"1%20", b"1+2", b"1#", b"1/2", b"9" * 129):
        assert not is_cursor_token(bad), bad
