"""Take one screenshot per web console page into docs/console/*.png.

    .venv/bin/python scripts/console_screenshots.py [--out docs/console]

Starts a pushwire (memory store, free ports on 127.0.0.1), gives it a little life (users,
tokens, ACL rules, MQTT clients, an offline session with a queue, an SSE and a WebSocket
reader, retained messages, a trickle of traffic), then drives headless Chromium
(tests/helpers/browser.py) through every page. Needs `pip install -e '.[test]'` and
`make deps-test` (chromium, chromium-driver). Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers import browser  # noqa: E402

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

ADMIN = ("root", "root-password")
PAGES = (
    *("live", "retained", "clients", "sessions", "metrics", "users", "tokens", "acl"),
    *("apps", "devices", "pushes"),
)
_LISTEN = re.compile(r"(mqtt|http) listening on 127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def server(workdir: Path) -> Iterator[tuple[int, int]]:
    """A pushwire with an admin user; yields (mqtt port, http port)."""
    data = workdir / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    subprocess.run(
        [
            *(sys.executable, "-m", "pushwire", "user", "add", ADMIN[0], "--role", "admin"),
            *("--password-stdin", "--data-dir", str(data)),
        ],
        input=f"{ADMIN[1]}\n".encode(),
        check=True,
        capture_output=True,
        env=env,
    )
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pushwire", "serve", "--bind", "127.0.0.1"),
                *("--mqtt-port", "0", "--http-port", "0", "--data-dir", str(data)),
                *("--sys-interval", "0", "--connection-rate-per-ip", "0"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        ports: dict[str, int] = {}
        deadline = time.monotonic() + 20
        while len(ports) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pushwire did not start:\n" + log.read_text())
            ports.update((k, int(p)) for k, p in _LISTEN.findall(log.read_text()))
            time.sleep(0.05)
        yield ports["mqtt"], ports["http"]
    finally:
        proc.terminate()
        proc.wait(10)


def mqtt_client(
    port: int, client_id: str, auth: tuple[str, str], *, clean: bool = True
) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    client.username_pw_set(*auth)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"{client_id} did not connect")
    return client


def populate(api: httpx.Client, mqtt_port: int) -> list[mqtt.Client]:
    """Users, tokens, rules, clients and messages that make the pages worth looking at."""
    for name, roles in (("alice", ["ops"]), ("kiosk", []), ("sensors", [])):
        api.post("/v1/admin/users", json={"name": name, "password": f"{name}-pw", "roles": roles})
    for rule in (
        {"role": "admin", "access": "allow", "permission": "readwrite", "filter": "#"},
        {"role": "ops", "access": "allow", "permission": "readwrite", "filter": "home/#"},
        {"user": "sensors", "access": "allow", "permission": "write", "filter": "home/+/+"},
        {"user": "kiosk", "access": "allow", "permission": "read", "filter": "home/#"},
        {"user": "kiosk", "access": "deny", "permission": "read", "filter": "home/garage/#"},
        {"all": True, "access": "allow", "permission": "readwrite", "filter": "users/%u/#"},
    ):
        api.post("/v1/admin/acl", json=rule)
    kiosk = api.post(
        "/v1/admin/tokens",
        json={"user": "kiosk", "name": "hall display", "expires": "30d", "scope": ["read:home/#"]},
    ).json()
    sensors = api.post(
        "/v1/admin/tokens", json={"user": "sensors", "name": "sensor fleet", "expires": None}
    ).json()
    old = api.post("/v1/admin/tokens", json={"user": "alice", "name": "old laptop"}).json()
    api.delete(f"/v1/admin/tokens/{old['id']}")
    for topic, value in (
        ("home/kitchen/temperature", "21.5"),
        ("home/garage/door", "closed"),
        ("home/hall/lamp", "on"),
        ("home/garden/humidity", "64"),
    ):
        api.post(f"/v1/publish/{topic}?retain=true&qos=1", content=value)

    clients = [
        mqtt_client(mqtt_port, "sensor-kitchen", ("sensors", sensors["token"])),
        mqtt_client(mqtt_port, "sensor-garage", ("sensors", sensors["token"])),
        mqtt_client(mqtt_port, "hall-display", ("", kiosk["token"])),
        mqtt_client(mqtt_port, "ops-console-alice", ("alice", "alice-pw")),
    ]
    clients[2].subscribe("home/#", 1)
    clients[3].subscribe([("home/+/alarm", 1), ("users/alice/#", 1)])
    phone = mqtt_client(mqtt_port, "alice-phone", ("alice", "alice-pw"), clean=False)
    phone.subscribe("users/alice/inbox", 1)
    time.sleep(0.3)  # let the SUBACK land before the session goes offline
    phone.disconnect()
    phone.loop_stop()
    for i in range(7):
        api.post("/v1/publish/users/alice/inbox?qos=1", content=f"note {i}")
    return clients


def populate_gateway(api: httpx.Client, mqtt_port: int) -> tuple[list[mqtt.Client], str]:
    """Apps, devices (two online over MQTT, one gone, one never seen) and pushes to them;
    returns the device clients and the id of a delivered push (looked up on its page)."""
    apps = {
        name: api.post("/v1/admin/apps", json={"name": name}).json() for name in ("mail", "chat")
    }
    api.put(
        f"/v1/admin/apps/{apps['mail']['app_id']}/webhooks",
        json={
            "receipt_url": "https://mail.example/push-receipts",
            "wake": {"url": "https://mail.example/wake", "secret": "s3cret", "after_seconds": 30},
        },
    )
    devices = []
    for _ in range(4):
        reply = api.post("/v1/devices", auth=None).json()
        device = (reply["device_id"], reply["device_secret"])
        tokens = {
            name: api.post(
                f"/v1/devices/{device[0]}/tokens", json={"app": app["app_id"]}, auth=device
            ).json()["token"]
            for name, app in apps.items()
        }
        devices.append((device, tokens))
    online: list[mqtt.Client] = []
    for device, _tokens in devices[:3]:
        client = mqtt_client(mqtt_port, device[0], device, clean=False)
        client.subscribe(f"devices/{device[0]}/#", 1)
        online.append(client)
    time.sleep(0.3)  # let the SUBACKs land
    gone = online.pop()  # the third device was seen, then went away
    gone.disconnect()
    gone.loop_stop()
    delivered = ""
    for n, (app, (_device, tokens)) in enumerate(
        [(a, d) for d in devices for a in ("mail", "chat")] * 2
    ):
        reply = api.post(
            f"/v1/push/{tokens[app]}",
            json={"alert": f"{app} message {n}"},
            headers={"Authorization": f"Bearer {apps[app]['api_key']}"},
            auth=None,
        )
        delivered = delivered or reply.json()["id"]
    return online, delivered


def traffic(port: int, clients: list[mqtt.Client], stop: threading.Event) -> None:
    """A few messages a second, over MQTT and HTTP, so the charts have something to draw."""
    n = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=ADMIN) as api:
        while not stop.wait(0.05):
            n += 1
            room = ("kitchen", "garden", "hall")[n % 3]
            clients[n % 2].publish(f"home/{room}/temperature", f"{20 + (n % 30) / 10:.1f}", 1)
            if n % 4 == 0:
                api.post(f"/v1/publish/home/{room}/motion", content="detected")


def readers(port: int, stop: threading.Event) -> list[threading.Thread]:
    """An SSE stream and a JSON WebSocket, as the hall display's browser would hold them."""

    def sse() -> None:
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=None) as http,
            http.stream("GET", "/v1/sse/home/%23", auth=("alice", "alice-pw")) as r,
        ):
            for _ in r.iter_bytes():
                if stop.is_set():
                    return

    def ws() -> None:
        from websockets.sync.client import connect

        with connect(
            f"ws://127.0.0.1:{port}/v1/ws", additional_headers={"Authorization": _basic()}
        ) as sock:
            for flt in ("home/+/temperature", "users/root/#"):
                sock.send(json.dumps({"type": "subscribe", "sub": flt, "filter": flt}))
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    sock.recv(0.5)

    def quietly(run: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            with contextlib.suppress(Exception):  # the server stopping ends them
                run()

        return target

    threads = [threading.Thread(target=quietly(f), daemon=True) for f in (sse, ws)]
    for t in threads:
        t.start()
    return threads


def _basic() -> str:
    import base64

    return "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()


def text_of(web: WebDriver, element_id: str) -> str:
    """An element's text by id, read in the page (tables are replaced as they refresh)."""
    script = "const e = document.getElementById(arguments[0]); return e ? e.textContent : ''"
    return str(web.execute_script(script, element_id))


def shoot(out: Path, http_port: int, push_id: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = f"http://127.0.0.1:{http_port}/console"
    with browser.launch((1360, 940)) as web:
        wait = WebDriverWait(web, 20)
        web.get(url)
        wait.until(lambda d: d.find_element(By.ID, "login-form").is_displayed())
        web.find_element(By.ID, "login-user").send_keys(ADMIN[0])
        web.find_element(By.ID, "login-password").send_keys(ADMIN[1])
        web.save_screenshot(str(out / "login.png"))
        web.find_element(By.ID, "login-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "app").is_displayed())
        for page in PAGES:
            web.execute_script(f"location.hash = '#{page}'")
            wait.until(
                lambda d, p=page: d.find_element(By.ID, "main").get_attribute("data-page") == p
            )
            if page == "live":
                field = web.find_element(By.ID, "tail-filter")
                field.clear()
                field.send_keys("home/#")
                web.find_element(By.ID, "tail-start").click()
                wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tail-log .msg")) >= 14)
            elif page == "metrics":
                WebDriverWait(web, 60).until(
                    lambda d: (
                        int(d.find_element(By.ID, "main").get_attribute("data-samples") or 0) >= 25
                    )
                )
            elif page == "apps":
                web.find_element(By.ID, "app-name").send_keys("news")
                web.find_element(By.CSS_SELECTOR, "#app-form button").click()
                wait.until(lambda d: "news" in text_of(d, "apps-table"))
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#app-key code"))
            elif page == "pushes":
                web.find_element(By.ID, "push-id").send_keys(push_id)
                web.find_element(By.CSS_SELECTOR, "#push-lookup button").click()
                wait.until(lambda d: "delivered" in text_of(d, "push-record"))
                wait.until(lambda d: text_of(d, "pushes-table").count("dev_") >= 8)
            else:
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#main table tbody tr"))
            web.save_screenshot(str(out / f"{page}.png"))
            print(f"wrote {out / f'{page}.png'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args()
    if browser.missing():
        print(f"cannot take screenshots: {browser.missing()}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="pushwire-shots-") as tmp, server(Path(tmp)) as ports:
        mqtt_port, http_port = ports
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", auth=ADMIN) as api:
            clients = populate(api, mqtt_port)
            devices, push_id = populate_gateway(api, mqtt_port)
        readers(http_port, stop)
        pump = threading.Thread(target=traffic, args=(http_port, clients, stop), daemon=True)
        pump.start()
        try:
            shoot(args.out, http_port, push_id)
        finally:
            stop.set()
            pump.join(5)
            for client in clients + devices:
                client.disconnect()
                client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
