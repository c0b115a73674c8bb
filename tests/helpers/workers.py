"""`pushwire serve --workers N` as a real OS process tree, for tests of the supervisor.

``SupervisorProcess`` starts the supervisor with ports 0 (it resolves them to one port per
listener that all workers share), reads its log for the ports and for each worker's PID and
node_id, and can SIGTERM or kill -9 what it started. Teardown kills, by PID, the supervisor
and every worker PID it has seen, should anything outlive the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

_PORTS_LINE = re.compile(r"supervisor pid \d+: .* ports (.*)$", re.MULTILINE)
_WORKER_LINE = re.compile(r"worker (\d+) started: pid (\d+), node_id (\S+)")
_HTTP_LINE = re.compile(r"pushwire\[(\S+)\]: http listening on [0-9.]+:(\d+)")

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy, or fail saying `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class SupervisorProcess:
    host = "127.0.0.1"

    def __init__(
        self, data_dir: Path, workers: int, *extra_args: str, ca_file: Path | None = None
    ) -> None:
        self.ca_file = ca_file  # set: HTTP is HTTPS, verified against this CA
        self.data_dir = data_dir
        self.workers = workers
        self.extra_args = [str(a) for a in extra_args]
        self.log_path = data_dir / "supervisor.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.seen_worker_pids: set[int] = set()

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pushwire",
            "serve",
            "--workers",
            str(self.workers),
            "--bind",
            self.host,
            "--mqtt-port",
            "0",
            "--http-port",
            "0",
            "--data-dir",
            str(self.data_dir),
            "--sys-interval",
            "0",
            "--connection-rate-per-ip",
            "0",
            *self.extra_args,
        ]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> SupervisorProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

        def ports_line() -> re.Match[str] | None:
            self._exited_check()
            return _PORTS_LINE.search(self.output())

        def all_listening() -> bool:
            self._exited_check()
            return len(self.listening_node_ids()) >= self.workers

        match = wait_for(ports_line, READY_TIMEOUT, "the supervisor's ports line")
        for part in match.group(1).split(","):
            name, value = part.split()
            self.ports[name] = int(value)
        # every worker's HTTP listener is up (the last listener a worker opens)
        wait_for(all_listening, READY_TIMEOUT, f"{self.workers} workers listening")
        return self

    def _exited_check(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"supervisor exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
            )

    def listening_node_ids(self) -> set[str]:
        return {m.group(1) for m in _HTTP_LINE.finditer(self.output())}

    def worker_pids(self) -> dict[int, list[int]]:
        """Worker slot -> PIDs it has had, in start order."""
        pids: dict[int, list[int]] = {}
        for m in _WORKER_LINE.finditer(self.output()):
            pid = int(m.group(2))
            pids.setdefault(int(m.group(1)), []).append(pid)
            self.seen_worker_pids.add(pid)
        return pids

    def node_ids(self) -> dict[int, str]:
        return {int(m.group(1)): m.group(3) for m in _WORKER_LINE.finditer(self.output())}

    @property
    def http_url(self) -> str:
        scheme = "https" if self.ca_file is not None else "http"
        return f"{scheme}://{self.host}:{self.ports['http_port']}"

    def health_node_id(self) -> str:
        # a new connection each time: the kernel picks the worker per connection
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(self.ca_file))
            if self.ca_file is not None
            else True
        )
        with httpx.Client(timeout=5, verify=verify) as client:
            reply = client.get(self.http_url + "/v1/health")
            reply.raise_for_status()
            return str(reply.json()["node_id"])

    def wait_node_ids(self, expected: set[str], timeout: float = READY_TIMEOUT) -> set[str]:
        seen: set[str] = set()

        def all_seen() -> bool:
            seen.add(self.health_node_id())
            return expected <= seen

        wait_for(all_seen, timeout, f"health answers from {sorted(expected)} (saw {seen})")
        return seen

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def cleanup(self) -> None:
        """Kill, by PID, the supervisor and every worker it reported, if still running."""
        self.worker_pids()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        for pid in self.seen_worker_pids:
            if is_worker(pid):  # not a stranger that got a reused PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def is_worker(pid: int) -> bool:
    try:
        return b"pushwire.workers" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): read its state
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return False


@contextlib.contextmanager
def running_supervisor(
    data_dir: Path, workers: int, *extra_args: str, ca_file: Path | None = None
) -> Iterator[SupervisorProcess]:
    sup = SupervisorProcess(data_dir, workers, *extra_args, ca_file=ca_file)
    try:
        yield sup.start()
    finally:
        sup.cleanup()
