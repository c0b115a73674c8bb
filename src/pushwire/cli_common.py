"""What `pushwire pub` and `pushwire sub` share: the server URL, credentials, TLS options,
exit codes and the errors transports raise (docs/cli.md)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    import ssl  # imported by ssl_context: `pub --help` and plain-text URLs need no TLS

DEFAULT_URL = "mqtt://127.0.0.1:1883"
URL_ENV = "PUSHWIRE_URL"
TOKEN_ENV = "PUSHWIRE_TOKEN"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443, "http": 80, "https": 443}
JSON_WS_PATH = "/v1/ws"
MQTT_WS_PATH = "/mqtt"


class Exit(IntEnum):
    """Exit codes of `pushwire pub` / `pushwire sub` (docs/cli.md)."""

    OK = 0
    ERROR = 1  # connection failed or lost, protocol error, server error
    USAGE = 2  # bad arguments (argparse uses 2 as well)
    REFUSED = 3  # bad credentials, or the topic ACL refused the publish or subscription
    TIMEOUT = 4  # -W SECONDS passed before the work was done


class CliError(Exception):
    """Ends the command with `code` after printing `message` to stderr."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def refused(message: str) -> CliError:
    return CliError(Exit.REFUSED, message)


def failed(message: str) -> CliError:
    return CliError(Exit.ERROR, message)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect and how: parsed from `--url` (plus -h/-p overrides)."""

    scheme: str  # mqtt, mqtts, ws, wss, http, https
    host: str
    port: int
    path: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    cafile: Path | None = None
    insecure: bool = False

    @property
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "wss", "https")

    @property
    def kind(self) -> str:
        """`mqtt` (TCP or TLS), `mqtt-ws` (MQTT over WebSocket), `json-ws` (/v1/ws), `http`."""
        if self.scheme in ("mqtt", "mqtts"):
            return "mqtt"
        if self.scheme in ("ws", "wss"):
            return "json-ws" if self.path.endswith(JSON_WS_PATH) else "mqtt-ws"
        return "http"

    @property
    def http_base(self) -> str:
        """Base URL of the HTTP API; an http(s) URL's path is kept as a prefix (a reverse
        proxy serving pushwire under /push/)."""
        scheme = {"ws": "http", "wss": "https"}.get(self.scheme, self.scheme)
        host = f"[{self.host}]" if ":" in self.host else self.host
        prefix = self.path.rstrip("/") if self.kind == "http" else ""
        return f"{scheme}://{host}:{self.port}{prefix}"

    @property
    def ws_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def basic_or_bearer(self) -> dict[str, str]:
        """The HTTP `Authorization` header for these credentials (none: no header)."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None:
            import base64

            raw = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}


def parse_endpoint(ns: argparse.Namespace) -> Endpoint:
    """The endpoint from --url / PUSHWIRE_URL, -h/-p, -u/-P, --token / PUSHWIRE_TOKEN."""
    url = ns.url or os.environ.get(URL_ENV) or DEFAULT_URL
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise CliError(
            Exit.USAGE,
            f"unsupported URL scheme {parts.scheme!r} in {url!r}: use mqtt, mqtts, ws, wss, "
            "http or https",
        )
    try:
        url_port = parts.port
    except ValueError:
        raise CliError(Exit.USAGE, f"bad port in {url!r}") from None
    host = ns.host or parts.hostname or "127.0.0.1"
    port = ns.port or url_port or DEFAULT_PORTS[scheme]
    path = parts.path or ""
    if scheme in ("ws", "wss"):
        if path in ("", "/"):
            path = MQTT_WS_PATH
        elif path.rstrip("/").endswith(JSON_WS_PATH):
            path = path.rstrip("/")
    username = ns.username if ns.username is not None else _url_part(parts.username)
    password = ns.password if ns.password is not None else _url_part(parts.password)
    token = ns.token or os.environ.get(TOKEN_ENV) or None
    if ns.token and username is not None:
        raise CliError(Exit.USAGE, "give --token or -u/-P, not both")
    if username is not None:
        token = None  # a user named on the command line wins over PUSHWIRE_TOKEN
    return Endpoint(
        scheme=scheme,
        host=host,
        port=port,
        path=path,
        username=username,
        password=password,
        token=token,
        cafile=ns.cafile,
        insecure=ns.insecure,
    )


def _url_part(value: str | None) -> str | None:
    return unquote(value) if value is not None else None


def quote_filter(topic_or_filter: str) -> str:
    """A topic or filter as an HTTP path: `#` and `$` (and anything unusual) percent-encoded,
    `/` and `+` as they are."""
    return quote(topic_or_filter, safe="/+")


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """Options both commands take (mosquitto_pub/sub spelling where there is one)."""
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument(
        "-L",
        "--url",
        metavar="URL",
        help="server: mqtt://, mqtts://, ws://, wss:// (MQTT over WebSocket at /mqtt, the JSON "
        "protocol when the path is /v1/ws), http:// or https:// "
        f"(env {URL_ENV}, default {DEFAULT_URL})",
    )
    parser.add_argument("-h", "--host", help="host, overriding the URL's")
    parser.add_argument("-p", "--port", type=int, help="port, overriding the URL's")
    parser.add_argument("-u", "--username", help="user name (MQTT username, HTTP Basic)")
    parser.add_argument("-P", "--pw", "--password", dest="password", help="password")
    parser.add_argument(
        "--token", help=f"access token (pw_...), instead of -u/-P (env {TOKEN_ENV})"
    )
    parser.add_argument(
        "--scram",
        action="store_true",
        help="log in with SCRAM-SHA-256 (MQTT 5 enhanced authentication, mqtt:// or mqtts://, "
        "-u/-P): the password never crosses the wire, and the server proves it knows it",
    )
    parser.add_argument(
        "-i", "--id", dest="client_id", default="", help="MQTT client id (default: random)"
    )
    parser.add_argument(
        "-V",
        "--protocol-version",
        choices=["311", "5"],
        default="5",
        help="MQTT protocol version (default 5)",
    )
    parser.add_argument("--cafile", type=Path, help="CA bundle to verify the server with")
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    parser.add_argument(
        "-q", "--qos", type=int, choices=[0, 1, 2], default=0, help="QoS (default 0)"
    )


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages after the subscriber's cursor are gone; printed to stderr, one line."""

    filter: str
    cursor: str | None


@dataclass(frozen=True, slots=True)
class Ready:
    """A subscription is live: what is published from now on reaches it."""

    filter: str


@dataclass(slots=True)
class Outgoing:
    """One message for `pushwire pub` to send."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    ttl: str | None = None
    priority: str | None = None
    content_type: str | None = None


def http_refusal(status: int, body: bytes) -> CliError:
    """A CliError for an HTTP error reply (401/403: refused; anything else: error)."""
    import json

    message = f"HTTP {status}"
    try:
        error = json.loads(body)["error"]
        message = f"{message} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = body[:200].decode("utf-8", "replace").strip()
        if text:
            message = f"{message}: {text}"
    return CliError(Exit.REFUSED if status in (401, 403) else Exit.ERROR, message)
