"""Text that enters pushwire: the one check every door applies before anything is routed.

Python strings may hold lone UTF-16 surrogates (JSON `"\\ud800"` decodes to one), which no
encoder can write: a message carrying one could be routed and logged, and then fail in the
store, in every poll that serialises it, in every stream that reaches it. So every text a
client hands in (topic, filter, payload as text, content type, user properties, client id,
username, any string of a JSON body or WebSocket frame) goes through `check_text` (or, for
whole JSON documents, `parse_json`), and is refused with a 4xx / error frame / MQTT
malformed packet before it reaches the hub.

`parse_json` also bounds the nesting depth: deeply nested JSON would otherwise exhaust the
recursion limit (a RecursionError is a 500, not a 400).
"""

from __future__ import annotations

import json
from typing import Any


class TextError(ValueError):
    """A text that cannot be encoded as UTF-8 (a lone surrogate)."""


class JsonError(ValueError):
    """A JSON document that is not valid JSON, too deep, or holds text that is not UTF-8."""


def check_text(value: str, what: str) -> str:
    """`value` if it can be encoded as UTF-8; TextError naming `what` otherwise."""
    if value.isascii():
        return value  # the common case: no encoding work
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TextError(
            f"{what} is not valid UTF-8 text (lone surrogate at character {exc.start})"
        ) from None
    return value


def check_json_value(data: Any, max_depth: int, what: str = "body") -> None:
    """Every string (keys included) of a parsed JSON value is UTF-8 text, and arrays and
    objects nest at most `max_depth` deep. Iterative: no recursion however deep `data` is.
    The error names where the bad text is (`body.topic`, `frame.ref[0]`)."""
    # (value, depth, parent entry, key or index): the path is only built on failure
    stack: list[tuple[Any, int, Any, object]] = [(data, 1, None, None)]
    while stack:
        item = stack.pop()
        value, depth = item[0], item[1]
        if isinstance(value, str):
            check_text(value, _where(item, what))
        elif isinstance(value, dict):
            if depth > max_depth:
                raise JsonError(f"{what} nests deeper than {max_depth} levels")
            for key, child in value.items():
                check_text(key, f"a key in {_where(item, what)}")
                if isinstance(child, dict | list | str):
                    stack.append((child, depth + 1, item, key))
        elif isinstance(value, list):
            if depth > max_depth:
                raise JsonError(f"{what} nests deeper than {max_depth} levels")
            for index, child in enumerate(value):
                if isinstance(child, dict | list | str):
                    stack.append((child, depth + 1, item, index))


def _where(item: tuple[Any, int, Any, object], what: str) -> str:
    parts: list[str] = []
    while item[2] is not None:
        key = item[3]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{check_text_safe(key)}")
        item = item[2]
    return what + "".join(reversed(parts))


def check_text_safe(value: object) -> str:
    """`value` as text fit for an error message (a lone surrogate shown escaped)."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def parse_json(raw: str | bytes, max_depth: int, what: str = "body") -> Any:
    """Parse a JSON document from a client and check it with `check_json_value`.
    Raises JsonError (TextError included) with a message fit for a 400."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise JsonError(f"{what} nests deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JsonError(f"{what} is not valid JSON: {exc}") from None
    try:
        check_json_value(data, max_depth, what)
    except TextError as exc:
        raise JsonError(str(exc)) from None
    return data
