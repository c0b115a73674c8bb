"""`pushwire app ...` and `pushwire device ...`: the gateway registry from the command line.

Like `pushwire user`, these work on the data directory (`--data-dir`, env
PUSHWIRE_DATA_DIR); a running server picks the change up within a second (it polls the
store's generation). With PUSHWIRE_ENGINE=redis they edit Redis (PUSHWIRE_REDIS_URL), where
every node of an engine=redis cluster reads them.
Exit codes: 0 done, 1 not found / exists / store error, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    # imported where a command runs, not here: every `pushwire` command builds this parser
    # (tests/unit/test_cli_imports.py); the registry's crypto, sqlite and redis cost ~0.1 s
    from pushwire.gateway.admin import GatewayAdmin
    from pushwire.gateway.store import GatewayStore

    Handler = Callable[[argparse.Namespace, GatewayAdmin, TextIO], int]

GATEWAY_COMMANDS: Final = ("app", "device")
DATA_DIR_ENV: Final = "PUSHWIRE_DATA_DIR"
DEFAULT_DATA_DIR: Final = "pushwire-data"
ENGINE_ENV: Final = "PUSHWIRE_ENGINE"
REDIS_URL_ENV: Final = "PUSHWIRE_REDIS_URL"


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def add_gateway_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"the server's data directory (env {DATA_DIR_ENV}, default ./{DEFAULT_DATA_DIR})",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")

    app = sub.add_parser("app", help="manage push apps and their credentials")
    apps = app.add_subparsers(dest="app_command", required=True, metavar="COMMAND")
    p = apps.add_parser("create", parents=[common], help="create an app (credentials shown once)")
    p.add_argument("name")
    p.set_defaults(gw_handler=_app_create)
    p = apps.add_parser("list", parents=[common], help="list apps")
    p.set_defaults(gw_handler=_app_list)
    p = apps.add_parser("show", parents=[common], help="show an app, its keys and webhooks")
    p.add_argument("app_id")
    p.set_defaults(gw_handler=_app_show)
    p = apps.add_parser("remove", parents=[common], help="remove an app (its tokens end)")
    p.add_argument("app_id")
    p.set_defaults(gw_handler=_app_remove)

    key = apps.add_parser("key", help="ES256 keys for provider JWTs")
    keys = key.add_subparsers(dest="key_command", required=True, metavar="COMMAND")
    p = keys.add_parser("add", parents=[common], help="add a public key (PEM, P-256)")
    p.add_argument("app_id")
    p.add_argument("--public-key", type=Path, required=True, help="PEM file of the public key")
    p.add_argument("--key-id", default=None, help="the kid JWTs name (default: generated)")
    p.set_defaults(gw_handler=_key_add)
    p = keys.add_parser("list", parents=[common], help="list an app's keys")
    p.add_argument("app_id")
    p.set_defaults(gw_handler=_key_list)
    p = keys.add_parser("revoke", parents=[common], help="revoke a key (within a second)")
    p.add_argument("app_id")
    p.add_argument("kid")
    p.set_defaults(gw_handler=_key_revoke)

    device = sub.add_parser("device", help="manage registered push devices")
    devices = device.add_subparsers(dest="device_command", required=True, metavar="COMMAND")
    p = devices.add_parser("list", parents=[common], help="list devices")
    p.set_defaults(gw_handler=_device_list)
    p = devices.add_parser("show", parents=[common], help="show a device and its tokens")
    p.add_argument("device_id")
    p.set_defaults(gw_handler=_device_show)
    p = devices.add_parser("remove", parents=[common], help="remove a device (tokens end)")
    p.add_argument("device_id")
    p.set_defaults(gw_handler=_device_remove)


def run_gateway_command(ns: argparse.Namespace, stdout: TextIO | None = None) -> int:
    handler: Handler | None = getattr(ns, "gw_handler", None)
    out = stdout or sys.stdout
    if handler is None:
        print("pushwire: missing command (see --help)", file=sys.stderr)
        return 2
    import sqlite3

    from pushwire.gateway.admin import GatewayAdmin
    from pushwire.gateway.store import (
        DB_FILENAME,
        GatewayStoreError,
        SQLiteGatewayStore,
        make_gateway_store,
    )

    # only a Redis store raises Redis errors: redis (and the settings model naming its
    # default URL) is imported for engine=redis only
    redis_errors: tuple[type[Exception], ...] = ()
    data_dir = ns.data_dir or Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    store: GatewayStore = SQLiteGatewayStore.in_data_dir(data_dir)
    where = str(data_dir / DB_FILENAME)
    if os.environ.get(ENGINE_ENV) == "redis":
        import redis

        from pushwire.config import Settings

        redis_errors = (redis.RedisError,)
        # engine=redis servers keep apps and devices in Redis: edit them there
        where = os.environ.get(REDIS_URL_ENV) or Settings.model_fields["redis_url"].default
        store = make_gateway_store(memory=False, engine="redis", redis_url=where)
    open_errors: tuple[type[Exception], ...] = (sqlite3.Error, RuntimeError, OSError, *redis_errors)
    try:
        store.open()
    except open_errors as exc:
        print(f"pushwire: cannot open {where}: {exc}", file=sys.stderr)
        return 1
    try:
        return handler(ns, GatewayAdmin(store), out)
    except ValueError as exc:
        print(f"pushwire: {exc}", file=sys.stderr)
        return 2
    except (GatewayStoreError, sqlite3.Error, OSError) as exc:
        print(f"pushwire: {exc}", file=sys.stderr)
        return 1
    except redis_errors as exc:
        print(f"pushwire: Redis error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _emit(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2) + "\n")


def _app_create(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    new = admin.create_app(ns.name)
    if ns.json:
        _emit(out, {"app_id": new.app.app_id, "api_key": new.api_key})
    else:
        out.write(f"app_id:  {new.app.app_id}\napi_key: {new.api_key}\n")
        out.write("The API key is shown once; keep it secret.\n")
    return 0


def _app_list(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    apps = sorted(admin.store.registry().apps.values(), key=lambda a: a.created)
    if ns.json:
        _emit(out, [a.public() for a in apps])
    else:
        for a in apps:
            out.write(f"{a.app_id}  {_when(a.created)}  {a.name}\n")
    return 0


def _app_show(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    reg = admin.store.registry()
    app = admin.app(ns.app_id)
    keys = [k.public() for (a, _), k in reg.keys.items() if a == app.app_id]
    info = {**app.public(), "keys": keys}
    if ns.json:
        _emit(out, info)
    else:
        out.write(f"app_id:  {app.app_id}\nname:    {app.name}\ncreated: {_when(app.created)}\n")
        out.write(f"webhooks: {json.dumps(app.webhooks())}\n")
        for k in keys:
            out.write(f"key {k['kid']}: {k['status']}\n")
    return 0


def _app_remove(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    admin.remove_app(ns.app_id)
    out.write(f"removed app {ns.app_id}\n")
    return 0


def _key_add(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    key, _ = admin.add_key(ns.app_id, ns.public_key.read_bytes(), ns.key_id)
    if ns.json:
        _emit(out, key.public())
    else:
        out.write(f"added key {key.kid} to {key.app_id}\n")
    return 0


def _key_list(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    admin.app(ns.app_id)
    keys = [k.public() for (a, _), k in admin.store.registry().keys.items() if a == ns.app_id]
    if ns.json:
        _emit(out, keys)
    else:
        for k in keys:
            out.write(f"{k['kid']}  {k['status']}  created {_when(k['created'])}\n")
    return 0


def _key_revoke(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    admin.revoke_key(ns.app_id, ns.kid)
    out.write(f"revoked key {ns.kid} of {ns.app_id}\n")
    return 0


def _device_info(admin: GatewayAdmin, device_id: str) -> dict[str, Any] | None:
    reg = admin.store.registry()
    d = reg.devices.get(device_id)
    if d is None:
        return None
    tokens = [
        {"app": t.app_id, "created": t.created, "deleted": t.deleted}
        for t in reg.tokens.values()
        if t.device_id == device_id
    ]
    return {
        "device_id": d.device_id,
        "created": d.created,
        "last_seen": d.last_seen,
        "tokens": tokens,
    }


def _device_list(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    devices = sorted(admin.store.registry().devices.values(), key=lambda d: d.created)
    if ns.json:
        _emit(
            out,
            [
                {"device_id": d.device_id, "created": d.created, "last_seen": d.last_seen}
                for d in devices
            ],
        )
    else:
        for d in devices:
            out.write(f"{d.device_id}  created {_when(d.created)}  seen {_when(d.last_seen)}\n")
    return 0


def _device_show(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    info = _device_info(admin, ns.device_id)
    if info is None:
        print(f"pushwire: no device {ns.device_id!r}", file=sys.stderr)
        return 1
    if ns.json:
        _emit(out, info)
    else:
        out.write(f"device_id: {info['device_id']}\ncreated:   {_when(info['created'])}\n")
        out.write(f"last_seen: {_when(info['last_seen'])}\n")
        for t in info["tokens"]:
            state = "deleted " + _when(t["deleted"]) if t["deleted"] else "live"
            out.write(f"token for {t['app']}: {state}\n")
    return 0


def _device_remove(ns: argparse.Namespace, admin: GatewayAdmin, out: TextIO) -> int:
    admin.remove_device(ns.device_id)
    out.write(f"removed device {ns.device_id}\n")
    return 0
