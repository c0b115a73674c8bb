"""Shared fixtures: a real broker process and real clients, all cleaned up by PID/handle.

``PUSHWIRE_TEST_BROKER=mosquitto`` runs the integration suite against Debian's mosquitto
instead of pushwire (see tests/helpers/server.py). Markers:

* ``@pytest.mark.pushwire_only("why")``: skipped under mosquitto.
* ``@pytest.mark.mosquitto_deviation("what mosquitto does instead")``: a spec behaviour that
  mosquitto does not follow; strict xfail under mosquitto (an unexpected pass is an error, so
  the note stays true), a normal test under pushwire.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.clients import PahoClient
from helpers.httpx_tls import share_default_tls_context
from helpers.raw import RawClient, connected_client
from helpers.redis import redis_server  # noqa: F401 (fixture: a private redis-server)
from helpers.server import ServerProcess, broker_kind, raise_nofile_limit

INTEGRATION_TIMEOUT = 60

raise_nofile_limit()
share_default_tls_context()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pushwire_only(reason): skip when testing mosquitto")
    config.addinivalue_line(
        "markers", "mosquitto_deviation(reason): strict xfail when testing mosquitto"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"integration broker: {broker_kind()} (set PUSHWIRE_TEST_BROKER=mosquitto|pushwire)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kind = broker_kind()
    integration_dir = Path(__file__).parent / "integration"
    for item in items:
        if integration_dir in item.path.parents and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(INTEGRATION_TIMEOUT))
        if kind != "mosquitto":
            continue
        only = item.get_closest_marker("pushwire_only")
        if only is not None:
            reason = only.args[0] if only.args else "pushwire-only behaviour"
            item.add_marker(pytest.mark.skip(reason=f"mosquitto: {reason}"))
        deviation = item.get_closest_marker("mosquitto_deviation")
        if deviation is not None:
            reason = deviation.args[0] if deviation.args else "documented mosquitto deviation"
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"mosquitto deviation: {reason}"))


_SERVERS = pytest.StashKey[list[ServerProcess]]()
LOG_TAIL_LINES = 150


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of every server log to a failing test's report."""
    report = yield
    if report.failed:
        started: list[ServerProcess] = item.stash.get(_SERVERS, [])
        servers = [*started]
        funcargs = getattr(item, "funcargs", {})
        if isinstance(funcargs.get("shared_server"), ServerProcess):
            servers.append(funcargs["shared_server"])
        for srv in servers:
            lines = srv.output().splitlines()[-LOG_TAIL_LINES:]
            report.sections.append(
                (f"server log {srv.log_path} (last {len(lines)} lines)", "\n".join(lines))
            )
    return report


@pytest.fixture(scope="session")
def broker() -> str:
    """'pushwire' or 'mosquitto': which broker the integration suite runs against."""
    return broker_kind()


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """``server_factory(**options)`` starts a broker; every one started is stopped at teardown.

    Options: memory, sys_interval, max_queued_messages, max_inflight, max_packet_size,
    max_connections, durability, admin=(user, password), extra_args (see ServerProcess).
    """
    started: list[ServerProcess] = []
    request.node.stash[_SERVERS] = started

    def factory(**options: Any) -> ServerProcess:
        srv = ServerProcess(tmp_path / f"data{len(started)}", tmp_path / "logs", **options)
        started.append(srv)
        srv.start()
        return srv

    yield factory

    errors: list[str] = []
    for srv in started:
        try:
            srv.cleanup()
        except BaseException as exc:  # report every server, not only the first
            errors.append(f"{srv!r}: {exc}")
    if errors:
        pytest.fail("server teardown failed:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default server for a whole module, for tests that check it survives a sequence."""
    base = tmp_path_factory.mktemp("shared")
    srv = ServerProcess(base / "data", base / "logs")
    try:
        srv.start()
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
def paho_client() -> Iterator[Callable[..., PahoClient]]:
    """``paho_client(server, client_id="", clean_session=True, keepalive=60, will=None,
    auth=None, connect=True)``: a paho client (MQTT 3.1.1), connected unless connect=False."""
    clients: list[PahoClient] = []

    def factory(
        srv: ServerProcess, client_id: str = "", *, connect: bool = True, **kw: Any
    ) -> PahoClient:
        client = PahoClient(srv.host, srv.mqtt_port, client_id, **kw)
        clients.append(client)
        if connect:
            client.connect()
        return client

    yield factory
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()


@pytest.fixture
def raw_client() -> Iterator[Callable[..., RawClient]]:
    """``raw_client(server)``: an unconnected TCP connection;
    ``raw_client(server, "id", clean_session=..., ...)``: one that completed CONNECT/CONNACK 0."""
    clients: list[RawClient] = []

    def factory(srv: ServerProcess, client_id: str | None = None, **kw: Any) -> RawClient:
        if client_id is None:
            client = RawClient(srv.host, srv.mqtt_port)
        else:
            client = connected_client(srv.host, srv.mqtt_port, client_id, **kw)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
