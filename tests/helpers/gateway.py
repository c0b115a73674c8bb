"""Helpers for the push gateway tests: apps via the CLI, devices and tokens over HTTP."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from helpers.server import ServerProcess
from pushwire.gateway.cli import add_gateway_commands, run_gateway_command


def base_url(srv: ServerProcess) -> str:
    return f"http://{srv.host}:{srv.http_port}"


def cli(srv: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    return subprocess.run(
        [sys.executable, "-m", "pushwire", *args, "--data-dir", str(srv.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def app_create(data_dir: Path, name: str) -> dict[str, Any]:
    """`pushwire app create NAME --json --data-dir DATA_DIR` in the test process (the
    command's own parser and handler; test_gateway_admin runs it as a process): a Python
    start per app took 3-4 s on a loaded machine, two or more per gateway test."""
    parser = argparse.ArgumentParser(prog="pushwire")
    add_gateway_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["app", "create", name, "--json", "--data-dir", str(data_dir)])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run_gateway_command(ns, stdout=out)
    assert code == 0, f"app create failed: {err.getvalue()!r}"
    data: dict[str, Any] = json.loads(out.getvalue())
    return data


def create_app(srv: ServerProcess, name: str = "demo") -> tuple[str, str]:
    """(app_id, api_key) of a new app made with `pushwire app create --json`."""
    data = app_create(srv.data_dir, name)
    app_id, key = data["app_id"], data["api_key"]
    # the running server notices the store change within a second: wait for it
    wait_for(lambda: _app_known(srv, key), what=f"server to load app {app_id}")
    return app_id, key


def _app_known(srv: ServerProcess, key: str) -> bool:
    r = httpx.get(
        f"{base_url(srv)}/v1/push/{'0' * 8}-0000-4000-8000-{'0' * 12}", headers=bearer(key)
    )
    return r.status_code == 404  # authenticated: the push is unknown, the app is not


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def register_device(srv: ServerProcess) -> tuple[str, str]:
    r = httpx.post(f"{base_url(srv)}/v1/devices")
    assert r.status_code == 201, r.text
    return r.json()["device_id"], r.json()["device_secret"]


def device_token(srv: ServerProcess, device: tuple[str, str], app_id: str) -> str:
    r = httpx.post(
        f"{base_url(srv)}/v1/devices/{device[0]}/tokens", json={"app": app_id}, auth=device
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def push(
    srv: ServerProcess,
    key: str,
    token: str,
    body: dict[str, Any] | bytes,
    **headers: str,
) -> httpx.Response:
    hdrs = bearer(key)
    for name, value in headers.items():
        hdrs["Pushwire-" + name.replace("_", "-").title()] = value
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs["Content-Type"] = "application/json"
    return httpx.post(f"{base_url(srv)}/v1/push/{token}", content=content, headers=hdrs)


def push_state(srv: ServerProcess, key: str, push_id: str) -> dict[str, Any]:
    r = httpx.get(f"{base_url(srv)}/v1/push/{push_id}", headers=bearer(key))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_state(
    srv: ServerProcess, key: str, push_id: str, state: str, timeout: float = 10.0
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal last
        last = push_state(srv, key, push_id)
        return bool(last["state"] == state)

    try:
        wait_for(reached, timeout, f"push {push_id} to be {state}")
    except AssertionError:
        raise AssertionError(f"push {push_id} is {last}, not {state}") from None
    return last


def decode(msg: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(msg.payload)
    return data
