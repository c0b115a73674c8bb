"""Shared bits of the HTTP transport tests (test_http_*.py): start a server with settings,
URLs, a paho MQTT-over-WebSocket client, curl."""

from __future__ import annotations

import json
import queue
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from helpers.server import ServerProcess


class HttpServerProcess(ServerProcess):
    """tests/helpers' ServerProcess plus any `pushwire serve` flag (the HTTP settings)."""

    def __init__(self, data_dir: Path, log_dir: Path, flags: list[str], **options: Any) -> None:
        super().__init__(data_dir, log_dir, **options)
        self.flags = flags

    def _pushwire_command(self) -> list[str]:
        return [*super()._pushwire_command(), *self.flags]


StartServer = Callable[..., HttpServerProcess]


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[StartServer]:
    """`http_server(memory=True, log_max_messages=3, ...)`: a running pushwire whose extra
    settings become flags; every one started is stopped (and checked) at teardown."""
    started: list[HttpServerProcess] = []

    def factory(
        *, memory: bool = True, durability: bool | None = None, **settings: Any
    ) -> HttpServerProcess:
        flags: list[str] = []
        for name, value in settings.items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                flags.append(flag if value else "--no-" + flag[2:])
            else:
                text = json.dumps(value) if isinstance(value, list | dict) else str(value)
                flags += [flag, text]
        options: dict[str, Any] = {"memory": memory, "sys_interval": 0}
        if durability is not None:
            options["durability"] = durability
        srv = HttpServerProcess(
            tmp_path / f"http-data{len(started)}",
            tmp_path / "logs",
            flags,
            kind="pushwire",
            **options,
        )
        started.append(srv)
        srv.start()
        return srv

    yield factory
    for srv in started:
        srv.cleanup()


def base(server: ServerProcess) -> str:
    assert server.http_port is not None
    return f"http://{server.host}:{server.http_port}"


def ws_url(server: ServerProcess, path: str = "/v1/ws") -> str:
    assert server.http_port is not None
    return f"ws://{server.host}:{server.http_port}{path}"


def curl(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout, check=True)


class PahoWS:
    """paho-mqtt over WebSocket (`/mqtt`, subprotocol mqtt): a subscriber for tests."""

    def __init__(self, server: ServerProcess, client_id: str) -> None:
        assert server.http_port is not None
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[int] = queue.Queue()
        self.connected: queue.Queue[Any] = queue.Queue()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            transport="websockets",
            protocol=MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
        )
        c.ws_set_options(path="/mqtt")
        c.on_connect = lambda *a: self.connected.put(a[3])
        c.on_subscribe = lambda *a: self.subacks.put(a[2])
        c.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client = c
        c.connect(server.host, server.http_port, keepalive=30)
        c.loop_start()
        rc = self.connected.get(timeout=5)
        assert rc == 0, rc

    def subscribe(self, flt: str, qos: int = 0) -> None:
        _, mid = self.client.subscribe(flt, qos)
        assert self.subacks.get(timeout=5) == mid

    def get(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
