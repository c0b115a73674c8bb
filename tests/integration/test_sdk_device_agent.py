"""pushwire.client.DeviceAgent against a real pushwire (subprocess) over real MQTT and HTTP:
dispatch per app, notify-then-fetch, no loss and no double hand-over across kill -9,
redelivery of an unhandled push, heartbeat on a frozen server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushwire.client import (
    AsyncPushProvider,
    Backoff,
    DeviceAgent,
    Forbidden,
    Handler,
    NotFound,
    Push,
)

from .sdk_util import GatewayServer, StartGateway, gateway, wait_for

# the agent's two transports: MQTT (default) and the JSON WebSocket with an ack consumer
transports = pytest.mark.parametrize("transport", ["mqtt", "ws"])

__all__ = ["gateway"]  # the fixture, used by name


class Recorder:
    """Handlers that record what they were handed, per app."""

    def __init__(self) -> None:
        self.pushes: list[Push] = []

    def handler(self, app_id: str) -> Handler:
        async def handle(push: Push) -> None:
            assert push.app == app_id
            self.pushes.append(push)

        return handle

    def ids(self, app_id: str | None = None) -> list[str]:
        return [p.id for p in self.pushes if app_id is None or p.app == app_id]


def make_agent(srv: GatewayServer, creds: Path, **kw: Any) -> DeviceAgent:
    kw.setdefault("backoff", Backoff(base=0.1, cap=0.5))
    kw.setdefault("heartbeat_interval", 5.0)
    return DeviceAgent(srv.base_url, creds, mqtt_port=srv.mqtt_port, fsync=False, **kw)


@transports
async def test_two_apps_dispatched_to_their_handlers(
    gateway: StartGateway, tmp_path: Path, transport: str
) -> None:
    srv = gateway()
    chat, news = srv.create_app("chat"), srv.create_app("news")
    rec = Recorder()
    agent = make_agent(srv, tmp_path / "device.json", transport=transport)
    agent.add_app(chat.app_id, rec.handler(chat.app_id))
    agent.add_app(news.app_id, rec.handler(news.app_id))
    async with agent:
        await agent.wait_connected(10)
        tokens = agent.tokens
        assert set(tokens) == {chat.app_id, news.app_id}
        async with (
            AsyncPushProvider(srv.base_url, api_key=chat.api_key) as chat_p,
            AsyncPushProvider(srv.base_url, api_key=news.api_key) as news_p,
        ):
            chat_ids = [
                await chat_p.push(tokens[chat.app_id], {"alert": f"c{n}"}) for n in range(3)
            ]
            news_ids = [
                await news_p.push(tokens[news.app_id], {"data": {"n": n}}) for n in range(3)
            ]
        await wait_for(lambda: len(rec.pushes) == 6, what="six pushes")
    assert rec.ids(chat.app_id) == chat_ids
    assert rec.ids(news.app_id) == news_ids
    assert [p.payload for p in rec.pushes if p.app == chat.app_id] == [
        {"alert": f"c{n}"} for n in range(3)
    ]
    # the credentials were saved (0600) and a second agent reuses device and tokens
    creds = json.loads((tmp_path / "device.json").read_text())
    assert os.stat(tmp_path / "device.json").st_mode & 0o077 == 0
    again = make_agent(srv, tmp_path / "device.json")
    again.add_app(chat.app_id, rec.handler(chat.app_id))
    await again.ensure_registered()
    assert (
        again.device_id == creds["device_id"] and again.tokens[chat.app_id] == tokens[chat.app_id]
    )
    await again.aclose()


async def test_notify_then_fetch_content_reaches_the_handler(
    gateway: StartGateway, tmp_path: Path
) -> None:
    srv = gateway()
    app = srv.create_app("docs")
    rec = Recorder()
    agent = make_agent(srv, tmp_path / "device.json")
    agent.add_app(app.app_id, rec.handler(app.app_id))
    async with agent, AsyncPushProvider(srv.base_url, api_key=app.api_key) as provider:
        await agent.wait_connected(10)
        token = agent.tokens[app.app_id]
        blob = json.dumps({"article": "x" * 20_000}).encode()
        content_id = await provider.post_content(token, blob, "application/json")
        first = await provider.push(token, {"content_id": content_id, "alert": "new article"})
        second = await provider.push(token, {"data": {"k": "v"}}, fetch=True)
        await wait_for(lambda: len(rec.pushes) == 2, what="two notices")
    by_id = {p.id: p for p in rec.pushes}
    assert by_id[first].content == blob
    content_type = by_id[first].content_type
    assert content_type is not None
    assert content_type.startswith("application/json")
    fetched = by_id[second].json_content()
    assert fetched["data"] == {"k": "v"}
    assert agent.stats.content_fetched == 2


@transports
async def test_survives_kill_9_without_losing_or_repeating_a_push(
    gateway: StartGateway, tmp_path: Path, transport: str
) -> None:
    srv = gateway()
    app = srv.create_app("chat")
    handled: Counter[str] = Counter()
    order: list[str] = []
    crash = {"alert": "the last before the crash"}
    in_crash_handler, server_dead = asyncio.Event(), asyncio.Event()

    async def handle(push: Push) -> None:
        handled[push.id] += 1
        order.append(push.id)
        if push.payload == crash:
            # return only after the server died: the acknowledgement cannot arrive, so the
            # server redelivers this push after the restart and the agent must skip it
            in_crash_handler.set()
            await server_dead.wait()

    agent = make_agent(srv, tmp_path / "device.json", transport=transport)
    agent.add_app(app.app_id, handle)
    async with agent:
        await agent.wait_connected(10)
        token = agent.tokens[app.app_id]
        async with AsyncPushProvider(srv.base_url, api_key=app.api_key) as provider:
            before = [await provider.push(token, {"alert": f"b{n}"}) for n in range(5)]
            await wait_for(lambda: len(order) == 5, what="first five")
            last = await provider.push(token, crash)  # accepted (200) before the kill
            await asyncio.wait_for(in_crash_handler.wait(), 10)
            srv.kill()
            server_dead.set()
        srv.pin_ports()
        srv.start()
        await wait_for(lambda: agent.stats.connects >= 2, timeout=20, what="reconnect")
        async with AsyncPushProvider(srv.base_url, api_key=app.api_key) as provider:
            after = [await provider.push(token, {"alert": f"a{n}"}) for n in range(5)]
            await wait_for(lambda: all(handled[i] for i in after), what="pushes after restart")
            # a positive marker: once it arrived, any redelivery queued before it has come too
            marker = await provider.push(token, {"alert": "marker"})
            await wait_for(lambda: handled[marker] == 1, what="marker")
    every = [*before, last, *after, marker]
    assert all(handled[i] == 1 for i in every), handled
    assert order == every
    assert agent.stats.duplicates >= 1  # the push whose PUBACK died with the server


@transports
async def test_unhandled_push_is_redelivered(
    gateway: StartGateway, tmp_path: Path, transport: str
) -> None:
    srv = gateway()
    app = srv.create_app("chat")
    attempts: Counter[str] = Counter()
    done: list[str] = []

    async def flaky(push: Push) -> None:
        attempts[push.id] += 1
        if attempts[push.id] == 1:
            raise RuntimeError("handler failed the first time")
        done.append(push.id)

    agent = make_agent(srv, tmp_path / "device.json", transport=transport)
    agent.add_app(app.app_id, flaky)
    async with agent, AsyncPushProvider(srv.base_url, api_key=app.api_key) as provider:
        await agent.wait_connected(10)
        push_id = await provider.push(agent.tokens[app.app_id], {"alert": "x"})
        await wait_for(lambda: agent.stats.handler_errors == 1, what="the failure")
        await agent.stop()  # not acknowledged: the server keeps it in the session
        await agent.start()
        await wait_for(lambda: done == [push_id], what="redelivery")
    assert attempts[push_id] == 2


@transports
async def test_heartbeat_gives_up_on_a_frozen_server(
    gateway: StartGateway, tmp_path: Path, transport: str
) -> None:
    srv = gateway()
    app = srv.create_app("chat")
    rec = Recorder()
    agent = make_agent(
        srv,
        tmp_path / "device.json",
        heartbeat_interval=0.3,
        heartbeat_misses=2,
        transport=transport,
    )
    agent.add_app(app.app_id, rec.handler(app.app_id))
    async with agent:
        await agent.wait_connected(10)
        # on a loaded machine a 0.3 s heartbeat may also give up once before the freeze (and
        # reconnect at once): wait for a death noticed while the server is frozen, which
        # leaves the agent disconnected (it cannot reconnect to a stopped process)
        before = agent.stats.heartbeat_deaths
        os.kill(srv.pid, signal.SIGSTOP)  # the TCP link stays open, nothing answers
        try:
            await wait_for(
                lambda: agent.stats.heartbeat_deaths > before and not agent.connected.is_set(),
                what="dead link noticed",
            )
        finally:
            os.kill(srv.pid, signal.SIGCONT)
        await wait_for(lambda: agent.connected.is_set(), timeout=20, what="reconnect")
        async with AsyncPushProvider(srv.base_url, api_key=app.api_key) as provider:
            push_id = await provider.push(agent.tokens[app.app_id], {"alert": "after thaw"})
        await wait_for(lambda: rec.ids() == [push_id], what="push after reconnect")
    assert agent.stats.pings >= 2


async def test_registration_secret_and_unknown_app(gateway: StartGateway, tmp_path: Path) -> None:
    srv = gateway("--device-registration-secret", "let-me-in")
    app = srv.create_app("chat")
    rec = Recorder()
    refused = make_agent(srv, tmp_path / "refused.json")
    refused.add_app(app.app_id, rec.handler(app.app_id))
    with pytest.raises(Forbidden) as exc:
        await refused.start()
    assert exc.value.status == 403
    assert not (tmp_path / "refused.json").exists()
    await refused.aclose()

    agent = make_agent(srv, tmp_path / "device.json", registration_secret="let-me-in")
    agent.add_app(app.app_id, rec.handler(app.app_id))
    async with agent:
        await agent.wait_connected(10)
        with pytest.raises(NotFound):
            await agent.register_app("app_" + "x" * 16, rec.handler("app_" + "x" * 16))
        assert set(agent.tokens) == {app.app_id}


async def test_expired_or_oversized_content_is_handed_over_without_it(
    gateway: StartGateway, tmp_path: Path
) -> None:
    srv = gateway("--push-content-ttl", "1")
    app = srv.create_app("docs")
    rec = Recorder()
    agent = make_agent(srv, tmp_path / "device.json", max_content=64)
    agent.add_app(app.app_id, rec.handler(app.app_id))
    creds = await agent.ensure_registered()
    token = await agent.register_app(app.app_id, rec.handler(app.app_id))
    async with AsyncPushProvider(srv.base_url, api_key=app.api_key) as provider:
        content_id = await provider.post_content(token, b"gone soon", "text/plain")
        push_id = await provider.push(token, {"content_id": content_id, "alert": "late"})
    url = f"{srv.base_url}/v1/content/{content_id}"
    auth = (creds.device_id, creds.device_secret)
    async with httpx.AsyncClient() as http:
        assert (await http.get(url, auth=auth)).status_code == 200
        expired: list[int] = []

        async def poll() -> None:
            expired.append((await http.get(url, auth=auth)).status_code)

        await poll()
        while expired[-1] != 404:  # the event: the server says the content is gone
            await asyncio.sleep(0.1)
            await poll()
            assert len(expired) < 200, expired
    async with agent, AsyncPushProvider(srv.base_url, api_key=app.api_key) as provider:
        await wait_for(lambda: rec.ids() == [push_id], what="the notice")
        # content over the agent's max_content is never buffered: handed over without it
        big = await provider.push(token, {"data": "x" * 1000}, fetch=True)
        small = await provider.push(token, {"data": "y"}, fetch=True)
        await wait_for(lambda: rec.ids() == [push_id, big, small], what="two more notices")
    expired_push, big_push, small_push = rec.pushes
    assert expired_push.content_ref is not None and expired_push.content_ref.id == content_id
    assert expired_push.content is None and expired_push.payload == {"alert": "late"}
    assert big_push.content_ref is not None and big_push.content is None
    assert small_push.json_content()["data"] == "y"
    assert agent.stats.content_fetched == 1
