"""The web console (/console) in a real headless Chromium against a real pushwire process.

Every wait is a DOM condition with a deadline (WebDriverWait), never a sleep.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from helpers import browser
from helpers.clients import PahoClient
from integration.http_util import HttpServerProcess, base

pytestmark = pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))

if browser.missing() is None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support.ui import Select, WebDriverWait

ADMIN = ("root", "root-secret-1")
WAIT_S = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServerProcess]:
    tmp = tmp_path_factory.mktemp("console")
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


@pytest.fixture
def api(server: HttpServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base(server), auth=ADMIN, timeout=10) as client:
        yield client


@pytest.fixture
def mqtt(server: HttpServerProcess) -> Iterator[Callable[..., PahoClient]]:
    clients: list[PahoClient] = []

    def connect(client_id: str, auth: tuple[str, str] | None = ADMIN) -> PahoClient:
        client = PahoClient(server.host, server.mqtt_port, client_id, auth=auth)
        clients.append(client)
        client.connect()
        return client

    yield connect
    for client in clients:
        client.close()


def wait(web: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    # the console re-renders its tables when data changes (live updates, refreshes): an
    # element a condition found may be replaced before it reads it. That is a changed page,
    # not a failed condition: look again on the next poll
    return WebDriverWait(web, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message=f"waiting for {what}"
    )


def find(web: WebDriver, css: str) -> WebElement:
    found: WebElement = wait(web, lambda d: d.find_element(By.CSS_SELECTOR, css), css)
    return found


def usable(web: WebDriver, css: str) -> WebElement:
    """The element once it is shown and enabled (some appear only after a request)."""

    def ready(d: WebDriver) -> WebElement | bool:
        found = d.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found and found[0].is_displayed() and found[0].is_enabled() else False

    element: WebElement = wait(web, ready, f"{css} shown and enabled")
    return element


def click(web: WebDriver, css: str) -> None:
    usable(web, css).click()


def fill(web: WebDriver, css: str, text: str) -> None:
    field = usable(web, css)
    field.clear()
    field.send_keys(text)


def open_console(web: WebDriver, server: HttpServerProcess) -> None:
    """A fresh, logged-out console."""
    web.get(base(server) + "/console")
    web.execute_script("sessionStorage.clear()")
    web.get(base(server) + "/console")
    find(web, "#login-form")


def login_password(web: WebDriver, server: HttpServerProcess, user: str, password: str) -> None:
    open_console(web, server)
    fill(web, "#login-user", user)
    fill(web, "#login-password", password)
    click(web, "#login-submit")
    wait(web, lambda d: d.find_element(By.ID, "app").is_displayed(), "the console after login")


def go(web: WebDriver, page: str) -> None:
    web.execute_script(f"location.hash = '#{page}'")
    wait(web, lambda d: d.find_element(By.ID, "main").get_attribute("data-page") == page, page)


def tail_payloads(web: WebDriver) -> list[str]:
    return [e.text for e in web.find_elements(By.CSS_SELECTOR, "#tail-log .msg .payload")]


def table_text(web: WebDriver, table_id: str) -> str:
    """The table's rendered text ('' while it is not there), read in one step in the page:
    finding the element and then reading it could meet a table re-rendered in between (and
    turned that into '', failing a check that it holds something)."""
    text = web.execute_script(
        "const t = document.getElementById(arguments[0]); return t ? t.innerText : '';",
        table_id,
    )
    return str(text)


def test_bad_password_is_refused_and_nothing_is_stored(
    web: WebDriver, server: HttpServerProcess
) -> None:
    open_console(web, server)
    fill(web, "#login-user", ADMIN[0])
    fill(web, "#login-password", "wrong")
    click(web, "#login-submit")
    error = wait(web, lambda d: d.find_element(By.ID, "login-error").text, "a login error")
    assert "password" in error or "credentials" in error
    assert web.execute_script("return sessionStorage.getItem('pushwire.auth')") is None
    assert not web.find_element(By.ID, "app").is_displayed()


def test_tail_shows_form_and_mqtt_publishes_with_cursor(
    web: WebDriver, server: HttpServerProcess, mqtt: Callable[..., PahoClient]
) -> None:
    login_password(web, server, *ADMIN)
    # the credential is a header value in sessionStorage, never a cookie
    assert web.execute_script("return sessionStorage.getItem('pushwire.auth')").startswith("Basic ")
    assert web.get_cookies() == []
    go(web, "live")
    prefix = f"tail-{uuid.uuid4().hex[:6]}"
    fill(web, "#tail-filter", f"{prefix}/#")
    click(web, "#tail-start")
    wait(web, lambda d: d.find_element(By.ID, "main").get_attribute("data-tail") == "live", "live")
    wait(web, lambda d: "cursor " in d.find_element(By.ID, "tail-cursor").text, "a cursor")

    fill(web, "#pub-topic", f"{prefix}/form")
    fill(web, "#pub-payload", "sent from the form")
    click(web, "#pub-send")
    wait(web, lambda d: "published: id" in d.find_element(By.ID, "pub-result").text, "publish")
    wait(web, lambda d: "sent from the form" in tail_payloads(d), "the form's message in the tail")

    publisher = mqtt(f"pub-{prefix}")
    publisher.publish(f"{prefix}/mqtt", b"sent over mqtt", qos=1)
    wait(web, lambda d: "sent over mqtt" in tail_payloads(d), "the MQTT message in the tail")
    topics = [e.text for e in web.find_elements(By.CSS_SELECTOR, "#tail-log .msg .topic")]
    assert topics[:2] == [f"{prefix}/mqtt", f"{prefix}/form"]  # newest first
    count = web.find_element(By.ID, "tail-count").text
    assert count == "2 messages"


def test_tail_reports_a_refused_filter(web: WebDriver, server: HttpServerProcess) -> None:
    login_password(web, server, *ADMIN)
    go(web, "live")
    fill(web, "#tail-filter", "a/#/b")
    click(web, "#tail-start")
    wait(
        web,
        lambda d: "refused" in d.find_element(By.ID, "tail-log").text,
        "the refusal in the tail",
    )


def test_retained_messages_under_a_filter(
    web: WebDriver, server: HttpServerProcess, api: httpx.Client
) -> None:
    api.post("/v1/publish/shelf/lamp?retain=true", content=b"on").raise_for_status()
    api.post("/v1/publish/shelf/fan", content=b"not retained").raise_for_status()
    login_password(web, server, *ADMIN)
    go(web, "retained")
    fill(web, "#retained-filter", "shelf/+")
    click(web, "#retained-form button")
    wait(web, lambda d: "shelf/lamp" in table_text(d, "retained-table"), "the retained message")
    text = table_text(web, "retained-table")
    assert "on" in text and "shelf/fan" not in text


def test_create_token_log_in_with_it_and_revoke_it(
    web: WebDriver,
    server: HttpServerProcess,
    api: httpx.Client,
    mqtt: Callable[..., PahoClient],
) -> None:
    user = f"dev{uuid.uuid4().hex[:6]}"
    api.post("/v1/admin/users", json={"name": user, "password": "dev-secret-1"}).raise_for_status()
    login_password(web, server, *ADMIN)
    go(web, "tokens")
    wait(web, lambda d: user in d.find_element(By.ID, "token-user").text, "the user list")
    Select(find(web, "#token-user")).select_by_value(user)
    fill(web, "#token-name", "console-test")
    fill(web, "#token-expires", "1h")
    click(web, "#token-form button")
    secret = wait(web, lambda d: d.find_element(By.CSS_SELECTOR, "#token-secret code").text, "")
    assert secret.startswith("pw_")
    token_id = secret.split("_")[1]
    wait(web, lambda d: token_id in table_text(d, "tokens-table"), "the new token listed")
    listed = {t["id"]: t for t in api.get("/v1/admin/tokens").json()}
    assert listed[token_id]["user"] == user and listed[token_id]["name"] == "console-test"

    # a client on that token, and a marker client that stays: it proves the page refreshed
    device = mqtt(f"dev-{token_id}", auth=(user, secret))
    device.subscribe("gadgets/x", qos=1)  # devices/# is the gateway's reserved tree
    mqtt(f"marker-{token_id}")
    go(web, "clients")
    wait(web, lambda d: f"dev-{token_id}" in table_text(d, "clients-table"), "the token's client")
    row = web.find_element(By.CSS_SELECTOR, f'#clients-table tr[data-key="mqtt:dev-{token_id}"]')
    assert user in row.text and token_id in row.text and "gadgets/x" in row.text

    go(web, "tokens")
    revoke = f'#tokens-table tr[data-key="{token_id}"] button.danger'
    click(web, revoke)  # first click arms it
    click(web, revoke + ".confirm")
    wait(web, lambda d: "revoked" in d.find_element(By.ID, "tokens-msg").text, "the revocation")
    assert device.disconnected.wait(WAIT_S)

    go(web, "clients")
    wait(
        web,
        lambda d: (
            f"marker-{token_id}" in table_text(d, "clients-table")
            and f"dev-{token_id}" not in table_text(d, "clients-table")
        ),
        "the revoked token's client gone, the marker still listed",
    )


def test_token_login_is_not_admin(
    web: WebDriver, server: HttpServerProcess, api: httpx.Client
) -> None:
    user = f"reader{uuid.uuid4().hex[:6]}"
    api.post("/v1/admin/users", json={"name": user, "password": "reader-secret"}).raise_for_status()
    token = api.post("/v1/admin/tokens", json={"user": user}).json()["token"]
    open_console(web, server)
    click(web, "#login-tab-token")
    fill(web, "#login-token", token)
    click(web, "#login-submit")
    wait(web, lambda d: d.find_element(By.ID, "who-user").text == user, "logged in as the user")
    assert web.find_element(By.ID, "who-badge").text == "token"
    assert not web.find_element(By.CSS_SELECTOR, 'a[data-page="clients"]').is_displayed()
    assert web.execute_script("return sessionStorage.getItem('pushwire.auth')") == f"Bearer {token}"
    go(web, "live")  # an admin page asked for by a non-admin lands on the live tail
    web.execute_script("location.hash = '#clients'")
    wait(web, lambda d: d.find_element(By.ID, "main").get_attribute("data-page") == "live", "live")


def test_sessions_and_metrics_pages(
    web: WebDriver, server: HttpServerProcess, mqtt: Callable[..., PahoClient]
) -> None:
    name = f"keep-{uuid.uuid4().hex[:6]}"
    client = PahoClient(server.host, server.mqtt_port, name, clean_session=False, auth=ADMIN)
    client.connect()
    client.subscribe(f"{name}/q", qos=1)
    client.close()
    publisher = mqtt(f"p-{name}")
    for i in range(3):
        publisher.publish(f"{name}/q", f"m{i}".encode(), qos=1)
    login_password(web, server, *ADMIN)
    go(web, "sessions")
    key = f'#sessions-table tr[data-key="{name}"]'
    row = wait(
        web,
        lambda d: (r := d.find_elements(By.CSS_SELECTOR, key)) and "offline" in r[0].text and r[0],
        "the offline session",
    )
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[4] == "3"  # queued
    go(web, "metrics")
    wait(
        web,
        lambda d: int(d.find_element(By.ID, "main").get_attribute("data-samples") or 0) >= 2,
        "two metric samples",
    )
    assert int(web.find_element(By.ID, "kpi-queued").text) >= 3


def test_console_files_are_served_with_a_strict_policy(api: httpx.Client) -> None:
    page = api.get("/console")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert api.get("/console/console.js").headers["content-type"].startswith("text/javascript")
    missing = api.get("/console/../pyproject.toml")
    assert missing.status_code == 404
    assert api.get("/console/nothing.js").json()["error"]["code"] == "not_found"


def test_anonymous_tail_and_gap(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A fresh server with no users admits anonymous clients from localhost: the console
    offers to go on without a login, and the live tail works; a tail that starts behind
    messages the log no longer holds shows the gap the server reports."""
    tmp = tmp_path_factory.mktemp("console-open")
    srv = HttpServerProcess(
        tmp / "data", tmp / "logs", ["--log-max-messages", "2"], kind="pushwire", memory=True
    )
    srv.start()
    try:
        with browser.launch() as web:
            web.get(base(srv) + "/console")
            click(web, "#login-anonymous")
            wait(web, lambda d: d.find_element(By.ID, "who-badge").text == "no login", "")
            go(web, "live")
            fill(web, "#tail-filter", "open/#")
            click(web, "#tail-start")
            wait(
                web,
                lambda d: d.find_element(By.ID, "main").get_attribute("data-tail") == "live",
                "",
            )
            httpx.post(f"{base(srv)}/v1/publish/open/door", content=b"opened").raise_for_status()
            wait(web, lambda d: "opened" in tail_payloads(d), "the message in the tail")
            assert web.execute_script("return sessionStorage.getItem('pushwire.auth')") == ""

            for i in range(5):  # the log keeps the last 2 of a topic: 1..3 are evicted
                httpx.post(f"{base(srv)}/v1/publish/gap/x", content=f"m{i + 1}").raise_for_status()
            click(web, "#tail-stop")
            fill(web, "#tail-filter", "gap/#")
            Select(find(web, "#tail-since")).select_by_value("10m")
            click(web, "#tail-start")
            wait(web, lambda d: "m5" in tail_payloads(d), "the replay")
            events = [e.text for e in web.find_elements(By.CSS_SELECTOR, "#tail-log .event")]
            assert any("gap: messages after 10m are gone" in e for e in events), events
            assert [p for p in tail_payloads(web) if p.startswith("m")] == ["m5", "m4"]
    finally:
        srv.cleanup()
