"""http/poll.py's kept cursor parse: a reply's `EPOCH:ID` with an epoch already accepted
is read without the regular expressions (per-user topics re-ask with a new id each time),
and means exactly what `parse_cursor` says; anything else still goes through it."""

from __future__ import annotations

import pytest

from pushwire.core.log import Cursor
from pushwire.http.cursor import CursorError, parse_cursor
from pushwire.http.poll import parse_kept_cursor


def test_reply_cursors_parse_as_parse_cursor_does() -> None:
    assert parse_kept_cursor("Ab_-9:1") == Cursor("id", 1, "Ab_-9")  # the epoch is known now
    for n in (0, 7, 123456, 10**18 - 1, 2**63 - 1):
        text = f"Ab_-9:{n}"
        assert parse_kept_cursor(text) == parse_cursor(text)


@pytest.mark.parametrize(
    "text",
    [
        "Ab_-9:",
        "Ab_-9:-1",
        "Ab_-9:1.5",
        "Ab_-9:\uff11\uff12",  # fullwidth digits: not [0-9]
        "Ab_-9:\u00b2",
        f"Ab_-9:{2**63}",
        "Ab_-9:1:2",
        "A b:1",
    ],
)
def test_malformed_cursors_are_still_refused(text: str) -> None:
    parse_kept_cursor("Ab_-9:1")
    with pytest.raises(CursorError):
        parse_kept_cursor(text)


def test_whitespace_and_bare_ids_keep_their_meaning() -> None:
    parse_kept_cursor("Ab_-9:1")
    assert parse_kept_cursor(" Ab_-9:5 ") == Cursor("id", 5, "Ab_-9")
    assert parse_kept_cursor("42") == Cursor("id", 42, None)
