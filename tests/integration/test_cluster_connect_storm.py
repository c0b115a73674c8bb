"""Connect storms on engine=redis: cheap in Redis, and takeovers across nodes still hold.

A CONNECT on engine=redis takes its client-id lock (engines/redis/sessions.py) and, once
accepted, writes its place (`pw:where`, presence.py). A clean session's client id with no
stored session needs nothing more: the lock script says whether a row exists, so no session
load runs, and the lock and presence calls of one loop turn share one pipeline
(engines/redis/calls.py). Redis' own `INFO commandstats` counts what a storm cost (commands
run inside a Lua script count under their own names too). Real pushwire subprocesses and a
private redis-server; MQTT 3.1.1 from raw sockets (tests/helpers/raw.py).
"""

from __future__ import annotations

import asyncio
import time

import redis

from helpers.raw import connect, split_packets, subscribe
from helpers.redis import RedisServer

from .cluster_util import StartNode, cluster_node, publish_http

__all__ = ["cluster_node"]

DEADLINE = 20.0
STORM = 300
# Redis commands per clean CONNECT, presence included: the lock script (EVALSHA, GET, SET,
# two SADD to the holder index, HEXISTS of the session row) and HSET of its place = 7;
# one more for the nodes' own heartbeats and looks meanwhile. It was 14 (a MULTI/EXEC
# session load of six reads for every CONNECT).
MAX_CALLS_PER_CONNECT = 8
MOVING = 40  # persistent sessions taken from one node to the other at once


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def wait_until(check: object, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def read_packet(reader: asyncio.StreamReader, buffer: bytearray) -> tuple[int, bytes]:
    """The next packet: (first byte, body)."""
    while True:
        packets, _ = split_packets(bytes(buffer))
        if packets:
            first = packets[0]
            del buffer[: len(first.raw)]
            return first.first_byte, first.body
        data = await asyncio.wait_for(reader.read(65536), DEADLINE)
        if not data:
            raise ConnectionError("closed by the server")
        buffer += data


async def open_client(
    port: int, client_id: str, *, clean: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, int]:
    """(reader, writer, CONNACK return code, session present flag)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(connect(client_id, clean_session=clean))
    ack = await asyncio.wait_for(reader.readexactly(4), DEADLINE)
    assert ack[0] == 0x20, ack
    return reader, writer, ack[3], ack[2] & 1


def test_connect_storm_all_acked_with_few_redis_commands(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    node = cluster_node()
    r = redis.Redis.from_url(redis_server.url)

    async def storm() -> tuple[list[int], dict[str, int]]:
        before = command_calls(r)
        opened = await asyncio.gather(
            *(open_client(node.mqtt_port, f"storm-{i}", clean=True) for i in range(STORM))
        )
        # every accepted connection wrote its place: the storm's Redis work is done
        await wait_until(lambda: r.hlen("pw:where") >= STORM, "every client's place")
        after = command_calls(r)
        for _, writer, _, _ in opened:
            writer.close()
        calls = {k: n - before.get(k, 0) for k, n in after.items() if k != "info"}
        return [code for _, _, code, _ in opened], calls

    codes, calls = asyncio.run(storm())
    assert codes == [0] * STORM
    total = sum(calls.values())
    assert total <= MAX_CALLS_PER_CONNECT * STORM, calls
    # a clean session's client id nobody stored: no session load at all
    assert calls.get("hgetall", 0) == 0 and calls.get("exec", 0) == 0, calls
    r.close()


def test_takeover_storm_across_nodes(cluster_node: StartNode, redis_server: RedisServer) -> None:
    a, b = cluster_node(), cluster_node()
    r = redis.Redis.from_url(redis_server.url)

    async def run() -> None:
        # persistent sessions on A, each with a subscription
        held = []
        for i in range(MOVING):
            reader, writer, code, _ = await open_client(a.mqtt_port, f"mover-{i}", clean=False)
            assert code == 0
            writer.write(subscribe(1, [(f"moving/{i}", 1)]))
            buffer = bytearray()
            first, _ = await read_packet(reader, buffer)
            assert first == 0x90  # SUBACK
            held.append((reader, writer))
        # one more persistent session on A, whose client comes back with a clean start
        old_reader, old_writer, code, _ = await open_client(a.mqtt_port, "cleaner", clean=False)
        assert code == 0
        await wait_until(lambda: r.hexists("pw:sess", "cleaner"), "the stored session")

        # all of them connect to B at once: A hands every session over
        moved = await asyncio.gather(
            *(open_client(b.mqtt_port, f"mover-{i}", clean=False) for i in range(MOVING))
        )
        assert [(code, present) for _, _, code, present in moved] == [(0, 1)] * MOVING
        _, clean_writer, code, present = await open_client(b.mqtt_port, "cleaner", clean=True)
        assert (code, present) == (0, 0)
        # the old connections on A were closed
        for reader, _ in [*held, (old_reader, old_writer)]:
            assert await asyncio.wait_for(reader.read(65536), DEADLINE) == b""
        # the clean start dropped the stored session
        await wait_until(lambda: not r.hexists("pw:sess", "cleaner"), "the dropped session")
        # the subscriptions came along: a publish on A reaches the client now on B
        reader, writer, _, _ = moved[MOVING - 1]
        response = publish_http(a, f"moving/{MOVING - 1}", b"followed", qos="1")
        assert response.status_code in (200, 201), response.text
        first, body = await read_packet(reader, bytearray())
        assert first & 0xF0 == 0x30 and body.endswith(b"followed")
        for _, w, _, _ in moved:
            w.close()
        clean_writer.close()

    asyncio.run(run())
    r.close()


def test_connect_storm_refused_while_redis_is_down(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    """A batch of lock calls Redis never answers fails every CONNECT in it with "server
    unavailable" (never a CONNACK that took no lock); with Redis back they are accepted."""
    node = cluster_node("--redis-timeout", "1")

    async def storm(prefix: str) -> list[int]:
        opened = await asyncio.gather(
            *(open_client(node.mqtt_port, f"{prefix}-{i}", clean=True) for i in range(20))
        )
        for _, writer, _, _ in opened:
            writer.close()
        return [code for _, _, code, _ in opened]

    redis_server.stop()
    assert asyncio.run(storm("down")) == [3] * 20  # 3: server unavailable
    redis_server.start()
    assert asyncio.run(storm("back")) == [0] * 20
