"""A private redis-server for a test: a free 127.0.0.1 port, its own data dir, real AOF.

``RedisServer`` starts Debian's ``redis-server`` (installed by ``make deps-test``) with
``appendonly yes`` and ``appendfsync always`` (every acknowledged write is on disk, as
docs/cluster.md recommends) and no RDB snapshots, waits until it answers PING, and can
``stop`` (SIGTERM), ``kill`` (SIGKILL) and ``start`` it again on the same port and data
dir. It only ever signals the process it started, by PID; ``redis_server`` (the pytest
fixture) stops it when the test ends, failed or not, and an atexit hook kills leftovers.

    def test_x(redis_server: RedisServer) -> None:
        client = redis.Redis.from_url(redis_server.url)
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from helpers.server import free_port

REDIS_SERVER = os.environ.get("PUSHWIRE_TEST_REDIS_SERVER", "redis-server")
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# redis-server's own line once the data set is loaded (AOF replayed) and it accepts clients
_READY_MARK = b"Ready to accept connections"
# a free port found by binding 0 may be taken before redis binds it: try again this often
_PORT_ATTEMPTS = 5

_LIVE: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _kill_leftovers() -> None:
    """Last resort if the test process exits without fixture teardown: kill by PID."""
    for pid, proc in list(_LIVE.items()):
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


class RedisStartError(RuntimeError):
    pass


def redis_server_binary() -> str:
    path = shutil.which(REDIS_SERVER)
    if path is None:
        raise RedisStartError(
            f"{REDIS_SERVER} not found: `make deps-test` installs Debian's redis-server"
        )
    return path


class RedisServer:
    """One redis-server process; ``start`` may be called again after ``stop``/``kill``."""

    host = "127.0.0.1"

    def __init__(self, data_dir: Path, *, appendfsync: str = "always") -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.appendfsync = appendfsync
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._drain: _Drain | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "redis-server not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _config(self) -> Path:
        path = self.data_dir / "redis.conf"
        path.write_text(
            "\n".join(
                [
                    f"bind {self.host}",
                    f"port {self.port}",
                    f"dir {self.data_dir}",
                    "daemonize no",
                    "protected-mode yes",
                    'logfile ""',  # stdout: read below for the ready line
                    "appendonly yes",
                    f"appendfsync {self.appendfsync}",
                    'save ""',  # no RDB snapshots: what survives is what the AOF holds
                    "databases 4",
                ]
            )
            + "\n"
        )
        return path

    def start(self) -> RedisServer:
        """Start on the same port as before (a new free port the first time)."""
        assert not self.running, "redis-server already running"
        binary = redis_server_binary()
        attempts = 1 if self.port else _PORT_ATTEMPTS
        failure = ""
        for _ in range(attempts):
            if not self.starts or not self.port:
                self.port = free_port(self.host)
            failure = self._launch(binary)
            if not failure:
                self.starts += 1
                return self
        raise RedisStartError(f"redis-server did not start on port {self.port}: {failure}")

    def _launch(self, binary: str) -> str:
        """Start the process and wait for its ready line; '' on success, else what it said."""
        proc = subprocess.Popen(
            [binary, str(self._config())],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        _LIVE[proc.pid] = proc
        self.proc = proc
        assert proc.stdout is not None
        output = bytearray()
        deadline = time.monotonic() + READY_TIMEOUT
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while _READY_MARK not in output:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self._end(signal.SIGKILL)
                    return "no ready line in time: " + output.decode(errors="replace")[-500:]
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:  # it exited (port taken, bad config)
                    self._end(signal.SIGKILL)
                    return output.decode(errors="replace")[-500:]
                output += chunk
        # keep draining its log so the pipe never fills and blocks it
        self._drain = _Drain(proc)
        with redis.Redis(host=self.host, port=self.port, socket_timeout=READY_TIMEOUT) as c:
            if not c.ping():
                self._end(signal.SIGKILL)
                return "no PONG"
        return ""

    def _end(self, sig: signal.Signals) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)  # only the process this helper started
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT)
        _LIVE.pop(proc.pid, None)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def stop(self) -> int | None:
        """Graceful stop (SIGTERM: redis flushes and fsyncs the AOF)."""
        return self._end(signal.SIGTERM)

    def kill(self) -> int | None:
        """kill -9: only what reached the AOF survives."""
        return self._end(signal.SIGKILL)

    def restart(self, *, hard: bool = False) -> RedisServer:
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()


class _Drain:
    """Read a child's stdout to its end on a daemon thread (its log is not needed)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        import threading

        self.thread = threading.Thread(target=self._run, args=(proc,), daemon=True)
        self.thread.start()

    @staticmethod
    def _run(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            # stdout=PIPE with the default buffering: read1 returns what is there
            assert isinstance(proc.stdout, io.BufferedReader)
            while proc.stdout.read1(65536):
                pass


@contextlib.contextmanager
def running_redis(data_dir: Path, *, appendfsync: str = "always") -> Iterator[RedisServer]:
    server = RedisServer(data_dir, appendfsync=appendfsync)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for this test, stopped (by PID) when the test ends."""
    with running_redis(tmp_path / "redis") as server:
        yield server
