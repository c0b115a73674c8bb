"""Day-one fixes on the HTTP side: the 405 Allow header, `curl -d` publishing plain text,
`/docs` without internet access, the `/` index, and `--sys-readable`."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import time
from urllib.parse import urljoin, urlparse

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties

from helpers import raw
from helpers.clients import PahoClient
from helpers.server import ServerProcess

from .http_util import StartServer, base, curl, http_server

__all__ = ["http_server"]  # the fixture

pytestmark = pytest.mark.pushwire_only("HTTP transports and settings are pushwire's")


@pytest.fixture
def srv(http_server: StartServer) -> ServerProcess:
    return http_server()


def test_405_on_raw_publish_allows_post_and_put(srv: ServerProcess) -> None:
    r = httpx.get(base(srv) + "/v1/publish/news/sport")
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers["allow"].split(",")}
    assert {"POST", "PUT"} <= allowed and "GET" not in allowed
    error = r.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert "POST" in error["message"] and "PUT" in error["message"]
    # and POST, which the old header left out, does work
    assert httpx.post(base(srv) + "/v1/publish/news/sport", content=b"x").status_code == 201


def test_405_on_json_publish_names_post(srv: ServerProcess) -> None:
    r = httpx.put(base(srv) + "/v1/publish", content=b"{}")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


class Mqtt5Subscriber:
    def __init__(self, srv: ServerProcess, flt: str) -> None:
        self.got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        subacked: queue.Queue[int] = queue.Queue()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="ct5", protocol=MQTTProtocolVersion.MQTTv5
        )
        c.on_message = lambda _c, _u, m: self.got.put(m)
        c.on_subscribe = lambda *a: subacked.put(1)
        c.connect(srv.host, srv.mqtt_port)
        c.loop_start()
        self.client = c
        c.subscribe(flt, 1)
        subacked.get(timeout=5)

    def content_type(self) -> tuple[bytes, str | None]:
        msg = self.got.get(timeout=5)
        props: Properties | None = msg.properties
        return bytes(msg.payload), getattr(props, "ContentType", None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_bare_curl_d_publishes_text_without_form_content_type(srv: ServerProcess) -> None:
    sub = Mqtt5Subscriber(srv, "news/#")
    try:
        # the README's example, as written: curl adds the form content type by itself
        curl("-d", "goal", f"{base(srv)}/v1/publish/news/sport")
        payload, ctype = sub.content_type()
        assert payload == b"goal"
        assert ctype in (None, "text/plain"), ctype
        # a content type the user gives is kept (and proves the check sees the property)
        curl("-H", "Content-Type: text/csv", "-d", "a,b", f"{base(srv)}/v1/publish/news/csv")
        assert sub.content_type() == (b"a,b", "text/csv")
    finally:
        sub.close()
    polled = httpx.get(base(srv) + "/v1/poll/news/sport").json()["messages"]
    assert "content_type" not in polled[0] or polled[0]["content_type"] == "text/plain"


def test_docs_page_references_no_external_host_and_assets_are_served(
    srv: ServerProcess,
) -> None:
    url = base(srv) + "/docs"
    page = httpx.get(url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    refs += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)
    assert len(refs) >= 3, refs  # css, favicon, js, openapi
    for ref in refs:
        absolute = urljoin(url, ref)
        assert urlparse(absolute).netloc == urlparse(url).netloc, ref
        r = httpx.get(absolute)
        assert r.status_code == 200, (ref, r.status_code)
        assert r.content, ref
    assert not re.search(r"https?://(?!127\.0\.0\.1)", page.text), "external URL in /docs"
    # the vendored licence travels with the assets
    lic = httpx.get(base(srv) + "/static/swagger-ui/LICENSE")
    assert lic.status_code == 200 and "Apache License" in lic.text


def test_root_is_a_json_index_with_links(srv: ServerProcess) -> None:
    r = httpx.get(base(srv) + "/")
    assert r.status_code == 200
    index = r.json()
    paths = {e["path"] for e in index["endpoints"]}
    assert {"/docs", "/v1/health", "/v1/publish/{topic}", "/v1/sse/{filter}"} <= paths
    health = next(e for e in index["endpoints"] if e["path"] == "/v1/health")
    assert httpx.get(health["url"]).json()["status"] == "ok"


def test_root_sends_browsers_to_the_console(srv: ServerProcess) -> None:
    r = httpx.get(base(srv) + "/", headers={"Accept": "text/html,application/xhtml+xml,*/*"})
    assert r.status_code == 307 and r.headers["location"] == "/console"
    page = httpx.get(base(srv) + "/", headers={"Accept": "text/html"}, follow_redirects=True)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


# -- $SYS for every authenticated user -----------------------------------------------------


def _add_user(data_dir: str, name: str, password: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    cmd = [sys.executable, "-m", "pushwire", "user", "add", name, "--password-stdin"]
    done = subprocess.run(
        [*cmd, "--data-dir", data_dir],
        input=f"{password}\n".encode(),
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _connect_when_user_known(srv: ServerProcess, auth: tuple[str, str]) -> PahoClient:
    """Connect as a user the CLI just added, once the running server knows it. It picks new
    users up on its next store poll (about a second, later under load) and from then on
    refuses anonymous clients: wait for that, as an anonymous refusal costs no failed-login
    budget. (Retrying the user's own login did: ten failures while the server did not know
    the user yet left one attempt per 6 s.)"""
    deadline = time.monotonic() + 30
    while True:
        with raw.RawClient(srv.host, srv.mqtt_port) as anonymous:
            if anonymous.mqtt_connect("").return_code == 5:  # not authorized
                break
        assert time.monotonic() < deadline, "the server never loaded the new user"
        time.sleep(0.05)
    client = PahoClient(srv.host, srv.mqtt_port, auth=auth)
    client.connect()
    return client


@pytest.mark.parametrize("sys_readable", [True, False])
def test_sys_readable_opens_sys_to_authenticated_users(
    http_server: StartServer, sys_readable: bool
) -> None:
    srv = http_server(memory=False, sys_readable=sys_readable)
    _add_user(str(srv.data_dir), "bob", "bob-secret")
    bob = _connect_when_user_known(srv, ("bob", "bob-secret"))
    try:
        codes = bob.subscribe("$SYS/#", 0)
        if sys_readable:
            assert codes == [0]
        else:
            assert codes == [0x80]
        # other topics are unchanged: the positive marker that the pipe is open
        assert bob.subscribe("plain/#", 0) == [0]
    finally:
        bob.close()
