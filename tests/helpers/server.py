"""Run the broker under test as a real OS process.

By default that is ``python -m pushwire serve``; with ``PUSHWIRE_TEST_BROKER=mosquitto`` it is
Debian's ``/usr/sbin/mosquitto`` configured to match the same options, so the integration
suite can be checked against a reference broker.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BROKER_ENV = "PUSHWIRE_TEST_BROKER"
MOSQUITTO = os.environ.get("PUSHWIRE_TEST_MOSQUITTO", "/usr/sbin/mosquitto")
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

_OPTION_NAMES = {
    "memory",
    "sys_interval",
    "max_queued_messages",
    "max_inflight",
    "max_packet_size",
    "max_connections",
    "durability",
    "admin",
    "extra_args",
}

_MQTT_LINE = re.compile(r"mqtt listening on ([0-9.]+):(\d+)")
_HTTP_LINE = re.compile(r"http listening on ([0-9.]+):(\d+)")
_MQTTS_LINE = re.compile(r"mqtts listening on ([0-9.]+):(\d+)")
_MOSQUITTO_READY = re.compile(r"mosquitto version \S+ running")


def broker_kind() -> str:
    kind = os.environ.get(BROKER_ENV, "pushwire").strip().lower() or "pushwire"
    if kind not in ("pushwire", "mosquitto"):
        raise RuntimeError(f"{BROKER_ENV} must be 'pushwire' or 'mosquitto', not {kind!r}")
    return kind


def raise_nofile_limit() -> None:
    """Lift the soft RLIMIT_NOFILE to the hard limit (the server child inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# Credentials for tests that read $SYS: pushwire lets only the admin role read it (the
# fixture creates this user when started with admin=SYS_ADMIN); mosquitto ignores them.
SYS_ADMIN = ("sys-admin", "sys-admin-secret")


class ServerStartError(RuntimeError):
    pass


_LIVE: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _kill_leftovers() -> None:
    """Last resort if the test process exits without fixture teardown: kill by PID."""
    for pid, proc in list(_LIVE.items()):
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


class ServerProcess:
    """One broker process. ``start`` may be called again after ``stop``/``kill`` (same data dir)."""

    host = "127.0.0.1"

    def __init__(self, data_dir: Path, log_dir: Path, *, kind: str | None = None, **options: Any):
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown server options: {sorted(unknown)}")
        self.kind = kind or broker_kind()
        self.options = options
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.mqtt_port: int = 0
        self.http_port: int | None = None
        self.mqtts_port: int | None = None
        self.starts = 0
        self.log_path: Path | None = None
        self._log_file: Any = None

    # -- introspection ---------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    @property
    def is_mosquitto(self) -> bool:
        return self.kind == "mosquitto"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def __repr__(self) -> str:
        return (
            f"ServerProcess(kind={self.kind}, pid={self.proc.pid if self.proc else None}, "
            f"mqtt_port={self.mqtt_port}, http_port={self.http_port}, data_dir={self.data_dir})"
        )

    # -- command lines ---------------------------------------------------------------------------
    def _pushwire_command(self) -> list[str]:
        o = self.options
        cmd = [
            sys.executable,
            "-m",
            "pushwire",
            "serve",
            "--bind",
            self.host,
            "--mqtt-port",
            "0",
            "--http-port",
            "0",
            "--data-dir",
            str(self.data_dir),
        ]
        if o.get("memory"):
            cmd.append("--memory")
        for key, flag in (
            ("sys_interval", "--sys-interval"),
            ("max_queued_messages", "--max-queued-messages"),
            ("max_inflight", "--max-inflight"),
            ("max_packet_size", "--max-packet-size"),
            ("max_connections", "--max-connections"),
        ):
            if o.get(key) is not None:
                cmd += [flag, str(o[key])]
        if o.get("durability") is not None:
            cmd.append("--durability" if o["durability"] else "--no-durability")
        # the suite opens connections in bursts from one address; tests of that limit set
        # their own value in extra_args (a later flag wins)
        cmd += ["--connection-rate-per-ip", "0"]
        # any other flag, as written on the command line (e.g. TLS files, auth settings)
        cmd += [str(arg) for arg in o.get("extra_args", ())]
        return cmd

    def _mosquitto_config(self, port: int) -> str:
        o = self.options
        lines = [
            "# generated by tests/helpers/server.py",
            "user root",  # stay root: no privilege drop that could not write data_dir
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {port} {self.host}",
            "allow_anonymous true",
        ]
        if o.get("max_connections") is not None:
            lines.append(f"max_connections {o['max_connections']}")  # per-listener option
        if o.get("memory"):
            lines.append("persistence false")
        else:
            lines += [
                "persistence true",
                f"persistence_location {self.data_dir}/",
                "persistence_file mosquitto.db",
            ]
            if o.get("durability", True):
                # Save after every change: as close to "durable once acknowledged" as
                # mosquitto gets (it still does not promise it).
                lines += ["autosave_interval 1", "autosave_on_changes true"]
            else:
                lines += ["autosave_interval 1800"]
        if o.get("sys_interval") is not None:
            lines.append(f"sys_interval {o['sys_interval']}")
        if o.get("max_queued_messages") is not None:
            lines.append(f"max_queued_messages {o['max_queued_messages']}")
        if o.get("max_inflight") is not None:
            lines.append(f"max_inflight_messages {o['max_inflight']}")
        if o.get("max_packet_size") is not None:
            lines.append(f"max_packet_size {o['max_packet_size']}")
        return "\n".join(lines) + "\n"

    # -- lifecycle -------------------------------------------------------------------------------
    def _provision_admin(self) -> None:
        """pushwire only: create the user of option ``admin=(name, password)`` with role admin
        (the role that may read $SYS) in the data dir, once, before the first start."""
        admin = self.options.get("admin")
        if admin is None or self.is_mosquitto or self.starts:
            return
        name, password = admin
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
        done = subprocess.run(
            [
                *(sys.executable, "-m", "pushwire", "user", "add", name, "--role", "admin"),
                *("--password-stdin", "--data-dir", str(self.data_dir)),
            ],
            input=f"{password}\n".encode(),
            capture_output=True,
            timeout=60,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise ServerStartError(
                f"pushwire user add failed ({done.returncode}): {done.stdout!r} {done.stderr!r}"
            )

    def start(self) -> ServerProcess:
        if self.alive():
            raise RuntimeError("server already running")
        self._provision_admin()
        attempts = 3 if self.is_mosquitto else 1
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
                return self
            except ServerStartError:
                # mosquitto: the free port we picked may have been taken meanwhile
                if attempt == attempts - 1:
                    raise
        return self

    def _spawn_and_wait(self) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"{self.kind}-{self.data_dir.name}-{self.starts}.log"
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in _reap
        # the server reads PUSHWIRE_* settings from the environment: only the command line counts
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
        env["PYTHONUNBUFFERED"] = "1"
        if self.is_mosquitto:
            port = free_port(self.host)
            conf = self.log_dir / f"mosquitto-{self.data_dir.name}-{self.starts}.conf"
            conf.write_text(self._mosquitto_config(port))
            cmd = [MOSQUITTO, "-c", str(conf)]
        else:
            port = 0
            cmd = self._pushwire_command()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # our signals only; Ctrl-C in pytest does not hit it twice
        )
        _LIVE[self.proc.pid] = self.proc
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            text = self.output()
            if self.is_mosquitto:
                if _MOSQUITTO_READY.search(text):
                    self.mqtt_port = port
                    self.http_port = None
                    return
            else:
                mqtt_m = _MQTT_LINE.search(text)
                http_m = _HTTP_LINE.search(text)
                tls_expected = "--tls-cert" in cmd
                mqtts_m = _MQTTS_LINE.search(text)
                if mqtt_m and http_m and (mqtts_m or not tls_expected):
                    self.mqtt_port = int(mqtt_m.group(2))
                    self.http_port = int(http_m.group(2))
                    self.mqtts_port = int(mqtts_m.group(2)) if mqtts_m else None
                    return
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._reap()
                raise ServerStartError(
                    f"{self.kind} exited with {rc} before it was ready: {cmd}\n"
                    f"--- output ---\n{self.output()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    f"{self.kind} not ready after {READY_TIMEOUT}s: {cmd}\n"
                    f"--- output ---\n{self.output()}"
                )
            time.sleep(0.02)

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            _LIVE.pop(self.proc.pid, None)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> int:
        """SIGTERM (or ``sig``), wait, and assert a clean (0) exit. Returns the exit code."""
        assert self.proc is not None, "server not started"
        how = f"after {signal.Signals(sig).name}"
        if self.proc.poll() is not None:
            how = "on its own, before it was asked to stop"
        else:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._reap()
                raise AssertionError(
                    f"{self.kind} (pid {self.proc.pid}) did not exit within {timeout}s of "
                    f"{signal.Signals(sig).name}; killed.\n--- output ---\n{self.output()}"
                ) from None
        self._reap()
        rc = self.proc.returncode
        assert rc == 0, (
            f"{self.kind} (pid {self.proc.pid}) exited with {rc} {how}\n"
            f"--- output ---\n{self.output()}"
        )
        return rc

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._reap()

    def restart(self) -> ServerProcess:
        """Graceful stop, then start on the same data dir (ports may change)."""
        if self.alive():
            self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Teardown: stop what is still running; kill it if it will not stop cleanly."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.stop()
        finally:
            self.kill()
