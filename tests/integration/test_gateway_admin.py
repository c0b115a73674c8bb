"""Push gateway: apps through the admin API and the CLI, registration secret, --memory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import httpx
import pytest

from helpers.gateway import (
    base_url,
    bearer,
    cli,
    decode,
    device_token,
    push,
    register_device,
)
from helpers.server import ServerProcess
from pushwire.config import Settings
from pushwire.server import PushwireServer

pytestmark = pytest.mark.pushwire_only("push gateway")

ROOT = ("root", "root-password")


def test_admin_api_manages_apps_and_devices(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(admin=ROOT)
    url = f"{base_url(srv)}/v1/admin/apps"
    assert httpx.post(url, json={"name": "x"}).status_code == 401
    r = httpx.post(url, json={"name": "mail"}, auth=ROOT)
    assert r.status_code == 201, r.text
    app_id, key = r.json()["app_id"], r.json()["api_key"]
    assert [a["app_id"] for a in httpx.get(url, auth=ROOT).json()["apps"]] == [app_id]
    hooks = {"receipt_url": "http://127.0.0.1:9/r", "wake": None}
    r = httpx.put(f"{url}/{app_id}/webhooks", json=hooks, auth=ROOT)
    assert r.json() == {"receipt_url": "http://127.0.0.1:9/r", "wake": None}
    r = httpx.put(f"{url}/{app_id}/webhooks", json={"receipt_url": "ftp://x"}, auth=ROOT)
    assert r.status_code == 400
    # the app's own key may set its webhooks, not another app's
    r = httpx.put(
        f"{base_url(srv)}/v1/apps/{app_id}/webhooks",
        json={"receipt_url": None},
        headers=bearer(key),
    )
    assert r.status_code == 200 and r.json()["receipt_url"] is None
    assert httpx.get(f"{url}/{app_id}", auth=ROOT).json()["name"] == "mail"

    device = register_device(srv)
    token = device_token(srv, device, app_id)
    devices = httpx.get(f"{base_url(srv)}/v1/admin/devices", auth=ROOT).json()["devices"]
    assert [d["device_id"] for d in devices] == [device[0]]
    assert httpx.get(f"{base_url(srv)}/v1/devices/{device[0]}", auth=ROOT).status_code == 200
    assert httpx.delete(f"{url}/{app_id}", auth=ROOT).status_code == 204
    r = push(srv, key, token, {"alert": "x"})
    assert (r.status_code, r.json()["reason"]) == (403, "InvalidProviderToken")


def test_cli_lists_shows_and_removes_apps(server: ServerProcess) -> None:
    done = cli(server, "app", "create", "chat")
    assert done.returncode == 0
    assert "api_key: pwk_" in done.stdout
    app_id = done.stdout.split()[1]
    listed = json.loads(cli(server, "app", "list", "--json").stdout)
    assert [a["app_id"] for a in listed] == [app_id]
    assert json.loads(cli(server, "app", "show", app_id, "--json").stdout)["name"] == "chat"
    assert cli(server, "app", "show", "app_nope", "--json").returncode == 1
    assert cli(server, "app", "create", "").returncode == 2
    assert cli(server, "app", "remove", app_id).returncode == 0
    assert json.loads(cli(server, "app", "list", "--json").stdout) == []


def test_registration_secret(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(extra_args=["--device-registration-secret", "let-me-in"])
    url = f"{base_url(srv)}/v1/devices"
    assert httpx.post(url).status_code == 403
    assert httpx.post(url, headers={"Pushwire-Registration-Secret": "wrong"}).status_code == 403
    r = httpx.post(url, headers={"Pushwire-Registration-Secret": "let-me-in"})
    assert r.status_code == 201
    assert r.json()["device_id"].startswith("dev_")
    assert r.json()["device_secret"].startswith("pwd_")


async def test_memory_server_delivers_pushes(tmp_path: Path) -> None:
    """`--memory`: the gateway's memory store, in an in-process server, real sockets."""
    settings = Settings(
        memory=True, mqtt_port=0, http_port=0, sys_interval=0, data_dir=tmp_path / "unused"
    )
    srv = PushwireServer(settings)
    await srv.start()
    try:
        reg = srv.gateway.registry
        new = reg.admin.create_app("mem")  # no users in a memory server: made in-process
        await reg.wrote(new.generation, lambda: reg.put_app(new.app))
        assert srv.http_address is not None and srv.mqtt_address is not None
        url = "http://{}:{}".format(*srv.http_address)
        async with httpx.AsyncClient(base_url=url) as http:
            r = await http.post("/v1/devices")
            device = (r.json()["device_id"], r.json()["device_secret"])
            r = await http.post(
                f"/v1/devices/{device[0]}/tokens", json={"app": new.app.app_id}, auth=device
            )
            token = r.json()["token"]
            async with aiomqtt.Client(
                "127.0.0.1",
                srv.mqtt_address[1],
                identifier=device[0],
                username=device[0],
                password=device[1],
                clean_session=False,
            ) as mqtt:
                await mqtt.subscribe(f"devices/{device[0]}/#", qos=1)
                r = await http.post(
                    f"/v1/push/{token}", json={"alert": "mem"}, headers=bearer(new.api_key)
                )
                assert r.status_code == 200, r.text
                async with asyncio.timeout(5):
                    async for message in mqtt.messages:
                        assert decode(message)["payload"] == {"alert": "mem"}
                        break
            record = (
                await http.get(f"/v1/push/{r.json()['id']}", headers=bearer(new.api_key))
            ).json()
            assert record["state"] in ("queued", "delivered")
    finally:
        await srv.stop()


