"""Setting up `pushwire bench gateway`: a pushwire with the gateway, an app, devices.

The server runs with a user that may publish to device topics (for the plain-MQTT frame) and
read /metrics, and without per-IP or per-app limits (every client comes from 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from pushwire.bench.loadgen import BenchError
from pushwire.bench.peers import HOST, PUSHWIRE_BENCH_ENV

START_TIMEOUT_S = 30.0
BENCH_USER = ("bench", "bench-secret")  # plain MQTT publisher and /metrics reader
_LISTEN = re.compile(r"(mqtt|http) listening on 127\.0\.0\.1:(\d+)")
_WAKEUPS = re.compile(r"^pushwire_device_wakeups_total ([0-9.e+]+)$", re.MULTILINE)


@dataclass
class GatewayServer:
    pid: int
    mqtt_port: int
    http_port: int
    data_dir: Path
    log_path: Path
    metrics_auth: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    done = subprocess.run(
        [sys.executable, "-m", "pushwire", *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"pushwire {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def gateway_server(
    workdir: Path, batch_window: float, plain_publisher: bool = True
) -> Iterator[GatewayServer]:
    """pushwire with the gateway on free ports, a user that may publish to device topics
    (the plain-MQTT frame) and read /metrics, and no per-IP or per-app limits."""
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if plain_publisher:
        _cli(data_dir, "user", "add", BENCH_USER[0], "--role", "admin", "--password-stdin",
             stdin=BENCH_USER[1] + "\n")  # fmt: skip
        _cli(data_dir, "acl", "add", "--user", BENCH_USER[0], "--allow", "write", "devices/#")
    log_path = workdir / "pushwire.log"
    argv = [sys.executable, "-m", "pushwire", "serve", "--bind", HOST, "--mqtt-port", "0"]
    argv += ["--http-port", "0", "--data-dir", str(data_dir), "--sys-interval", "0"]
    argv += ["--push-batch-window", str(batch_window), "--push-rate-per-app", "0"]
    argv += ["--no-durability"]  # SQLite without fsync per write, as a benchmark host runs it
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    env.update(PUSHWIRE_BENCH_ENV)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        ports: dict[str, int] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        while "mqtt" not in ports or "http" not in ports:
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"pushwire did not start:\n{log_path.read_text()[-2000:]}")
            for kind, port in _LISTEN.findall(log_path.read_text(errors="replace")):
                ports[kind] = int(port)
            time.sleep(0.05)
        auth = BENCH_USER if plain_publisher else None  # no users: /metrics is open
        yield GatewayServer(process.pid, ports["mqtt"], ports["http"], data_dir, log_path, auth)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def create_app(server: GatewayServer, name: str) -> tuple[str, str]:
    data = json.loads(_cli(server.data_dir, "app", "create", name, "--json"))
    app_id, api_key = str(data["app_id"]), str(data["api_key"])
    probe = f"{server.url}/v1/push/00000000-0000-4000-8000-000000000000"
    deadline = time.monotonic() + START_TIMEOUT_S
    while httpx.get(probe, headers={"authorization": f"Bearer {api_key}"}).status_code != 404:
        if time.monotonic() > deadline:
            raise BenchError("the server did not load the new app")
        time.sleep(0.1)
    return app_id, api_key


def wakeups(server: GatewayServer) -> int:
    reply = httpx.get(f"{server.url}/metrics", auth=server.metrics_auth)
    match = _WAKEUPS.search(reply.text)
    if reply.status_code != 200 or match is None:
        raise BenchError(f"no pushwire_device_wakeups_total in /metrics ({reply.status_code})")
    return int(float(match.group(1)))


# ---------------------------------------------------------------------------------------------
# Devices and the provider


async def register_devices(
    url: str, app_id: str, count: int, concurrency: int
) -> list[tuple[str, str, str]]:
    """(device_id, secret, token) for `count` new devices, over the device HTTP API."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def one() -> tuple[str, str, str]:
            async with gate:
                reply = await http.post("/v1/devices")
                if reply.status_code != 201:
                    raise BenchError(f"registration: {reply.status_code} {reply.text[:200]}")
                dev = reply.json()
                auth = (dev["device_id"], dev["device_secret"])
                reply = await http.post(
                    f"/v1/devices/{auth[0]}/tokens", json={"app": app_id}, auth=auth
                )
                if reply.status_code != 200:
                    raise BenchError(f"token: {reply.status_code} {reply.text[:200]}")
                return auth[0], auth[1], str(reply.json()["token"])

        return list(await asyncio.gather(*(one() for _ in range(count))))
