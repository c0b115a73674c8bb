"""`pushwire pub`/`sub` without a server: -F placeholders and escapes, -v, --json, the
message model, and how the URL and credentials pick the transport."""

from __future__ import annotations

import argparse
import json

import pytest

from pushwire.cli_common import CliError, Endpoint, Exit, parse_endpoint
from pushwire.cli_format import FormatError, Received, check_format, render, render_format


def message(**kw: object) -> Received:
    base: dict[str, object] = {
        "topic": "a/b",
        "payload": b"hi",
        "qos": 1,
        "retain": True,
        "id": 42,
        "epoch": "ep",
        "time": 1764190000.5,
        "content_type": "text/plain",
    }
    base.update(kw)
    return Received(**base)  # type: ignore[arg-type]


def test_placeholders() -> None:
    got = render_format("%t|%p|%i|%C|%q|%r|%l|%x|%c|%U|%I|%%", message())
    assert got == (
        b"a/b|hi|42|ep:42|1|1|2|6869|text/plain|1764190000.500000|2025-11-26T20:46:40.500Z|%"
    )


def test_escapes_and_raw_binary_payload() -> None:
    assert render_format(r"%t\t%p\n", message(payload=b"\xff\x00")) == b"a/b\t\xff\x00\n"


def test_mqtt_message_has_empty_id_and_cursor() -> None:
    msg = message(id=None, epoch=None, time=None, content_type=None)
    assert render_format("[%i][%C][%c]", msg) == b"[][][]"


@pytest.mark.parametrize("fmt", ["%z", "%", r"\q", "ok %t %y"])
def test_unknown_placeholder_is_refused(fmt: str) -> None:
    with pytest.raises(FormatError):
        check_format(fmt)


def test_plain_verbose_json_and_no_eol() -> None:
    msg = message()
    assert render(msg, verbose=False, as_json=False, fmt=None, eol=True) == b"hi\n"
    assert render(msg, verbose=True, as_json=False, fmt=None, eol=True) == b"a/b hi\n"
    assert render(msg, verbose=True, as_json=False, fmt=None, eol=False) == b"a/b hi"
    line = render(msg, verbose=False, as_json=True, fmt=None, eol=True)
    assert json.loads(line) == {
        "id": 42,
        "topic": "a/b",
        "time": 1764190000.5,
        "epoch": "ep",
        "payload": "hi",
        "content_type": "text/plain",
        "qos": 1,
        "retain": True,
    }


def test_from_json_round_trip_with_binary_payload() -> None:
    data = {
        "id": 7,
        "topic": "x",
        "time": 1.0,
        "epoch": "e",
        "payload_base64": "/wA=",
        "priority": 4,
    }
    msg = Received.from_json(data)
    assert msg.payload == b"\xff\x00" and msg.extra == {"priority": 4}
    assert msg.as_json()["payload_base64"] == "/wA="


def _endpoint(url: str, *extra: str) -> Endpoint:
    from pushwire.cli_sub import add_sub_command

    parser = argparse.ArgumentParser()
    add_sub_command(parser.add_subparsers())
    return parse_endpoint(parser.parse_args(["sub", "-L", url, "-t", "x", *extra]))


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        ("mqtt://h", "mqtt", ("h", 1883)),
        ("mqtts://h", "mqtt", ("h", 8883)),
        ("ws://h:8080", "mqtt-ws", ("h", 8080, "ws://h:8080/mqtt")),
        ("wss://h/v1/ws/", "json-ws", ("h", 443, "wss://h:443/v1/ws")),
        ("http://h:8080", "http", ("h", 8080, "http://h:8080")),
        ("https://h/push/", "http", ("h", 443, "https://h:443/push")),
    ],
)
def test_url_picks_the_transport(url: str, kind: str, where: tuple[object, ...]) -> None:
    ep = _endpoint(url)
    assert ep.kind == kind and (ep.host, ep.port) == where[:2]
    if len(where) > 2:
        assert (ep.ws_url if ep.scheme.startswith("ws") else ep.http_base) == where[2]


def test_credentials_from_url_flags_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUSHWIRE_TOKEN", raising=False)
    ep = _endpoint("mqtt://al%40ice:pw@h")
    assert (ep.username, ep.password, ep.token) == ("al@ice", "pw", None)
    monkeypatch.setenv("PUSHWIRE_TOKEN", "pw_env")
    assert _endpoint("http://h").token == "pw_env"
    assert _endpoint("http://h", "-u", "bob").token is None  # -u wins over the env token
    assert _endpoint("http://h", "-h", "other", "-p", "1").basic_or_bearer() == {
        "Authorization": "Bearer pw_env"
    }
    with pytest.raises(CliError) as exc:
        _endpoint("http://h", "-u", "bob", "--token", "pw_x")
    assert exc.value.code == Exit.USAGE
