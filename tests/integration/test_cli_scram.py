"""`pushwire pub --scram` / `pushwire sub --scram`: the real command logs in with SCRAM-SHA-256
(MQTT 5 AUTH packets, which paho cannot send) against a real server whose user has a
password set, and then publishes and subscribes as usual (docs/cli.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.certs import CertFiles, make_certs
from helpers.server import ServerProcess

from .http_util import StartServer, http_server
from .test_cli_pub_sub import Sub, _add_user, _until, _until_user_known, pub, subs, urls

__all__ = ["http_server", "subs"]  # fixtures

pytestmark = pytest.mark.pushwire_only("pushwire's own command line")


@pytest.fixture
def srv(http_server: StartServer) -> ServerProcess:
    srv = http_server(memory=False)
    _add_user(srv, "alice", "wonderland")
    return srv


def scram_pub(srv: ServerProcess, password: str, *args: str) -> int:
    url = urls(srv)["mqtt"]
    done = pub("-L", url, "--scram", "-u", "alice", "-P", password, *args)
    return done.returncode


def test_pub_and_sub_log_in_with_scram_and_exchange_messages(
    srv: ServerProcess, subs: Callable[..., Sub]
) -> None:
    # the running server picks the new user up on its store poll (no login spent waiting;
    # a `pub` per try was a Python start, 3-4 s under load, and a failed login)
    _until_user_known(srv)
    url = urls(srv)["mqtt"]
    alice = ["--scram", "-u", "alice", "-P", "wonderland"]
    sub = subs("-L", url, *alice, "-t", "s/#", "-q", "2", "-C", "3", "--json", "-W", "20")
    sub.wait_live()
    assert scram_pub(srv, "wonderland", "-t", "s/one", "-m", "qos0") == 0
    assert scram_pub(srv, "wonderland", "-t", "s/two", "-m", "qos1", "-q", "1") == 0
    two = ["-t", "s/three", "-m", "qos2", "-q", "2", "--content-type", "text/x"]
    assert scram_pub(srv, "wonderland", *two, "--priority", "high") == 0
    code, out, err = sub.finish()
    assert code == 0, err
    got = [json.loads(line) for line in out.decode().splitlines()]
    assert [(m["topic"], m["payload"], m["qos"]) for m in got] == [
        ("s/one", "qos0", 0),
        ("s/two", "qos1", 1),
        ("s/three", "qos2", 2),
    ]
    assert got[2]["content_type"] == "text/x" and got[2]["priority"] == 4


def test_wrong_password_with_scram_exits_3(srv: ServerProcess) -> None:
    _until_user_known(srv)
    assert scram_pub(srv, "wonderland", "-t", "s/x", "-m", "x") == 0  # marker
    assert scram_pub(srv, "not-it", "-t", "s/x", "-m", "x") == 3
    url = urls(srv)["mqtt"]
    sub = Sub("-L", url, "--scram", "-u", "alice", "-P", "not-it", "-t", "s/#", "-W", "10")
    code, _, err = sub.finish()
    assert code == 3, err
    assert "0x87" in err  # MQTT 5 Not authorized: SCRAM's refusal of a wrong proof


@pytest.mark.parametrize(
    "args",
    [
        ["-u", "alice", "-P", "p", "-V", "311"],  # AUTH packets are MQTT 5 only
        ["--token", "pw_x"],  # SCRAM needs a user and a password
        ["-u", "alice"],
    ],
)
def test_scram_usage_errors_exit_2(srv: ServerProcess, args: list[str]) -> None:
    done = pub("-L", urls(srv)["mqtt"], "--scram", *args, "-t", "t", "-m", "")
    assert done.returncode == 2, done.stderr
    assert b"--scram needs" in done.stderr
    http = pub("-L", urls(srv)["http"], "--scram", "-u", "alice", "-P", "p", "-t", "t", "-m", "")
    assert http.returncode == 2, http.stderr
    assert b"--scram needs" in http.stderr


def test_scram_over_tls(http_server: StartServer, subs: Callable[..., Sub], tmp_path: Path) -> None:
    certs: CertFiles = make_certs(tmp_path / "certs")
    srv = http_server(
        memory=False,
        tls_cert=str(certs.server_cert),
        tls_key=str(certs.server_key),
        mqtt_tls_port=0,
    )
    _add_user(srv, "alice", "wonderland")
    url = f"mqtts://127.0.0.1:{srv.mqtts_port}"
    alice = ["-L", url, "--cafile", str(certs.ca), "--scram", "-u", "alice", "-P", "wonderland"]
    _until(lambda: pub(*alice, "-t", "tls/warmup", "-m", "x").returncode == 0)
    sub = subs(*alice, "-t", "tls/#", "-C", "1", "-v", "-W", "20")
    sub.wait_live()
    assert pub(*alice, "-t", "tls/a", "-m", "sealed", "-q", "1").returncode == 0
    code, out, err = sub.finish()
    assert code == 0, err
    assert out.decode().splitlines() == ["tls/a sealed"]
    # without the CA the server is not trusted: a connection error, before any SCRAM
    untrusted = pub("-L", url, "--scram", "-u", "alice", "-P", "wonderland", "-t", "t", "-m", "")
    assert untrusted.returncode == 1, untrusted.stderr
