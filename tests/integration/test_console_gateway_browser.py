"""The web console's device gateway pages (apps, devices, push status) in a real headless
Chromium against a real pushwire process: an app made from the console, a device registered
over HTTP and connected over MQTT, a push sent with the app's key.

Every wait is a DOM condition with a deadline (WebDriverWait), never a sleep.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from helpers import browser
from helpers.clients import PahoClient
from integration.http_util import HttpServerProcess, base
from integration.test_console_browser import (
    click,
    fill,
    find,
    go,
    login_password,
    table_text,
    wait,
)

pytestmark = [
    pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing())),
    pytest.mark.pushwire_only("push gateway"),
]

if browser.missing() is None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

ADMIN = ("root", "root-secret-1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServerProcess]:
    tmp = tmp_path_factory.mktemp("console-gw")
    srv = HttpServerProcess(
        tmp / "data", tmp / "logs", [], kind="pushwire", admin=ADMIN, sys_interval=0
    )
    srv.start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def web() -> Iterator[WebDriver]:
    with browser.launch() as driver:
        yield driver


def _badge(web: WebDriver, table: str, key: str, attribute: str) -> str | None:
    """The `attribute` of the badge in the table row of `key` (None: no such row or badge),
    read in one step in the page: the console re-renders the row when the device's or push's
    state changes, so a row found first and read after could be gone (a flake)."""
    value = web.execute_script(
        "const b = document.querySelector(arguments[0]);"
        " return b ? b.getAttribute(arguments[1]) : null;",
        f'#{table} tr[data-key="{key}"] [{attribute}]',
        attribute,
    )
    return None if value is None else str(value)


def device_status(web: WebDriver, device_id: str) -> str | None:
    return _badge(web, "devices-table", device_id, "data-status")


def push_state(web: WebDriver, push_id: str) -> str | None:
    return _badge(web, "pushes-table", push_id, "data-state")


def test_app_device_and_push_from_creation_to_delivery(
    web: WebDriver, server: HttpServerProcess
) -> None:
    login_password(web, server, *ADMIN)
    for page in ("apps", "devices", "pushes"):
        find(web, f'#nav-extra a[data-page="{page}"]')

    # an app made in the console; its API key is shown once
    go(web, "apps")
    fill(web, "#app-name", "mail")
    click(web, "#app-form button")
    shown = wait(web, lambda d: d.find_element(By.CSS_SELECTOR, "#app-key code").text, "key")
    assert shown.startswith("pwk_")
    wait(web, lambda d: "mail" in table_text(d, "apps-table"), "the app in the table")
    assert shown not in table_text(web, "apps-table")
    apps = httpx.get(f"{base(server)}/v1/admin/apps", auth=ADMIN).json()["apps"]
    app_id = next(a["app_id"] for a in apps if a["name"] == "mail")
    assert app_id in table_text(web, "apps-table")
    go(web, "devices")  # leaving the page forgets the key: shown once
    go(web, "apps")
    wait(web, lambda d: "mail" in table_text(d, "apps-table"), "the app table again")
    assert shown not in str(web.find_element(By.ID, "main").text)

    # a device registered over HTTP, with a token for the app, connected over MQTT
    url = base(server)
    r = httpx.post(f"{url}/v1/devices")
    device = (r.json()["device_id"], r.json()["device_secret"])
    r = httpx.post(f"{url}/v1/devices/{device[0]}/tokens", json={"app": app_id}, auth=device)
    token = r.json()["token"]
    go(web, "devices")
    wait(web, lambda d: device_status(d, device[0]) == "offline", "the device, offline")
    phone = PahoClient(server.host, server.mqtt_port, device[0], auth=device, clean_session=False)
    phone.connect()
    try:
        phone.subscribe(f"devices/{device[0]}/#", qos=1)
        wait(web, lambda d: device_status(d, device[0]) == "online", "the device online")
        assert token[:14] in table_text(web, "devices-table")
        assert device[1] not in str(web.find_element(By.ID, "main").text)

        # a push with the app's key: delivered, shown on the push status page
        r = httpx.post(
            f"{url}/v1/push/{token}",
            content=json.dumps({"alert": "hello"}),
            headers={"Authorization": f"Bearer {shown}", "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        push_id = r.json()["id"]
        assert json.loads(phone.get().payload)["id"] == push_id
        go(web, "pushes")
        wait(web, lambda d: push_state(d, push_id) == "delivered", "the push delivered")
        assert "mail" in table_text(web, "pushes-table")
        fill(web, "#push-id", push_id)
        click(web, "#push-lookup button")
        record = wait(web, lambda d: d.find_element(By.ID, "push-record").text, "the record")
        assert "delivered" in record and f"mqtt {device[0]}" in record
    finally:
        phone.close()

    go(web, "devices")
    wait(web, lambda d: device_status(d, device[0]) == "offline", "the device offline again")


def test_gateway_pages_are_for_admins_only(web: WebDriver, server: HttpServerProcess) -> None:
    user = ("reader", "reader-secret-1")
    r = httpx.post(
        f"{base(server)}/v1/admin/users",
        json={"name": user[0], "password": user[1]},
        auth=ADMIN,
    )
    assert r.status_code in (201, 409), r.text
    login_password(web, server, *user)
    links = web.find_elements(By.CSS_SELECTOR, "#nav-extra a, #nav-extra .nav-group")
    assert links and not any(link.is_displayed() for link in links)
    go(web, "retained")  # the console works for this user; from here, #apps must fall back
    web.execute_script("location.hash = '#apps'")
    wait(web, lambda d: d.find_element(By.ID, "main").get_attribute("data-page") == "live", "")
    assert not web.find_elements(By.ID, "apps-table")
