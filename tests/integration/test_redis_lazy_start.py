"""engine=redis starts without reading the topic streams (engines/redis/history.py).

A node that starts reads no history: positions up to the fan-out position it starts from
are read from Redis when a reader asks for them (`log_scan`), so a node with a million
topics in Redis starts in bounded time and memory. Cursors taken on another node still
resume exactly on it, over one topic and over a wildcard, and evictions before the start
are still reported as gaps. Real private redis-server; Redis' `INFO commandstats` shows
what the start-up read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from helpers.inproc import InProcessServer
from helpers.redis import RedisServer

TOPICS = 40
PER_TOPIC = 3
KEEP = 3  # messages each topic keeps (count retention), so ev/t has an eviction


# one keep-alive HTTP client per node: `httpx.post` makes a Client, and its TLS context
# (~25 ms of CPU), per call, and a test here makes ~160 calls (60 s, its whole timeout, on
# a loaded machine)
_CLIENTS: dict[int, httpx.Client] = {}


@pytest.fixture
def start_node(redis_server: RedisServer, tmp_path: Path) -> Iterator[Any]:
    started: list[InProcessServer] = []

    def start(name: str) -> InProcessServer:
        node = InProcessServer(
            memory=False,
            engine="redis",
            redis_url=redis_server.url,
            data_dir=tmp_path / name,
            node_id=f"node-{name}",
            log_max_messages=KEEP,
        )
        started.append(node.start())
        _CLIENTS[id(node)] = httpx.Client(base_url=base(node), timeout=10)
        return node

    yield start
    for node in reversed(started):
        _CLIENTS.pop(id(node)).close()
        node.stop()


def base(node: InProcessServer) -> str:
    assert node.server is not None and node.server.http_address is not None
    host, port = node.server.http_address
    return f"http://{host}:{port}"


def publish(node: InProcessServer, topic: str, payload: str) -> dict[str, Any]:
    r = _CLIENTS[id(node)].post(f"/v1/publish/{topic}", content=payload.encode())
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def poll(node: InProcessServer, flt: str, since: str, limit: int = 100) -> dict[str, Any]:
    r = _CLIENTS[id(node)].get(f"/v1/poll/{flt}", params={"since": since, "limit": str(limit)})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def read_all(node: InProcessServer, flt: str, since: str, limit: int) -> tuple[list[Any], bool]:
    """Page through everything after `since`: (id, topic, payload) in order, and any gap."""
    got: list[Any] = []
    gap = False
    while True:
        body = poll(node, flt, since, limit)
        gap = gap or body["gap"]
        got += [(m["id"], m["topic"], m["payload"]) for m in body["messages"]]
        if not body["messages"] or since == body["cursor"]:
            return got, gap
        since = body["cursor"]


def wait_until(cond: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_node_starts_without_reading_history_and_resumes_cursors_from_redis(
    start_node: Any, redis_server: RedisServer
) -> None:
    r = redis.Redis.from_url(redis_server.url)
    try:
        a = start_node("a")
        begin = poll(a, "lz/%23", "latest")["cursor"]
        sent = []
        for n in range(PER_TOPIC):
            for i in range(TOPICS):
                body = publish(a, f"lz/{i}", f"m{n}-{i}")
                sent.append((body["id"], f"lz/{i}", f"m{n}-{i}"))
        exact = [publish(a, "ex/t", f"e{i}") for i in range(3)]
        evicting = [publish(a, "ev/t", f"v{i}") for i in range(KEEP + 2)]  # two evicted
        wait_until(lambda: r.hget("pw:evicted", "ev/t") is not None, "ev/t's eviction mark")
        # and a topic whose stream MAXLEN trimmed with no log's mark (lost, or never made)
        for i in range(KEEP + 2):
            publish(a, "mx/t", f"x{i}")
        wait_until(lambda: r.hget("pw:evicted", "mx/t") is not None, "mx/t's eviction mark")
        r.hdel("pw:evicted", "mx/t")

        r.config_resetstat()
        b = start_node("b")
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}
        # the start read no topic stream (one XREVRANGE: the fan-out stream's last
        # position, where B's reader starts) and indexed no entry
        assert calls.get("xrange", 0) == 0 and calls.get("xrevrange", 0) <= 1, calls
        assert b.call(lambda: b.server.log.size) == 0

        # one topic, from a cursor A gave out
        body = poll(b, "ex/t", exact[0]["cursor"])
        assert [(m["id"], m["payload"]) for m in body["messages"]] == [
            (e["id"], f"e{i}") for i, e in enumerate(exact) if i > 0
        ]
        assert not body["gap"]
        # a wildcard, in pages smaller than the history: every message, in order, no gap
        got, gap = read_all(b, "lz/%23", begin, limit=7)
        assert got == sent and not gap
        # a cursor before an eviction that happened before B started: a gap, then the rest
        body = poll(b, "ev/t", begin)
        assert body["gap"]
        assert [m["payload"] for m in body["messages"]] == [f"v{i}" for i in range(2, KEEP + 2)]
        # the cursor of the last evicted message: nothing missed
        body = poll(b, "ev/t", evicting[1]["cursor"])
        assert not body["gap"] and len(body["messages"]) == KEEP
        # the stream's own trim is a gap too, with no mark in pw:evicted
        body = poll(b, "mx/t", begin)
        assert body["gap"]
        assert [m["payload"] for m in body["messages"]] == [f"x{i}" for i in range(2, KEEP + 2)]
        # history read from Redis, then what B has in memory, in one answer
        later = publish(b, "ex/t", "after-start")
        body = poll(b, "ex/t", exact[0]["cursor"])
        assert [m["payload"] for m in body["messages"]] == ["e1", "e2", "after-start"]
        assert body["messages"][-1]["id"] == later["id"]
    finally:
        r.close()
