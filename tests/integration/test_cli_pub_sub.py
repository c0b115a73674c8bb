"""`pushwire pub` and `pushwire sub`: the real command (the console script installed next to
this Python) against a real server, across every transport, with the documented exit codes
(docs/cli.md): 0 done, 1 connection error, 2 usage, 3 refused, 4 -W timeout."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from helpers import admin
from helpers.certs import CertFiles, make_certs
from helpers.server import ServerProcess

from .http_util import StartServer, http_server

__all__ = ["http_server"]  # the fixture

pytestmark = pytest.mark.pushwire_only("pushwire's own command line")

PUSHWIRE = Path(sys.executable).parent / "pushwire"
RUN_TIMEOUT = 30


def _env() -> dict[str, str]:
    # PUSHWIRE_URL / PUSHWIRE_TOKEN from the developer's shell must not leak into the tests
    return {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}


def pub(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(PUSHWIRE), "pub", *args],
        input=stdin,
        capture_output=True,
        timeout=RUN_TIMEOUT,
        env=_env(),
        check=False,
    )


class Sub:
    """A running `pushwire sub -d ...`; stderr is read as it comes (to see it go live)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(PUSHWIRE), "sub", "-d", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        self.err_lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stderr is not None
        self.pump = threading.Thread(target=self._pump, args=(self.proc.stderr,), daemon=True)
        self.pump.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.err_lines.put(line.decode(errors="replace"))

    def wait_stderr(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.err_lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.err_lines.empty():
                    break
                continue
            self.stderr.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} on stderr; got {self.stderr!r}")

    def wait_live(self, filters: int = 1) -> None:
        for _ in range(filters):
            self.wait_stderr("subscribed to")

    def finish(self, timeout: float = RUN_TIMEOUT) -> tuple[int, bytes, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # until the command exits (-C, -W, an error)
        self.proc.wait(timeout)
        self.pump.join(timeout)  # every stderr line is in the queue
        while not self.err_lines.empty():
            self.stderr.append(self.err_lines.get())
        return self.proc.returncode, out, "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def subs() -> Iterator[Callable[..., Sub]]:
    started: list[Sub] = []

    def factory(*args: str) -> Sub:
        sub = Sub(*args)
        started.append(sub)
        return sub

    yield factory
    for sub in started:
        sub.kill()


@pytest.fixture
def srv(http_server: StartServer) -> ServerProcess:
    return http_server(log_max_messages=3)


def urls(srv: ServerProcess) -> dict[str, str]:
    h = f"127.0.0.1:{srv.http_port}"
    return {
        "mqtt": f"mqtt://127.0.0.1:{srv.mqtt_port}",
        "mqtt-ws": f"ws://{h}/mqtt",
        "json-ws": f"ws://{h}/v1/ws",
        "sse": f"http://{h}",
        "longpoll": f"http://{h}",
        "poll": f"http://{h}",
        "http": f"http://{h}",
    }


def test_pushwire_command_is_installed() -> None:
    assert PUSHWIRE.is_file() and os.access(PUSHWIRE, os.X_OK), PUSHWIRE
    out = subprocess.run([str(PUSHWIRE), "sub", "--help"], capture_output=True, timeout=30)
    assert out.returncode == 0 and b"-t FILTER" in out.stdout


@pytest.mark.parametrize(
    ("pub_kind", "sub_kind"),
    [
        ("mqtt", "sse"),
        ("http", "mqtt"),
        ("json-ws", "mqtt-ws"),
        ("mqtt-ws", "json-ws"),
        ("mqtt", "longpoll"),
        ("http", "poll"),
    ],
)
def test_sub_receives_what_pub_sends_across_transports(
    srv: ServerProcess, subs: Callable[..., Sub], pub_kind: str, sub_kind: str
) -> None:
    u = urls(srv)
    mode = [f"--{sub_kind}"] if sub_kind in ("sse", "longpoll", "poll") else []
    extra = ["--interval", "0.1"] if sub_kind == "poll" else []
    sub = subs("-L", u[sub_kind], *mode, *extra, "-t", "x/#", "-C", "2", "-v", "-W", "20")
    sub.wait_live()
    first = pub("-L", u[pub_kind], "-t", "x/one", "-m", f"from {pub_kind}", "-q", "1")
    assert first.returncode == 0, first.stderr
    second = pub("-L", u[pub_kind], "-t", "x/two", "-m", "second")
    assert second.returncode == 0, second.stderr
    code, out, err = sub.finish()
    assert code == 0, err
    assert out.decode().splitlines() == [f"x/one from {pub_kind}", "x/two second"]


def test_pub_lines_from_stdin_and_sub_json_and_format(
    srv: ServerProcess, subs: Callable[..., Sub]
) -> None:
    u = urls(srv)
    done = pub(
        "-L", u["mqtt"], "-t", "f/a", "-l", "--content-type", "text/x", "--priority", "high",
        stdin=b"one\ntwo\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    as_json = subs("-L", u["http"], "-t", "f/#", "--since", "all", "-C", "2", "--json")
    code, out, err = as_json.finish()
    assert code == 0, err
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [m["payload"] for m in lines] == ["one", "two"]
    assert lines[0]["content_type"] == "text/x" and lines[0]["priority"] == 4
    assert lines[1]["id"] == lines[0]["id"] + 1
    fmt = subs("-L", u["json-ws"], "-t", "f/#", "--since", "all", "-C", "1", "-F", "%i|%t|%p|%c|%q")
    code, out, err = fmt.finish()
    assert code == 0, err
    assert out.decode() == f"{lines[0]['id']}|f/a|one|text/x|0\n"


def test_gap_is_printed_on_stderr(srv: ServerProcess, subs: Callable[..., Sub]) -> None:
    u = urls(srv)
    # the server keeps 3 messages per topic: messages 1 and 2 are evicted. Published over
    # HTTP by the test itself (pub is tested above): 5 more Python starts took this test to
    # 38 s of its 60 s timeout under load
    with httpx.Client(base_url=u["http"], timeout=RUN_TIMEOUT) as http:
        for i in range(1, 6):
            assert http.post("/v1/publish/g/t", content=f"m{i}").status_code == 201
    for kind in ("sse", "json-ws", "longpoll"):
        mode = [f"--{kind}"] if kind != "json-ws" else []
        sub = subs("-L", u[kind], *mode, "-t", "g/t", "--since", "1", "-C", "3")
        code, out, err = sub.finish()
        assert code == 0, (kind, err)
        assert out.decode().splitlines() == ["m3", "m4", "m5"], kind
        gap_lines = [line for line in err.splitlines() if "gap" in line]
        assert len(gap_lines) == 1, (kind, err)


def test_timeout_exits_4(srv: ServerProcess, subs: Callable[..., Sub]) -> None:
    u = urls(srv)
    for kind in ("mqtt", "sse"):
        sub = subs("-L", u[kind], "-t", "quiet/#", "-C", "1", "-W", "1")
        sub.wait_live()  # the positive marker: it was subscribed, nothing came
        code, out, err = sub.finish()
        assert code == 4, (kind, err)
        assert out == b"" and "timed out" in err


def test_usage_errors_exit_2(srv: ServerProcess) -> None:
    u = urls(srv)
    cases = [
        ["sub", "-L", u["mqtt"], "-t", "a", "--since", "all"],  # MQTT has no log
        ["sub", "-L", u["http"], "-t", "a", "-F", "%z"],
        ["sub", "-L", "gopher://x", "-t", "a"],
        ["pub", "-L", u["mqtt"], "-m", "no topic"],
    ]
    for args in cases:
        done = subprocess.run(
            [str(PUSHWIRE), *args], capture_output=True, timeout=RUN_TIMEOUT, env=_env()
        )
        assert done.returncode == 2, (args, done.stderr)


def test_unreachable_server_exits_1(srv: ServerProcess) -> None:
    closed = f"127.0.0.1:{srv.http_port}"
    srv.stop()
    assert pub("-L", f"http://{closed}", "-t", "a", "-m", "x").returncode == 1
    sub = Sub("-L", f"http://{closed}", "-t", "a", "-W", "10")
    code, _, err = sub.finish()
    assert code == 1, err


def _add_user(srv: ServerProcess, name: str, password: str) -> None:
    # in-process (the admin CLI's own parser and handlers; test_admin_cli runs it as a
    # process): each Python start here took 3-4 s under load, in tests near their timeout
    admin.cli(srv.data_dir, "user", "add", name, "--password-stdin", stdin=f"{password}\n")


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def _until_user_known(srv: ServerProcess) -> None:
    """Until the running server has loaded the user just added (its store poll: about a
    second, later under load): from then on it refuses anonymous publishers. Waiting on that
    costs no login: retrying the user's own `pub` was a Python start (3-4 s under load) and a
    failed login per try while the server did not know the user yet."""
    with httpx.Client(base_url=f"http://127.0.0.1:{srv.http_port}", timeout=RUN_TIMEOUT) as http:
        _until(lambda: http.post("/v1/publish/k/probe", content="x").status_code == 401, 30)


@pytest.mark.parametrize("kind", ["mqtt", "http", "json-ws", "mqtt-ws"])
def test_bad_credentials_exit_3(http_server: StartServer, kind: str) -> None:
    srv = http_server(memory=False)
    _add_user(srv, "alice", "right")
    url = urls(srv)[kind]
    _until_user_known(srv)
    # the right credentials work (the positive marker: the refusals below are about
    # credentials)
    right = pub("-L", url, "-u", "alice", "-P", "right", "-t", "k", "-m", "1")
    assert right.returncode == 0, right.stderr
    bad = pub("-L", url, "-u", "alice", "-P", "wrong", "-t", "k/x", "-m", "x")
    assert bad.returncode == 3, bad.stderr
    sub = Sub("-L", url, "-u", "alice", "-P", "wrong", "-t", "k/#", "-W", "10")
    code, _, err = sub.finish()
    assert code == 3, err
    # no credentials at all: anonymous clients are not admitted once a user exists
    anon = pub("-L", url, "-t", "k/x", "-m", "x")
    assert anon.returncode == 3, anon.stderr


def test_topic_refused_by_the_acl_exits_3(http_server: StartServer) -> None:
    srv = http_server(memory=False)
    _add_user(srv, "alice", "right")
    u = urls(srv)
    # a topic the ACL refuses is exit 3: alice may use k/# only, once this rule applies
    admin.cli(srv.data_dir, "acl", "add", "--user", "alice", "--allow", "readwrite", "k/#")
    alice = ["-u", "alice", "-P", "right"]
    _until_user_known(srv)
    # and the rule: alice's publish outside k/# refused (HTTP from the test itself, a `pub`
    # process per try took 3-4 s under load)
    with httpx.Client(base_url=u["http"], timeout=RUN_TIMEOUT, auth=("alice", "right")) as http:
        _until(lambda: http.post("/v1/publish/other/x", content="x").status_code == 403)
    assert pub("-L", u["http"], *alice, "-t", "other/x", "-m", "x").returncode == 3
    for kind in ("mqtt", "http", "json-ws"):
        denied = Sub("-L", u[kind], *alice, "-t", "other/#", "-W", "10")
        code, _, err = denied.finish()
        assert code == 3, (kind, err)
    assert pub("-L", u["mqtt"], *alice, "-t", "k/z", "-m", "still allowed").returncode == 0


def test_tls_schemes(http_server: StartServer, subs: Callable[..., Sub], tmp_path: Path) -> None:
    certs: CertFiles = make_certs(tmp_path / "certs")
    srv = http_server(
        tls_cert=str(certs.server_cert),
        tls_key=str(certs.server_key),
        mqtt_tls_port=0,
        http_tls=True,
    )
    assert srv.mqtts_port is not None
    ca = ["--cafile", str(certs.ca)]
    h = f"127.0.0.1:{srv.http_port}"
    sub_https = subs("-L", f"https://{h}", *ca, "-t", "s/#", "-C", "2", "-v")
    sub_wss = subs("-L", f"wss://{h}/v1/ws", *ca, "-t", "s/#", "-C", "2", "-v")
    sub_https.wait_live()
    sub_wss.wait_live()
    one = pub("-L", f"mqtts://127.0.0.1:{srv.mqtts_port}", *ca, "-t", "s/1", "-m", "a")
    assert one.returncode == 0, one.stderr
    two = pub("-L", f"wss://{h}/mqtt", *ca, "-t", "s/2", "-m", "b")
    assert two.returncode == 0, two.stderr
    for sub in (sub_https, sub_wss):
        code, out, err = sub.finish()
        assert code == 0, err
        assert out.decode().splitlines() == ["s/1 a", "s/2 b"]
    # without the CA the server's certificate is not trusted: a connection error
    untrusted = pub("-L", f"https://{h}", "-t", "s/3", "-m", "c")
    assert untrusted.returncode == 1, untrusted.stderr
