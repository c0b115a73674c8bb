"""Nodes of one pushwire cluster: pushwire subprocesses on engine=redis sharing a private
redis-server (tests/helpers/redis.py), and the waits the cross-node tests share."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.clients import PahoClient
from helpers.redis import RedisServer
from helpers.server import ServerProcess

StartNode = Callable[..., ServerProcess]
DEADLINE = 15.0


@pytest.fixture
def cluster_node(tmp_path: Path, redis_server: RedisServer) -> Iterator[StartNode]:
    """`cluster_node()` starts one more node on the test's redis-server."""
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        srv = ServerProcess(
            tmp_path / f"node{len(started)}",
            tmp_path / "logs",
            kind="pushwire",
            sys_interval=0,
            extra_args=["--engine", "redis", "--redis-url", redis_server.url, *flags],
        )
        started.append(srv)
        srv.start()
        return srv

    yield start
    for srv in started:
        srv.cleanup()


def base(srv: ServerProcess) -> str:
    return f"http://{srv.host}:{srv.http_port}"


def mqtt_subscriber(srv: ServerProcess, client_id: str, flt: str, qos: int = 1) -> PahoClient:
    client = PahoClient(srv.host, srv.mqtt_port, client_id)
    client.connect()
    client.subscribe(flt, qos)
    return client


def payloads(client: PahoClient, n: int, timeout: float = DEADLINE) -> list[bytes]:
    return [bytes(client.get(timeout).payload) for _ in range(n)]


def wait_for(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `check` until it returns something truthy (events, not time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def publish_http(srv: ServerProcess, topic: str, payload: bytes, **params: Any) -> httpx.Response:
    return httpx.post(f"{base(srv)}/v1/publish/{topic}", content=payload, params=params, timeout=10)


def poll(srv: ServerProcess, flt: str, since: str) -> dict[str, Any]:
    r = httpx.get(f"{base(srv)}/v1/poll/{flt}", params={"since": since}, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body
