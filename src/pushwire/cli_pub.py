"""`pushwire pub`: publish messages, with mosquitto_pub's habits (docs/cli.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any, Protocol

from pushwire.cli_common import CliError, Exit, Outgoing, add_connection_args, parse_endpoint


class Publisher(Protocol):
    def connect(self) -> None: ...
    def publish(self, out: Outgoing) -> None: ...
    def close(self) -> None: ...


def add_pub_command(commands: Any) -> None:
    pub = commands.add_parser(
        "pub",
        add_help=False,
        help="publish messages (like mosquitto_pub)",
        description="Publish to a topic. Exit codes: 0 published, 1 connection or protocol "
        "error, 2 usage, 3 refused (credentials or topic ACL). See docs/cli.md.",
    )
    add_connection_args(pub)
    pub.add_argument("-t", "--topic", required=True, help="topic to publish to")
    body = pub.add_mutually_exclusive_group(required=True)
    body.add_argument("-m", "--message", help="the payload")
    body.add_argument("-f", "--file", type=argparse.FileType("rb"), help="the payload: a file")
    body.add_argument("-s", "--stdin-file", action="store_true", help="the payload: all of stdin")
    body.add_argument(
        "-l", "--stdin-line", action="store_true", help="one message per line of stdin"
    )
    body.add_argument("-n", "--null-message", action="store_true", help="an empty payload")
    pub.add_argument("-r", "--retain", action="store_true", help="retain the message")
    pub.add_argument("--ttl", help="expire after this long: seconds or a duration (10m)")
    pub.add_argument("--priority", help="1..5 or min, low, default, high, max")
    pub.add_argument("--content-type", help="content type (MQTT 5 subscribers see it)")


def _payloads(ns: argparse.Namespace) -> Iterator[bytes]:
    if ns.message is not None:
        yield ns.message.encode()
    elif ns.file is not None:
        with ns.file:
            yield ns.file.read()
    elif ns.stdin_file:
        yield sys.stdin.buffer.read()
    elif ns.stdin_line:
        for line in sys.stdin.buffer:
            yield line.rstrip(b"\r\n")
    else:
        yield b""


def _make_publisher(ns: argparse.Namespace) -> Publisher:
    ep = parse_endpoint(ns)
    if ns.scram:
        from pushwire.cli_scram import ScramPublisher, check_version

        check_version(ns.protocol_version)
        return ScramPublisher(ep, client_id=ns.client_id)
    if ep.kind in ("mqtt", "mqtt-ws"):
        from pushwire.cli_mqtt import MqttPublisher

        return MqttPublisher(ep, client_id=ns.client_id, version=ns.protocol_version)
    if ep.kind == "json-ws":
        from pushwire.cli_jsonws import JsonWsPublisher

        return JsonWsPublisher(ep)
    from pushwire.cli_http import HttpPublisher

    return HttpPublisher(ep)


def run_pub(ns: argparse.Namespace) -> int:
    publisher: Publisher | None = None
    try:
        publisher = _make_publisher(ns)
        publisher.connect()
        for payload in _payloads(ns):
            publisher.publish(
                Outgoing(
                    topic=ns.topic,
                    payload=payload,
                    qos=ns.qos,
                    retain=ns.retain,
                    ttl=ns.ttl,
                    priority=ns.priority,
                    content_type=ns.content_type,
                )
            )
    except CliError as exc:
        print(f"pushwire pub: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        return Exit.OK
    finally:
        if publisher is not None:
            publisher.close()
    return Exit.OK
