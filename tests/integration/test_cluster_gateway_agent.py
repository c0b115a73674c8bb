"""The SDK's DeviceAgent on a cluster: a push handed out by a home that dies before it saw
the acknowledgement comes again from the device's next home, and the agent drops the copy
(at least once on the wire, once to the handler).

Two nodes on engine=redis as subprocesses; the agent's MQTT goes through a small TCP relay
in the test (real sockets), which is pointed at node B once node A is killed, as a load
balancer would send the reconnect to a live node."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.redis import RedisServer
from helpers.server import ServerProcess
from pushwire.client import AsyncPushProvider, Backoff, DeviceAgent, Push

from . import test_cluster_gateway as gwt
from .cluster_util import DEADLINE, StartNode, cluster_node

__all__ = ["cluster_node"]
pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")


class Relay:
    """Forwards each accepted TCP connection to the node currently named `target`."""

    def __init__(self, target: ServerProcess) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.target.host, self.target.mqtt_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers -= {writer, up_w}

    async def close(self) -> None:
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _url(srv: ServerProcess) -> str:
    return f"http://{srv.host}:{srv.http_port}"


async def test_agent_drops_a_push_sent_again_by_the_next_home(
    cluster_node: StartNode, redis_server: RedisServer, tmp_path: Path
) -> None:
    a, b = cluster_node(*gwt.FAST_FAILOVER), cluster_node(*gwt.FAST_FAILOVER)
    app_id, key = await asyncio.to_thread(gwt.make_app, redis_server, a, b)
    relay = Relay(a)
    await relay.start()
    handled: Counter[str] = Counter()
    crash = {"alert": "handled while its home dies"}
    in_handler, home_dead = asyncio.Event(), asyncio.Event()

    async def handle(push: Push) -> None:
        handled[push.id] += 1
        if push.payload == crash:
            # the acknowledgement cannot reach the home: it dies first
            in_handler.set()
            await home_dead.wait()

    agent = DeviceAgent(
        _url(b), tmp_path / "device.json", mqtt_host="127.0.0.1", mqtt_port=relay.port,
        fsync=False, backoff=Backoff(base=0.1, cap=0.5), heartbeat_interval=5.0,
    )  # fmt: skip
    agent.add_app(app_id, handle)
    try:
        async with agent, AsyncPushProvider(_url(b), api_key=key) as provider:
            await agent.wait_connected(DEADLINE)
            token = agent.tokens[app_id]
            first = await provider.push(token, {"alert": "first"})
            await wait_for_async(lambda: handled[first] == 1, "the first push")
            crashed = await provider.push(token, crash)  # accepted on B, held by A
            await asyncio.wait_for(in_handler.wait(), DEADLINE)
            a.kill()
            relay.target = b
            home_dead.set()
            await wait_for_async(lambda: agent.stats.connects >= 2, "the reconnect to B")
            await wait_for_async(lambda: agent.stats.duplicates >= 1, "the copy, dropped")
            marker = await provider.push(token, {"alert": "marker"})
            await wait_for_async(lambda: handled[marker] == 1, "the marker")
            state = await asyncio.to_thread(gwt.wait_state, b, key, crashed, "delivered")
            assert state["state"] == "delivered"
        assert handled == Counter({first: 1, crashed: 1, marker: 1})
    finally:
        await relay.close()


async def wait_for_async(check: Callable[[], bool], what: str) -> None:
    """Poll `check` on the event loop (the agent and the relay run on it) until true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE * 2
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
