"""Every `pushwire` command imports only what it runs (start-up time: users pay it per
command, and the suite starts dozens of CLI processes).

Each case runs `pushwire.cli.main(argv)` in a fresh interpreter and lists what it imported:
the parser for every command is built from light modules; the server, the stores, redis,
pydantic and the crypto libraries are imported by the handler that needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# what no command imports unless it runs it (`serve` itself, the stores, the transports)
SERVER = {
    "pushwire.server",
    "pushwire.process",
    "pushwire.workers",
    "pushwire.core.hub",
    "pushwire.http",
    "pushwire.mqtt",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
}
STORES = {"pushwire.engines", "pushwire.gateway.admin", "pushwire.gateway.store", "sqlite3"}
SETTINGS = {"pushwire.config", "pushwire.settings_doc", "pydantic", "pydantic_settings"}
CLIENTS = {"httpx", "paho", "websockets", "aiomqtt"}
LIBRARIES = {"redis", "cryptography", "jwt", "argon2", "asyncio", "prometheus_client", "ssl"}
EVERYTHING = SERVER | STORES | SETTINGS | CLIENTS | LIBRARIES

PROBE = """
import contextlib, io, json, sys
from pushwire.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _run(argv: list[str], data_dir: Path) -> tuple[object, str, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    env["PUSHWIRE_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    return report["code"], report["out"], set(report["modules"])


def _loaded(modules: set[str], names: set[str]) -> list[str]:
    """The names of `names` that are imported (a package counts when any module of it is)."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["pub", "--help"],
        ["sub", "--help"],
        ["user", "list", "--help"],
        ["token", "create", "--help"],
        ["acl", "add", "--help"],
        ["app", "list", "--help"],
        ["device", "show", "--help"],
        ["bench", "--help"],
    ],
)
def test_help_imports_nothing_heavy(argv: list[str], tmp_path: Path) -> None:
    code, out, modules = _run(argv, tmp_path)
    assert code == 0
    assert out.startswith(("usage: pushwire", "pushwire "))  # the command did run
    assert "pushwire.cli" in modules
    assert _loaded(modules, EVERYTHING) == []


def test_serve_help_imports_the_settings_only(tmp_path: Path) -> None:
    code, out, modules = _run(["serve", "--help"], tmp_path)
    assert code == 0
    assert "--mqtt-port" in out  # the flags generated from the settings are there
    assert _loaded(modules, SETTINGS) == sorted(SETTINGS)
    assert _loaded(modules, SERVER | STORES | CLIENTS | {"redis", "cryptography", "argon2"}) == []


def test_admin_command_on_sqlite_imports_no_redis_nor_settings(tmp_path: Path) -> None:
    code, out, modules = _run(["user", "list"], tmp_path)
    assert code == 0
    assert out.startswith("NAME")  # the (empty) table was printed
    assert "pushwire.core.auth_admin" in modules
    assert _loaded(modules, SERVER | SETTINGS | CLIENTS | {"redis", "cryptography"}) == []


def test_gateway_command_on_sqlite_imports_no_redis_nor_settings(tmp_path: Path) -> None:
    code, out, modules = _run(["app", "list", "--json"], tmp_path)
    assert code == 0
    assert json.loads(out) == []
    assert "pushwire.gateway.admin" in modules
    assert _loaded(modules, SERVER | SETTINGS | CLIENTS | {"redis"}) == []
