"""`pushwire sub`: subscribe and print messages, with mosquitto_sub's habits (docs/cli.md)."""

from __future__ import annotations

import argparse
import queue
import sys
import time
from typing import Any, Protocol

from pushwire.cli_common import (
    CliError,
    Exit,
    Gap,
    Ready,
    add_connection_args,
    parse_endpoint,
)
from pushwire.cli_format import PLACEHOLDERS, FormatError, Received, check_format, render


class Subscriber(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...


def add_sub_command(commands: Any) -> None:
    # argparse expands % in help texts: double them
    placeholders = ", ".join(f"%{k} {v}" for k, v in PLACEHOLDERS.items()).replace("%", "%%")
    sub = commands.add_parser(
        "sub",
        add_help=False,
        help="subscribe and print messages (like mosquitto_sub)",
        description="Subscribe to topic filters and print what arrives. "
        "Exit codes: 0 done, 1 connection or protocol error, 2 usage, 3 refused "
        "(credentials or topic ACL), 4 -W timeout. See docs/cli.md.",
    )
    add_connection_args(sub)
    sub.add_argument(
        "-t",
        "--topic",
        dest="filters",
        action="append",
        required=True,
        metavar="FILTER",
        help="topic filter (+ and # wildcards); repeat for several",
    )
    sub.add_argument(
        "-v", "--verbose", action="store_true", help="print the topic, a space, then the payload"
    )
    sub.add_argument(
        "-F",
        "--format",
        dest="fmt",
        metavar="FORMAT",
        help=f"output format: {placeholders}; \\n \\t \\\\ escapes",
    )
    sub.add_argument("--json", action="store_true", help="print each message as one JSON line")
    sub.add_argument("-N", dest="eol", action="store_false", help="no newline after each message")
    sub.add_argument(
        "-C", "--count", type=int, metavar="COUNT", help="exit (0) after COUNT messages"
    )
    sub.add_argument(
        "-W",
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="exit (4) if not done after SECONDS (with -C: COUNT messages not yet received)",
    )
    sub.add_argument(
        "--since",
        help="replay from the message log first: an id, EPOCH:ID, all, 10m, @UNIXTIME "
        "(http(s) and the /v1/ws protocol only; MQTT has no log)",
    )
    mode = sub.add_mutually_exclusive_group()
    mode.add_argument(
        "--sse",
        dest="mode",
        action="store_const",
        const="sse",
        help="http(s): Server-Sent Events (default)",
    )
    mode.add_argument(
        "--longpoll", dest="mode", action="store_const", const="longpoll", help="http(s): long-poll"
    )
    mode.add_argument(
        "--poll",
        dest="mode",
        action="store_const",
        const="poll",
        help="http(s): poll every --interval seconds",
    )
    sub.add_argument("--interval", type=float, default=1.0, help="seconds between polls (--poll)")
    sub.add_argument(
        "-d", "--debug", action="store_true", help="say on stderr when each subscription is live"
    )


def _make_subscriber(ns: argparse.Namespace, events: queue.Queue[Any]) -> Subscriber:
    ep = parse_endpoint(ns)
    if ep.kind in ("mqtt", "mqtt-ws"):
        if ns.since is not None:
            raise CliError(
                Exit.USAGE, "--since needs an http(s):// URL or the JSON WebSocket (ws://.../v1/ws)"
            )
        if ns.mode is not None:
            raise CliError(Exit.USAGE, f"--{ns.mode} needs an http(s):// URL")
        if ns.scram:
            from pushwire.cli_scram import ScramSubscriber, check_version

            check_version(ns.protocol_version)
            return ScramSubscriber(ep, ns.filters, ns.qos, events, client_id=ns.client_id)
        from pushwire.cli_mqtt import MqttSubscriber

        return MqttSubscriber(
            ep, ns.filters, ns.qos, events, client_id=ns.client_id, version=ns.protocol_version
        )
    if ns.scram:
        raise CliError(Exit.USAGE, "--scram needs an mqtt:// or mqtts:// URL")
    if ns.mode is not None and ep.kind != "http":
        raise CliError(Exit.USAGE, f"--{ns.mode} needs an http(s):// URL")
    if ep.kind == "json-ws":
        from pushwire.cli_jsonws import JsonWsSubscriber

        return JsonWsSubscriber(ep, ns.filters, events, ns.since)
    from pushwire.cli_http import HttpSubscriber

    return HttpSubscriber(
        ep, ns.filters, events, mode=ns.mode or "sse", since=ns.since, interval=ns.interval
    )


def run_sub(ns: argparse.Namespace) -> int:
    try:
        if ns.fmt is not None:
            check_format(ns.fmt)
        if ns.count is not None and ns.count < 1:
            raise CliError(Exit.USAGE, "-C COUNT must be at least 1")
        if ns.timeout is not None and ns.timeout <= 0:
            raise CliError(Exit.USAGE, "-W SECONDS must be positive")
        events: queue.Queue[Any] = queue.Queue()
        subscriber = _make_subscriber(ns, events)
    except FormatError as exc:
        return _fail(CliError(Exit.USAGE, str(exc)))
    except CliError as exc:
        return _fail(exc)
    try:
        subscriber.start()
        return _print_loop(ns, events)
    except CliError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return Exit.OK
    finally:
        subscriber.close()


def _print_loop(ns: argparse.Namespace, events: queue.Queue[Any]) -> int:
    out = sys.stdout.buffer
    deadline = time.monotonic() + ns.timeout if ns.timeout is not None else None
    received = 0
    while True:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            print(f"pushwire sub: timed out after {ns.timeout:g}s", file=sys.stderr)
            return Exit.TIMEOUT
        try:
            event = events.get(timeout=wait)
        except queue.Empty:
            continue
        if isinstance(event, CliError):
            raise event
        if isinstance(event, Ready):
            if ns.debug:
                print(f"pushwire sub: subscribed to {event.filter}", file=sys.stderr, flush=True)
        elif isinstance(event, Gap):
            where = f" (resuming at {event.cursor})" if event.cursor else ""
            print(
                f"pushwire sub: gap in {event.filter}: messages were lost (evicted or log "
                f"reset){where}",
                file=sys.stderr,
                flush=True,
            )
        elif isinstance(event, Received):
            out.write(render(event, verbose=ns.verbose, as_json=ns.json, fmt=ns.fmt, eol=ns.eol))
            out.flush()
            received += 1
            if ns.count is not None and received >= ns.count:
                return Exit.OK


def _fail(exc: CliError) -> int:
    print(f"pushwire sub: {exc.message}", file=sys.stderr)
    return int(exc.code)