def test_admin_lists_push_records_and_device_tokens(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(admin=ROOT)
    apps = f"{base_url(srv)}/v1/admin/apps"
    mail = httpx.post(apps, json={"name": "mail"}, auth=ROOT).json()
    chat = httpx.post(apps, json={"name": "chat"}, auth=ROOT).json()
    one, two = register_device(srv), register_device(srv)
    mail_one = device_token(srv, one, mail["app_id"])
    chat_one = device_token(srv, one, chat["app_id"])
    mail_two = device_token(srv, two, mail["app_id"])
    ids = []
    for key, token in ((mail["api_key"], mail_one), (chat["api_key"], chat_one)):
        ids.append(push(srv, key, token, {"alert": "x"}).json()["id"])
    ids.append(push(srv, mail["api_key"], mail_two, {"alert": "y"}).json()["id"])

    url = f"{base_url(srv)}/v1/admin/pushes"
    assert httpx.get(url).status_code == 401
    r = httpx.get(url, auth=ROOT)
    assert r.status_code == 200 and r.headers["Pushwire-Total"] == "3"
    assert [p["id"] for p in r.json()["pushes"]] == ids[::-1]  # newest first
    r = httpx.get(url, params={"app": mail["app_id"]}, auth=ROOT)
    assert {p["id"] for p in r.json()["pushes"]} == {ids[0], ids[2]}
    r = httpx.get(url, params={"app": mail["app_id"], "device": one[0]}, auth=ROOT)
    assert [(p["id"], p["state"]) for p in r.json()["pushes"]] == [(ids[0], "queued")]
    r = httpx.get(url, params={"limit": 1}, auth=ROOT)
    assert len(r.json()["pushes"]) == 1 and r.headers["Pushwire-Total"] == "3"
    assert httpx.get(url, params={"limit": 0}, auth=ROOT).status_code == 400
    assert httpx.get(f"{url}/{ids[1]}", auth=ROOT).json()["app"] == chat["app_id"]
    assert httpx.get(f"{url}/nope", auth=ROOT).json()["error"]["code"] == "not_found"

    devices = httpx.get(f"{base_url(srv)}/v1/admin/devices", auth=ROOT).json()["devices"]
    tokens = {d["device_id"]: {t["app"]: t["token"] for t in d["tokens"]} for d in devices}
    assert tokens[one[0]] == {mail["app_id"]: mail_one, chat["app_id"]: chat_one}
    assert tokens[two[0]] == {mail["app_id"]: mail_two}
    assert "secret" not in json.dumps(devices)
    paths = httpx.get(f"{base_url(srv)}/openapi.json").json()["paths"]
    assert "/v1/admin/pushes" in paths and "/v1/admin/pushes/{push_id}" in paths
