"""/metrics shows `pushwire_log_reads_spared_total`: long-poll re-asks on a quiet topic
held again without reading the log (`MessageLog.quiet_after`), so an operator sees the
per-user-topic shortcut at work. Real sockets and httpx against an in-process server."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import httpx
import pytest

from helpers.inproc import InProcessServer, running
from helpers.rawhttp import Reader, longpoll_request, publish, until, waiters

pytestmark = pytest.mark.pushwire_only("the /metrics families are pushwire's")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(log_max_messages=100))


def _spared(srv: InProcessServer) -> float:
    assert srv.server is not None and srv.server.http_address is not None
    host, port = srv.server.http_address[:2]
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
    found = re.search(r"^pushwire_log_reads_spared_total (\S+)$", text, re.M)
    assert found is not None, "pushwire_log_reads_spared_total is not in /metrics"
    return float(found.group(1))


def test_a_quiet_reask_is_counted_in_metrics(srv: InProcessServer) -> None:
    assert srv.server is not None and srv.server.http_address is not None
    before = _spared(srv)
    with socket.create_connection(srv.server.http_address, timeout=10) as sock:
        reader = Reader(sock)
        publish(srv, "spared/mine", b"m0")
        sock.sendall(longpoll_request("spared/mine", "all"))
        status, headers, _ = reader.response()
        assert status == 200
        publish(srv, "spared/other", b"o0")  # the log's last id moves past the cursor
        sock.sendall(longpoll_request("spared/mine", headers["pushwire-cursor"]))
        until(lambda: len(waiters(srv, "spared/mine")) == 1)  # held: nothing newer
        assert _spared(srv) >= before + 1
        publish(srv, "spared/mine", b"m1")  # and it still gets its next message
        status, _, body = reader.response()
        assert status == 200 and b"m1" in body
