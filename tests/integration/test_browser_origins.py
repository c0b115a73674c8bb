"""Browsers, for real: a headless Chromium (Debian's chromium and chromium-driver, driven by
selenium) loads a page from one loopback port and uses pushwire on another. From an origin
listed in --cors-origins, EventSource, fetch (publish, poll headers, long-poll, a
preflighted JSON publish) and WebSockets (/v1/ws, /mqtt) work; from any other origin they
fail, and the server refused the requests (nothing was published)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from helpers import browser as browser_helper
from helpers.server import ServerProcess

from .http_util import HttpServerProcess

pytestmark = pytest.mark.pushwire_only("pushwire's HTTP transports in a browser")

# one headless-Chromium launcher for every browser test (tests/helpers/browser.py)
if browser_helper.missing() is not None:
    pytest.skip(str(browser_helper.missing()), allow_module_level=True)

from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402 (after the skip)

PUBLISH = """
const [base, body, done] = arguments;
fetch(base + "/v1/publish/b/t", {method: "POST", body: body})
  .then(r => r.json().then(j => done({ok: true, status: r.status, id: j.id})))
  .catch(e => done({ok: false, error: String(e)}));
"""
PUBLISH_JSON = """
const [base, body, done] = arguments;
fetch(base + "/v1/publish", {method: "POST", headers: {"Content-Type": "application/json"},
                             body: JSON.stringify({topic: "b/j", payload: body})})
  .then(r => done({ok: true, status: r.status}))
  .catch(e => done({ok: false, error: String(e)}));
"""
POLL_HEADERS = """
const [base, done] = arguments;
fetch(base + "/v1/poll/b/%23?since=all")
  .then(r => done({ok: true, gap: r.headers.get("Pushwire-Gap"), etag: r.headers.get("ETag")}))
  .catch(e => done({ok: false, error: String(e)}));
"""
LONG_POLL = """
const [base, done] = arguments;
fetch(base + "/v1/longpoll/b/%23?since=all&timeout=5")
  .then(r => r.json().then(j => done({ok: true, payloads: j.messages.map(m => m.payload)})))
  .catch(e => done({ok: false, error: String(e)}));
"""
EVENT_SOURCE = """
const [base, done] = arguments;
const es = new EventSource(base + "/v1/sse/b/%23?since=all");
es.onmessage = e => { es.close(); done({ok: true, data: JSON.parse(e.data), id: e.lastEventId}); };
es.onerror = () => { es.close(); done({ok: false}); };
"""
WEBSOCKET = """
const [url, protocol, done] = arguments;
const ws = protocol ? new WebSocket(url, protocol) : new WebSocket(url);
let opened = false;
ws.onopen = () => {
  opened = true;
  if (protocol) { ws.close(); done({ok: true}); return; }
  ws.send(JSON.stringify({type: "subscribe", sub: "s", filter: "b/#", ref: 1}));
};
ws.onmessage = e => {
  const frame = JSON.parse(e.data);
  if (frame.type === "ping") return;
  ws.close();
  done({ok: true, frame: frame});
};
ws.onclose = () => { if (!opened) done({ok: false}); };
"""


@pytest.fixture(scope="module")
def page_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A tiny web server for the test page, on a loopback port of its own."""
    root = tmp_path_factory.mktemp("page")
    (root / "index.html").write_text("<!doctype html><title>page</title><p>a page</p>")
    handler = partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pushwire(page_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """pushwire trusting the page's origin http://127.0.0.1:PAGE (not http://localhost:PAGE)."""
    base = tmp_path_factory.mktemp("pw")
    srv = HttpServerProcess(
        base / "data",
        base / "logs",
        ["--cors-origins", f"http://127.0.0.1:{page_port}"],
        kind="pushwire",
        memory=True,
        sys_interval=0,
    )
    try:
        yield srv.start()
    finally:
        srv.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with browser_helper.launch() as driver:
        driver.set_script_timeout(15)
        driver.set_page_load_timeout(15)
        yield driver


def run(driver: WebDriver, script: str, *args: Any) -> dict[str, Any]:
    result = driver.execute_async_script(script, *args)
    assert isinstance(result, dict), result
    return result


def pw_urls(srv: ServerProcess) -> tuple[str, str]:
    return f"http://127.0.0.1:{srv.http_port}", f"ws://127.0.0.1:{srv.http_port}"


def payloads(srv: ServerProcess) -> list[str]:
    base, _ = pw_urls(srv)
    r = httpx.get(f"{base}/v1/poll/b/%23", params={"since": "all"})
    assert r.status_code == 200
    return [m["payload"] for m in r.json()["messages"]]


def test_a_trusted_origin_uses_every_transport(
    browser: WebDriver, pushwire: ServerProcess, page_port: int
) -> None:
    browser.get(f"http://127.0.0.1:{page_port}/index.html")
    base, ws = pw_urls(pushwire)
    published = run(browser, PUBLISH, base, "from-the-page")
    assert published["ok"] and published["status"] == 201, published
    assert run(browser, PUBLISH_JSON, base, "json-from-the-page") == {"ok": True, "status": 201}
    headers = run(browser, POLL_HEADERS, base)
    assert headers["ok"] and headers["gap"] == "false" and headers["etag"], headers
    held = run(browser, LONG_POLL, base)
    assert held["ok"] and "from-the-page" in held["payloads"], held
    event = run(browser, EVENT_SOURCE, base)
    assert event["ok"] and event["data"]["payload"] == "from-the-page", event
    assert event["id"].endswith(f":{published['id']}")
    frame = run(browser, WEBSOCKET, ws + "/v1/ws", None)
    assert frame["ok"] and frame["frame"]["type"] == "subscribed", frame
    assert run(browser, WEBSOCKET, ws + "/mqtt", "mqtt") == {"ok": True}


def test_another_origin_is_refused(
    browser: WebDriver, pushwire: ServerProcess, page_port: int
) -> None:
    # the same page, under another name: another origin, not in --cors-origins
    browser.get(f"http://localhost:{page_port}/index.html")
    base, ws = pw_urls(pushwire)
    assert run(browser, PUBLISH, base, "cross-site")["ok"] is False
    assert run(browser, PUBLISH_JSON, base, "cross-site-json")["ok"] is False
    assert run(browser, POLL_HEADERS, base)["ok"] is False
    assert run(browser, LONG_POLL, base)["ok"] is False
    assert run(browser, EVENT_SOURCE, base) == {"ok": False}
    assert run(browser, WEBSOCKET, ws + "/v1/ws", None) == {"ok": False}
    assert run(browser, WEBSOCKET, ws + "/mqtt", "mqtt") == {"ok": False}
    # the server refused the publishes (a browser sends a simple POST anyway): a marker
    # published after them is there, they are not
    base_url, _ = pw_urls(pushwire)
    assert httpx.post(f"{base_url}/v1/publish/b/t", content=b"marker").status_code == 201
    seen = payloads(pushwire)
    assert "marker" in seen and "cross-site" not in seen, seen
    # and the same requests without a browser (no Origin) are unaffected
    assert httpx.post(f"{base_url}/v1/publish/b/t", content=b"curl").status_code == 201
