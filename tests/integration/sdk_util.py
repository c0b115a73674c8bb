"""Shared bits of the SDK tests (test_sdk_*.py): a pushwire with the device gateway as a real
subprocess, apps made with the `pushwire app create` CLI, and waiting for conditions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.gateway import app_create
from helpers.server import ServerProcess

# short windows so a test sees batching and wakes without waiting a minute
GATEWAY_FLAGS = ["--push-batch-window", "0.2", "--sys-interval", "0"]


@dataclass(frozen=True)
class App:
    app_id: str
    api_key: str


class GatewayServer(ServerProcess):
    """A pushwire process (SQLite store, durable) with gateway flags; restartable on the same
    ports with :meth:`restart_same_ports` (a device's saved address stays right)."""

    def __init__(self, data_dir: Path, log_dir: Path, flags: list[str]) -> None:
        super().__init__(data_dir, log_dir, kind="pushwire")
        self.flags = flags

    def _pushwire_command(self) -> list[str]:
        return [*super()._pushwire_command(), *self.flags]

    @property
    def base_url(self) -> str:
        assert self.http_port is not None
        return f"http://{self.host}:{self.http_port}"

    def pin_ports(self) -> None:
        """Make the next start listen on the ports of this one (later flags win)."""
        self.flags = [
            *self.flags,
            *("--mqtt-port", str(self.mqtt_port), "--http-port", str(self.http_port)),
        ]

    def create_app(self, name: str) -> App:
        app = create_app(self.data_dir, name)
        wait_app_loaded(self.base_url, app)
        return app


def create_app(data_dir: Path, name: str) -> App:
    """`pushwire app create NAME --json` on the server's data dir (the CLI the docs show),
    in-process (helpers.gateway.app_create)."""
    data = app_create(data_dir, name)
    return App(data["app_id"], data["api_key"])


def wait_app_loaded(base_url: str, app: App) -> None:
    """A running server reads the store change within about a second: wait until the key is
    accepted (an unknown push id gives 404 NotFound only to an authenticated app)."""
    probe = f"{base_url}/v1/push/00000000-0000-4000-8000-000000000000"
    auth = {"authorization": f"Bearer {app.api_key}"}
    wait_for_sync(lambda: httpx.get(probe, headers=auth).status_code == 404, what="app loaded")


StartGateway = Callable[..., GatewayServer]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[StartGateway]:
    """`gateway(*flags)`: a running pushwire with the gateway; stopped at teardown."""
    started: list[GatewayServer] = []

    def factory(*flags: str) -> GatewayServer:
        srv = GatewayServer(
            tmp_path / f"gw-data{len(started)}", tmp_path / "logs", [*GATEWAY_FLAGS, *flags]
        )
        started.append(srv)
        srv.start()
        return srv

    yield factory
    for srv in started:
        srv.cleanup()


async def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``cond`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


def wait_for_sync(cond: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.02)
