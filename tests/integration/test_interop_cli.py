"""Interoperability with the mosquitto command line clients (mosquitto_pub / mosquitto_sub)."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from helpers.clients import PahoClient
from helpers.server import ServerProcess

PahoFactory = Callable[..., PahoClient]

MOSQUITTO_PUB = shutil.which("mosquitto_pub")
MOSQUITTO_SUB = shutil.which("mosquitto_sub")
# mosquitto_sub writes to a pipe through stdio: line-buffer it so "Subscribed" is seen at once
STDBUF = shutil.which("stdbuf")
CLI_TIMEOUT = 10

pytestmark = pytest.mark.skipif(
    MOSQUITTO_PUB is None or MOSQUITTO_SUB is None,
    reason="mosquitto-clients not installed (make deps-test)",
)


def _common(server: ServerProcess, client_id: str) -> list[str]:
    return ["-h", server.host, "-p", str(server.mqtt_port), "-V", "mqttv311", "-i", client_id]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_to_paho(server: ServerProcess, paho_client: PahoFactory, qos: int) -> None:
    sub = paho_client(server, "paho-sub")
    assert sub.subscribe("cli/in", 2) == [2]
    assert MOSQUITTO_PUB is not None
    done = subprocess.run(
        [
            MOSQUITTO_PUB,
            *_common(server, "cli-pub"),
            "-t",
            "cli/in",
            "-m",
            "from cli",
            "-q",
            str(qos),
        ],
        capture_output=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    msg = sub.get()
    assert (msg.topic, msg.payload, msg.qos) == ("cli/in", b"from cli", qos)


class _Lines:
    """Read a subprocess' stdout lines on a thread, so every wait has a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = CLI_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"expected output not seen; got {self.seen}") from None
            if line is None:
                raise AssertionError(f"process exited; output {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line


def _mosquitto_sub(server: ServerProcess, topic: str, qos: int) -> subprocess.Popen[str]:
    assert MOSQUITTO_SUB is not None
    line_buffered = [STDBUF, "-oL"] if STDBUF else []
    return subprocess.Popen(
        [
            *line_buffered,
            MOSQUITTO_SUB,
            *_common(server, "cli-sub"),
            "-t",
            topic,
            "-q",
            str(qos),
            "-C",
            "1",
            "-W",
            str(CLI_TIMEOUT),
            "-d",
            "-F",
            "MSG %t|%q|%r|%p",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_to_mosquitto_sub(server: ServerProcess, paho_client: PahoFactory, qos: int) -> None:
    proc = _mosquitto_sub(server, "cli/out", 2)
    try:
        out = _Lines(proc)
        out.wait_for(lambda line: line.startswith("Subscribed"))
        paho_client(server, "paho-pub").publish("cli/out", b"from paho", qos=qos)
        line = out.wait_for(lambda line: line.startswith("MSG "))
        assert line == f"MSG cli/out|{qos}|0|from paho"
        assert proc.wait(CLI_TIMEOUT) == 0, out.seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_retained_from_paho_to_mosquitto_sub(
    server: ServerProcess, paho_client: PahoFactory
) -> None:
    paho_client(server, "paho-pub").publish("cli/ret", b"kept", qos=1, retain=True)
    proc = _mosquitto_sub(server, "cli/#", 1)
    try:
        out = _Lines(proc)
        line = out.wait_for(lambda line: line.startswith("MSG "))
        assert line == "MSG cli/ret|1|1|kept"
        assert proc.wait(CLI_TIMEOUT) == 0, out.seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
