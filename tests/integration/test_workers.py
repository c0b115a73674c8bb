"""`pushwire serve --workers N`: the supervisor, shared ports (SO_REUSEPORT), graceful
stop, restarts, and the start-up errors. The Redis engine does not exist yet, so the
workers run on the test-only `--workers-allow-unshared-engine` (each worker its own
memory state); what is tested here is the process tree and the shared listeners."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from helpers.certs import make_certs
from helpers.workers import pid_alive, running_supervisor, wait_for

UNSHARED = ("--engine", "memory", "--workers-allow-unshared-engine")


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "pushwire", "serve", "--mqtt-port", "0"),
            *("--http-port", "0", "--data-dir", str(tmp_path / "data"), *args),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize("engine", [(), ("--memory",), ("--engine", "sqlite")])
def test_workers_without_redis_is_a_startup_error(tmp_path: Path, engine: tuple[str, ...]) -> None:
    done = _serve(tmp_path, "--workers", "2", *engine)
    assert done.returncode == 2, done.stderr
    assert "--workers 2 needs --engine redis" in done.stderr
    assert "Traceback" not in done.stderr


def test_memory_contradicting_engine_is_a_startup_error(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--memory", "--engine", "sqlite")
    assert done.returncode == 2
    assert "--memory contradicts --engine sqlite" in done.stderr


def _mqtt_connects(port: int) -> bool:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    try:
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        wait_for(client.is_connected, 10, "CONNACK")
        return True
    finally:
        client.disconnect()
        client.loop_stop()


def test_two_workers_share_the_ports_and_stop_on_sigterm(tmp_path: Path) -> None:
    with running_supervisor(tmp_path / "data", 2, *UNSHARED) as sup:
        node_ids = sup.node_ids()
        assert len(set(node_ids.values())) == 2  # distinct node ids per worker
        # both workers answer on the one HTTP port (health says which one did)
        assert sup.wait_node_ids(set(node_ids.values())) == set(node_ids.values())
        # both logged the same MQTT port, and MQTT clients get in on it
        out = sup.output()
        for node_id in node_ids.values():
            assert f"[{node_id}]: mqtt listening on 127.0.0.1:{sup.ports['mqtt_port']}" in out
        for _ in range(4):
            assert _mqtt_connects(sup.ports["mqtt_port"])
        pids = [p[-1] for p in sup.worker_pids().values()]
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
        assert not any(pid_alive(pid) for pid in pids)
        out = sup.output()
        assert out.count(": stopped") == 2  # each worker's graceful stop ran
        assert "died" not in out


def test_a_killed_worker_is_restarted_with_its_node_id(tmp_path: Path) -> None:
    with running_supervisor(
        tmp_path / "data", 2, *UNSHARED, "--workers-restart-backoff", "0.05"
    ) as sup:
        node_ids = sup.node_ids()
        first = sup.worker_pids()[1][0]
        os.kill(first, signal.SIGKILL)
        second = wait_for(
            lambda: [*sup.worker_pids().get(1, []), 0, 0][1], 20, "worker 1 restarted"
        )
        assert second != first
        assert f"worker 1 (pid {first}) died with status -9" in sup.output()
        # the new worker 1 serves on the shared port under the same node id
        wait_for(
            lambda: sup.output().count(f"pushwire[{node_ids[1]}]: http listening") == 2,
            20,
            "restarted worker listening",
        )
        sup.wait_node_ids({node_ids[1], node_ids[2]})
        sup.signal(signal.SIGINT)
        assert sup.wait_exit() == 0


def test_supervisor_gives_up_when_workers_keep_dying(tmp_path: Path) -> None:
    with running_supervisor(tmp_path / "data", 2, *UNSHARED, "--workers-max-restarts", "0") as sup:
        pids = sup.worker_pids()
        os.kill(pids[2][0], signal.SIGKILL)
        assert sup.wait_exit() == 1
        assert "giving up" in sup.output()
        assert not pid_alive(pids[1][0])  # the healthy worker was stopped too


def test_workers_share_the_tls_ports(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    tls = (
        *("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)),
        *("--mqtt-tls-port", "0", "--http-tls"),
    )
    with running_supervisor(tmp_path / "data", 2, *UNSHARED, *tls, ca_file=certs.ca) as sup:
        node_ids = set(sup.node_ids().values())
        assert sup.wait_node_ids(node_ids) == node_ids  # over HTTPS, on one port
        port = sup.ports["mqtt_tls_port"]
        out = sup.output()
        for node_id in node_ids:
            assert f"[{node_id}]: mqtts listening on 127.0.0.1:{port}" in out
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
