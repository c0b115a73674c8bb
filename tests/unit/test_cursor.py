"""since= cursors and durations (http/cursor.py)."""

from __future__ import annotations

import pytest

from pushwire.core.log import ALL, LATEST, Cursor
from pushwire.http.cursor import CursorError, parse_cursor, parse_duration, parse_etag

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", ALL),
        ("ALL", ALL),
        ("latest", LATEST),
        ("now", LATEST),
        ("0", Cursor.after(0)),
        ("42", Cursor.after(42)),
        (" 42 ", Cursor.after(42)),
        ("3f2a9c01bd77:42", Cursor.after(42, "3f2a9c01bd77")),
        ("10m", Cursor("time", time=NOW - 600)),
        ("1h30m", Cursor("time", time=NOW - 5400)),
        ("250ms", Cursor("time", time=NOW - 0.25)),
        ("2d", Cursor("time", time=NOW - 172800)),
        ("@1764190000", Cursor("time", time=1764190000.0)),
        ("@1764190000.5", Cursor("time", time=1764190000.5)),
        ("1764190000.5", Cursor("time", time=1764190000.5)),
        ("1764190000.", Cursor("time", time=1764190000.0)),
        ("2025-11-26T21:00:00Z", Cursor("time", time=1764190800.0)),
        ("2025-11-26T21:00:00", Cursor("time", time=1764190800.0)),
        ("2025-11-26T22:00:00+01:00", Cursor("time", time=1764190800.0)),
    ],
)
def test_accepted_forms(text: str, expected: Cursor) -> None:
    assert parse_cursor(text, now=NOW) == expected


def test_bare_integer_is_always_an_id_even_when_it_looks_like_a_time() -> None:
    assert parse_cursor("1764190000", now=NOW) == Cursor.after(1764190000)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "-1",
        "abc",
        "10x",
        "m10",
        "@",
        "@abc",
        "@-5",
        "@inf",
        "@nan",
        "1e5",
        "1.2.3",
        "ep:och:1",
        ":12",
        "epoch:",
        "epoch:-1",
        "99999999999999999999",
        "e:99999999999999999999",
        "2025-13-40T00:00:00Z",
        "x" * 200,
    ],
)
def test_rejected_forms(text: str) -> None:
    with pytest.raises(CursorError):
        parse_cursor(text, now=NOW)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("10m", 600.0), ("1h30m", 5400.0), ("250ms", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "x", "-3", "10 m", "m", "1e9999"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("header", "cursor"),
    [
        ('"abc:12"', "abc:12"),
        ('W/"abc:12"', "abc:12"),
        ('"abc:12", "def:3"', "abc:12"),
        ("abc:12", "abc:12"),
        ('""', None),
        ("*", "*"),
    ],
)
def test_etag(header: str, cursor: str | None) -> None:
    assert parse_etag(header) == cursor
