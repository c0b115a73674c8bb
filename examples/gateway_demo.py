"""End-to-end demo of the pushwire device gateway, driven by one command:

    .venv/bin/python examples/gateway_demo.py

It starts `pushwire serve` (free ports, a temporary data dir, a short batch window), creates
two apps with `pushwire app create NAME --json`, runs one device (a DeviceAgent holding ONE
MQTT connection for both apps) and a provider pushing to both. Then the device goes offline,
the server calls the app's wake webhook (a local HTTP receiver here checks its signature),
the device comes back and the pushes it missed arrive, in order. Exits 0 when all of that
happened, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from pushwire.client import AsyncPushProvider, Backoff, DeviceAgent, Push, WakeWebhook
from pushwire.client.webhooks import verify_webhook

WAKE_SECRET = "demo-wake-secret"
STEP_TIMEOUT = 20.0
_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _T0:6.2f}s] {text}", flush=True)


def pushwire_cli(data_dir: Path, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    done = subprocess.run(
        [sys.executable, "-m", "pushwire", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    data: dict[str, Any] = json.loads(done.stdout)
    return data


class Server:
    """`pushwire serve` as a child process on free ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log = data_dir.parent / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http_port = self.mqtt_port = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
        cmd = [sys.executable, "-m", "pushwire", "serve", "--bind", "127.0.0.1"]
        cmd += ["--mqtt-port", "0", "--http-port", "0", "--data-dir", str(self.data_dir)]
        cmd += ["--push-batch-window", "0.5", "--sys-interval", "0"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            mqtt = re.search(r"mqtt listening on [0-9.]+:(\d+)", text)
            http = re.search(r"http listening on [0-9.]+:(\d+)", text)
            if mqtt and http:
                self.mqtt_port, self.http_port = int(mqtt.group(1)), int(http.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"pushwire did not start:\n{self.log.read_text(errors='replace')}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class WakeReceiver:
    """The provider's webhook endpoint: records wake calls whose signature is valid."""

    def __init__(self) -> None:
        self.wakes: list[dict[str, Any]] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                ok = verify_webhook(
                    WAKE_SECRET,
                    self.headers.get("pushwire-timestamp"),
                    body,
                    self.headers.get("pushwire-signature"),
                )
                if ok:
                    receiver.wakes.append(json.loads(body))
                else:
                    receiver.refused += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/wake"

    def __enter__(self) -> WakeReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()


async def until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_app_loaded(url: str, api_key: str) -> None:
    """The running server picks up the CLI's new app within about a second."""
    probe = f"{url}/v1/push/00000000-0000-4000-8000-000000000000"
    async with httpx.AsyncClient() as http:
        for _ in range(int(STEP_TIMEOUT / 0.1)):
            reply = await http.get(probe, headers={"authorization": f"Bearer {api_key}"})
            if reply.status_code == 404:
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not load the new app")


async def demo(workdir: Path) -> None:
    server = Server(workdir / "data")
    server.start()
    try:
        say(f"1. pushwire serve: http {server.url}, mqtt port {server.mqtt_port}")
        chat = pushwire_cli(server.data_dir, "app", "create", "chat", "--json")
        news = pushwire_cli(server.data_dir, "app", "create", "news", "--json")
        for app in (chat, news):
            await wait_app_loaded(server.url, app["api_key"])
        say(f"2. apps created with the CLI: chat={chat['app_id']} news={news['app_id']}")
        with WakeReceiver() as receiver:
            await run_device_story(server, chat, news, receiver, workdir)
    finally:
        server.stop()


async def run_device_story(
    server: Server,
    chat: dict[str, Any],
    news: dict[str, Any],
    receiver: WakeReceiver,
    workdir: Path,
) -> None:
    received: list[tuple[str, str]] = []
    handed_ids: list[str] = []

    def handler(name: str) -> Callable[[Push], Any]:
        async def handle(push: Push) -> None:
            text = (push.payload or {}).get("alert", "")
            received.append((name, text))
            handed_ids.append(push.id)
            say(f"   device <- {name}: {text!r} (push {push.id[:8]})")

        return handle

    agent = DeviceAgent(
        server.url,
        workdir / "device.json",
        mqtt_port=server.mqtt_port,
        heartbeat_interval=5.0,
        backoff=Backoff(base=0.2, cap=2.0),
    )
    agent.add_app(chat["app_id"], handler("chat"))
    agent.add_app(news["app_id"], handler("news"))
    chat_p = AsyncPushProvider(server.url, api_key=chat["api_key"])
    news_p = AsyncPushProvider(server.url, api_key=news["api_key"])
    try:
        await agent.start()
        await agent.wait_connected(STEP_TIMEOUT)
        say(f"3. device {agent.device_id} registered, one MQTT connection for two apps")
        chat_token, news_token = agent.tokens[chat["app_id"]], agent.tokens[news["app_id"]]
        stored = await chat_p.set_webhooks(
            app_id=chat["app_id"], wake=WakeWebhook(receiver.url, WAKE_SECRET, 0.5)
        )
        wake_hook = stored["wake"]
        say(f"   chat's wake webhook: {wake_hook['url']} after {wake_hook['after_seconds']}s")

        say("4. provider pushes to both apps while the device is online")
        await chat_p.push(chat_token, {"alert": "hello from chat"})
        await news_p.push(news_token, {"alert": "breaking news"})
        await until(lambda: len(received) == 2, "the two online pushes")

        say("5. the device goes offline")
        await agent.stop()
        missed = [("chat", f"missed chat {n}") for n in range(3)]
        missed.insert(1, ("news", "missed news 0"))
        for name, text in missed:
            provider, token = (chat_p, chat_token) if name == "chat" else (news_p, news_token)
            push_id = await provider.push(token, {"alert": text})
            say(f"   provider -> {name}: {text!r} accepted as {push_id[:8]} (device offline)")
        last = await chat_p.status(await chat_p.push(chat_token, {"alert": "last one"}))
        missed.append(("chat", "last one"))
        say(f"   provider -> chat: 'last one'; GET /v1/push/{last.id[:8]}: state {last.state}")

        await until(lambda: bool(receiver.wakes), "the wake webhook")
        wake = receiver.wakes[0]
        say(
            f"6. wake webhook received (signature ok): device {wake['device_id']}, "
            f"app {wake['app']}, push {wake['push_id'][:8]}"
        )

        say("7. the device comes back")
        before = len(received)
        await agent.start()
        await until(lambda: len(received) == before + len(missed), "the missed pushes")
        got = received[before:]
        if got != missed:
            raise RuntimeError(f"missed pushes arrived as {got}, expected {missed}")
        repeated = len(handed_ids) - len(set(handed_ids))
        if repeated:
            raise RuntimeError(f"{repeated} pushes were handed to a handler twice")
        say(f"8. all {len(missed)} missed pushes arrived, in order; none handed twice")
        if receiver.refused:
            raise RuntimeError(f"{receiver.refused} webhook calls had a bad signature")
    finally:
        await agent.aclose()
        await chat_p.aclose()
        await news_p.aclose()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pushwire-demo-") as tmp:
        try:
            asyncio.run(demo(Path(tmp)))
        except Exception as exc:
            say(f"FAILED: {exc}")
            log = Path(tmp) / "server.log"
            if log.exists():
                print("--- server log (tail) ---\n" + "\n".join(log.read_text().splitlines()[-30:]))
            return 1
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
