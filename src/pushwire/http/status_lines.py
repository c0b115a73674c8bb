"""HTTP/1.1 status lines and the prebuilt heads of JSON replies, made once per status."""

from __future__ import annotations

import http


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {s.value: _status_line(s.value) for s in http.HTTPStatus}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else _status_line(status)


_JSON_HEADS: dict[int, bytes] = {}
_JSON_201 = status_line(201) + b"content-type: application/json\r\ncontent-length: "


def _json_head(status: int) -> bytes:
    """Status line, JSON content type and the name of the length, for a kept-alive reply."""
    head = _JSON_HEADS.get(status)
    if head is None:
        head = _JSON_HEADS[status] = (
            status_line(status) + b"content-type: application/json\r\ncontent-length: "
        )
    return head
