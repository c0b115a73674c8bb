"""http/endpoints.py: an endpoint declared once gives both its request parsing and its
OpenAPI fragment."""

from __future__ import annotations

import pytest

from pushwire.http.endpoints import Endpoint, Header, Option
from pushwire.http.errors import ApiError
from pushwire.http.stream_endpoints import integer
from pushwire.http.wire import WireRequest

DEMO = Endpoint(
    path="/v1/demo/{name}",
    param="name",
    operations=(("GET", "demo_get"),),
    summary="demo",
    description="a demo",
    tag="demo",
    security="reader",
    options=(Option("n", "a number", "Demo-N"), Option("m", "another")),
    headers=(Header("Content-Type"),),
)


def _request(query: bytes, headers: list[tuple[bytes, bytes]]) -> WireRequest:
    return WireRequest("GET", "/v1/demo/x", query, headers, ("127.0.0.1", 1), path_tail="x")


def test_options_come_from_the_query_or_the_header_and_the_query_wins() -> None:
    headers = [(b"demo-n", b"2"), (b"content-type", b"text/plain")]
    assert DEMO.read_options(_request(b"n=1&m=%20z", headers)) == {
        "n": "1",
        "m": " z",
        "content-type": "text/plain",
    }
    assert DEMO.read_options(_request(b"", headers))["n"] == "2"
    assert DEMO.read_options(_request(b"m=1", []))["n"] is None


def test_the_openapi_fragment_lists_the_declared_parameters_once_per_method() -> None:
    item = DEMO.openapi()
    assert list(item) == ["get"]
    op = item["get"]
    assert op["operationId"] == "demo_get"
    where = [(p["in"], p["name"]) for p in op["parameters"]]
    assert where == [
        ("path", "name"),
        ("query", "n"),
        ("query", "m"),
        ("header", "Demo-N"),
        ("header", "Content-Type"),
    ]
    assert {"auth_query": []} in op["security"]


def test_integer_options_answer_like_fastapi_validation() -> None:
    assert integer({"n": None}, "n") is None
    assert integer({"n": "7"}, "n") == 7
    assert integer({"n": "-3"}, "n") == -3
    for bad in ("x", "1.5", "", "1e3"):
        with pytest.raises(ApiError) as info:
            integer({"n": bad}, "n")
        assert info.value.status == 400 and info.value.code == "bad_request"
        assert info.value.message.startswith("query.n: Input should be a valid integer")
