"""core/text.py: the one check every door applies to a client's text and JSON."""

from __future__ import annotations

import pytest

from pushwire.core.text import JsonError, TextError, check_json_value, check_text, parse_json


def test_check_text_accepts_any_encodable_text() -> None:
    for text in ("", "a/b", "ünï/中文/\U0001f600", "\ufffd", "\x00"):
        assert check_text(text, "topic") == text


@pytest.mark.parametrize("text", ["\ud800", "a/\udfff", "x\ud83d"])
def test_check_text_refuses_lone_surrogates(text: str) -> None:
    with pytest.raises(TextError, match="topic is not valid UTF-8"):
        check_text(text, "topic")


def test_parse_json_names_where_the_bad_text_is() -> None:
    with pytest.raises(JsonError, match=r"body\[1\]\.payload is not valid UTF-8"):
        parse_json(b'[{"topic": "a"}, {"topic": "a", "payload": "\\ud800"}]', 32)
    with pytest.raises(JsonError, match=r"a key in body\.x"):
        parse_json('{"x": {"\\udc00": 1}}', 32)
    # escaped in the message, so the message itself can always be sent
    with pytest.raises(JsonError) as info:
        parse_json('{"\\ud800": {"k": "\\ud800"}}', 32)
    str(info.value).encode("utf-8")


def test_parse_json_depth() -> None:
    ok = "[" * 32 + "]" * 32
    assert parse_json(ok, 32) is not None
    for too_deep in ("[" * 33 + "]" * 33, '{"a":' * 33 + "1" + "}" * 33):
        with pytest.raises(JsonError, match="deeper than 32"):
            parse_json(too_deep, 32)
    # deeper than Python's recursion limit: a JsonError, not a RecursionError
    for huge in ("[" * 100_000, "[" * 100_000 + "]" * 100_000):
        with pytest.raises(JsonError):
            parse_json(huge, 32)
    with pytest.raises(JsonError, match="not valid JSON"):
        parse_json(b"\xff", 32)


def test_check_json_value_is_iterative() -> None:
    deep: object = "x"
    for _ in range(50_000):  # built without json: far past the recursion limit
        deep = [deep]
    with pytest.raises(JsonError):
        check_json_value(deep, 32)
    check_json_value(deep, 60_000)
