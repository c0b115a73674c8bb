"""The server as a process: graceful stop on SIGTERM/SIGINT, HTTP health endpoint."""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
import pytest

from helpers.clients import PahoClient
from helpers.raw import RawClient
from helpers.server import ServerProcess

RawFactory = Callable[..., RawClient]
PahoFactory = Callable[..., PahoClient]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_with_connected_clients(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory, sig: int
) -> None:
    raws = [raw_client(server, f"stop-raw-{i}", clean_session=i % 2 == 0) for i in range(3)]
    paho = paho_client(server, "stop-paho")
    assert paho.subscribe("stop/t", 1) == [1]

    rc = server.stop(timeout=5, sig=sig)  # asserts exit code 0 within 5 s
    assert rc == 0

    for c in raws:
        c.read_until_closed(timeout=2)
    assert paho.disconnected.wait(5), "paho client did not see the connection close"


def test_restart_after_graceful_stop_serves_again(
    server: ServerProcess, paho_client: PahoFactory
) -> None:
    server.restart()
    sub = paho_client(server, "restarted-sub")
    assert sub.subscribe("rs/t", 1) == [1]
    paho_client(server, "restarted-pub").publish("rs/t", b"up", qos=1)
    assert sub.get().payload == b"up"


@pytest.mark.pushwire_only("HTTP API is pushwire's")
def test_http_health(server: ServerProcess) -> None:
    assert server.http_port
    response = httpx.get(f"http://{server.host}:{server.http_port}/v1/health", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
