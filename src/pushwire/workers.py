"""`pushwire serve --workers N`: a supervisor process and N server processes on shared ports.

Each worker is a fresh interpreter (`python -m pushwire.workers`) that runs the ordinary
server. Every worker binds its own listening sockets with SO_REUSEPORT, so the kernel
spreads new connections over the workers by a hash of the connection's addresses. A
single socket bound by the parent and inherited by all workers would make them compete
in accept(): with epoll the wake-ups go unevenly (often to the same busy process) and
every worker wakes for each connection. SO_REUSEPORT gives each worker its own accept
queue. See docs/cluster.md.

The supervisor:
- resolves port 0 to one concrete port per listener (so all workers share it) and holds
  those ports bound, not listening, for its whole life, so a restarted worker finds its
  port free of strangers (a bound socket that does not listen receives no connections);
- hands each worker its settings on stdin (not argv or the environment: they may hold
  secrets) with a distinct node_id, `<node_id>-w<i>`, kept across restarts of that slot;
- forwards SIGTERM/SIGINT to every worker for a graceful stop, and kills those that are
  still running after workers_stop_timeout;
- restarts a worker that dies unexpectedly after workers_restart_backoff (doubling), and
  gives up, stopping everything with exit status 1, when one worker died more than
  workers_max_restarts times within workers_restart_window. A worker that exits with
  status 2 (a set-up error such as an unavailable engine) is not restarted.

Workers run in their own session (terminal Ctrl-C reaches only the supervisor, which
forwards it once), and ask the kernel for SIGTERM when the supervisor dies, so a
kill -9 of the supervisor leaves no orphans.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from pushwire.config import Settings, generated_node_id
from pushwire.process import LOG_FORMAT, run_server

log = logging.getLogger("pushwire.supervisor")

# exit status of a worker whose set-up is wrong (e.g. the engine is not available):
# restarting it cannot help
SETUP_ERROR = 2
_PR_SET_PDEATHSIG = 1


@dataclass
class WorkerSlot:
    """One of the N places a worker runs in; a restarted worker takes the same slot."""

    index: int
    node_id: str
    process: asyncio.subprocess.Process | None = None
    restarts: collections.deque[float] = field(default_factory=collections.deque)


def listener_ports(settings: Settings) -> dict[str, int]:
    """The settings naming a port every worker listens on, with their values."""
    ports = {"mqtt_port": settings.mqtt_port, "http_port": settings.http_port}
    if settings.tls_cert is not None:
        ports["mqtt_tls_port"] = settings.mqtt_tls_port
    return ports


def reserve_ports(settings: Settings) -> tuple[dict[str, int], list[socket.socket]]:
    """Bind (without listening) one SO_REUSEPORT socket per listener: port 0 becomes a
    concrete port that all workers share, and a port in use is an error before any
    worker starts."""
    resolved: dict[str, int] = {}
    held: list[socket.socket] = []
    try:
        for name, port in listener_ports(settings).items():
            family, kind, proto, _, address = socket.getaddrinfo(
                settings.bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            resolved[name] = int(sock.getsockname()[1])
    except OSError:
        for sock in held:
            sock.close()
        raise
    return resolved, held


def worker_payload(settings: Settings, slot: WorkerSlot) -> bytes:
    data = settings.model_dump(mode="json")
    data["node_id"] = slot.node_id
    return json.dumps({"settings": data, "parent_pid": os.getpid()}).encode()


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slots = [
            WorkerSlot(i, f"{settings.node_id}-w{i}") for i in range(1, settings.workers + 1)
        ]
        self.stopping = asyncio.Event()
        self.gave_up = False

    async def run(self) -> int:
        s = self.settings
        try:
            ports, held = reserve_ports(s)
        except OSError as exc:
            log.error("cannot start: %s", exc)
            return 1
        self.settings = s.model_copy(update=ports)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        log.info(
            "supervisor pid %d: %d workers, node_id %s, engine %s, ports %s",
            os.getpid(),
            s.workers,
            s.node_id,
            s.engine,
            ", ".join(f"{k} {v}" for k, v in ports.items()),
        )
        try:
            tasks = [asyncio.create_task(self._keep_running(slot)) for slot in self.slots]
            await self.stopping.wait()
            # the slots return at once on the stop (one in the middle of a spawn first
            # finishes it), so every worker is known before they are told to stop
            await asyncio.gather(*tasks)
            await self._stop_workers()
        finally:
            for sock in held:
                sock.close()
        log.info("supervisor stopped%s", " (gave up)" if self.gave_up else "")
        return 1 if self.gave_up else 0

    async def _spawn(self, slot: WorkerSlot) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pushwire.workers",
            stdin=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert process.stdin is not None
        process.stdin.write(worker_payload(self.settings, slot))
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        process.stdin.close()
        slot.process = process
        log.info("worker %d started: pid %d, node_id %s", slot.index, process.pid, slot.node_id)
        return process

    async def _keep_running(self, slot: WorkerSlot) -> None:
        """Run one slot until the stop: restart its worker when it dies, within bounds."""
        s = self.settings
        while not self.stopping.is_set():
            process = await self._spawn(slot)
            exited = asyncio.ensure_future(process.wait())
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not exited.done():  # the stop came first: _stop_workers ends the worker
                exited.cancel()
                return
            status = exited.result()
            if self.stopping.is_set():
                return
            now = time.monotonic()
            while slot.restarts and now - slot.restarts[0] > s.workers_restart_window:
                slot.restarts.popleft()
            if status == SETUP_ERROR or len(slot.restarts) >= s.workers_max_restarts:
                log.error(
                    "worker %d (pid %d) exited with status %d; giving up after %d restarts "
                    "within %.0f s: stopping all workers",
                    slot.index,
                    process.pid,
                    status,
                    len(slot.restarts),
                    s.workers_restart_window,
                )
                self.gave_up = True
                self.stopping.set()
                return
            delay = min(
                s.workers_restart_backoff * 2 ** len(slot.restarts), s.workers_restart_window
            )
            slot.restarts.append(now)
            log.warning(
                "worker %d (pid %d) died with status %d; restarting in %.1f s",
                slot.index,
                process.pid,
                status,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def _stop_workers(self) -> None:
        running = [
            slot.process
            for slot in self.slots
            if slot.process is not None and slot.process.returncode is None
        ]
        log.info("stopping %d workers", len(running))
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [asyncio.ensure_future(process.wait()) for process in running]
        if not waits:
            return
        _, late = await asyncio.wait(waits, timeout=self.settings.workers_stop_timeout)
        for process in running:
            if process.returncode is None:
                log.warning("worker pid %d did not stop in time: killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        if late:
            await asyncio.gather(*late)


def run_supervisor(settings: Settings) -> int:
    from pushwire.server import EngineUnavailable, redis_engine_available

    if settings.engine == "redis" and not redis_engine_available():
        # say it once, here, rather than N workers dying of it
        log.error("cannot start: %s", EngineUnavailable("engine redis is not available"))
        return SETUP_ERROR
    if not settings.node_id:
        settings = settings.model_copy(update={"node_id": generated_node_id()})
    return asyncio.run(Supervisor(settings).run())


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM when the supervisor dies (Linux), so that a killed
    supervisor leaves no workers behind."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        sys.exit(0)


def worker_main() -> int:
    payload: dict[str, Any] = json.loads(sys.stdin.buffer.read())
    _die_with_parent(int(payload["parent_pid"]))
    settings = Settings(**payload["settings"])
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=LOG_FORMAT.replace("%(name)s", f"%(name)s[{settings.node_id}]"),
        stream=sys.stderr,
    )
    return run_server(settings)


if __name__ == "__main__":
    sys.exit(worker_main())
