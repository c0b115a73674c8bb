"""nginx with the nchan module: the reference server of `pushwire bench http`.

nchan (https://nchan.io) gives nginx the same HTTP pub/sub shapes pushwire has: a publisher
endpoint (POST a message body to a channel) and long-poll, EventSource (SSE) and WebSocket
subscribers. `nchan_server` starts it the way `peers.py` starts mosquitto:

* a generated `nginx.conf` in a temp dir (error log, pid file and temp paths in there too),
  listening on a free port on 127.0.0.1 only;
* `daemon off` and `master_process on` with **one worker process**, to match pushwire's
  single process (nginx's worker does all the serving; the master only supervises);
* when the benchmark runs as root, the worker drops to `nobody` (nginx's `user`
  directive): only the master, which serves nothing, keeps root;
* `RLIMIT_NOFILE` raised to the hard limit for the master (inherited by the worker) and
  `worker_rlimit_nofile` set to the same, with `worker_connections` just below it;
* stopped by the PIDs this module started: SIGTERM to the master (nginx's fast shutdown),
  SIGKILL after 5 s, then SIGKILL to any worker left behind; also on errors and Ctrl-C.

Locations (the channel id comes from the URL):

    POST /pub/{channel}          nchan_publisher
    GET  /lp/{channel}           nchan_subscriber longpoll
    GET  /sse/{channel}          nchan_subscriber eventsource  (needs Accept: text/event-stream)
    GET  /ws/{channel}           nchan_subscriber websocket
    GET  /nchan_status           nchan_stub_status (the orchestrator counts subscribers here)

Channel settings mirror pushwire's log defaults: 1000 messages kept per channel
(`nchan_message_buffer_length`; nchan's default is 10) for 12 hours (`nchan_message_timeout`).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pushwire.bench.loadgen import BenchError
from pushwire.bench.peers import (
    HOST,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    _spawn,
    _wait_until_accepting,
    free_port,
    raise_nofile_limit,
    rss_kb,
)

# Where Debian's libnginx-mod-nchan puts the module, then other distributions' habits.
NCHAN_MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_nchan_module.so",
    "/usr/lib64/nginx/modules/ngx_nchan_module.so",
    "/usr/share/nginx/modules/ngx_nchan_module.so",
    "/usr/local/nginx/modules/ngx_nchan_module.so",
)
# Debian enables dynamic modules with one-line files holding a `load_module` directive.
MODULE_CONF_DIRS = ("/etc/nginx/modules-enabled", "/usr/share/nginx/modules-available")
NGINX_PREFIX = Path("/usr/share/nginx")  # Debian's --prefix: relative module paths start here
MESSAGES_KEPT = 1000  # pushwire's --log-max-messages default
MESSAGE_TIMEOUT = "12h"  # pushwire's --log-max-age default (43200 s)
FD_RESERVE = 64  # descriptors nginx needs besides client connections (listeners, logs, ...)
INSTALL_HINT = "install the Debian packages 'nginx' and 'libnginx-mod-nchan'"

_LOAD_MODULE = re.compile(r"^\s*load_module\s+([^;\s]*nchan[^;\s]*\.so)\s*;", re.M)


@dataclass(frozen=True, slots=True)
class HttpServer:
    """A running HTTP push server on 127.0.0.1:`port`. `pids` are the processes whose CPU
    and RSS count as the server's (nginx: master and worker)."""

    name: str
    pid: int
    port: int
    log_path: Path | None
    extra_pids: tuple[int, ...] = ()

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.pid, *self.extra_pids)

    def rss_kb(self) -> int:
        return sum(rss_kb(pid) for pid in self.pids)

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise BenchError(f"nginx not found; {INSTALL_HINT}")
    return found


def nchan_module_path() -> Path:
    """The nchan module's .so: a known path, else the one a `load_module` line names."""
    for candidate in NCHAN_MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    for directory in MODULE_CONF_DIRS:
        with contextlib.suppress(OSError):
            for conf in sorted(Path(directory).iterdir()):
                with contextlib.suppress(OSError):
                    for found in _LOAD_MODULE.findall(conf.read_text()):
                        path = Path(found)
                        path = path if path.is_absolute() else NGINX_PREFIX / path
                        if path.is_file():
                            return path
    raise BenchError(f"the nchan module (ngx_nchan_module.so) was not found; {INSTALL_HINT}")


def _worker_user() -> str:
    """`user nobody GROUP;` when running as root (nginx ignores `user` otherwise)."""
    if os.geteuid() != 0:
        return ""
    try:
        nobody = pwd.getpwnam("nobody")
        group = grp.getgrgid(nobody.pw_gid).gr_name
    except KeyError:
        return ""
    return f"user nobody {group};\n"


def nchan_conf(port: int, workdir: Path, module: Path, nofile: int, worker_user: str = "") -> str:
    """The whole nginx.conf; every path nginx writes is inside `workdir`."""
    worker_connections = max(1024, nofile - FD_RESERVE)
    temp_paths = "".join(
        f"    {kind}_temp_path {workdir / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"load_module {module};\n"
        "daemon off;\n"
        "master_process on;\n"
        "worker_processes 1;  # pushwire is one process\n"
        f"worker_rlimit_nofile {nofile};\n"
        f"{worker_user}"
        f"error_log {workdir / 'error.log'} warn;\n"
        f"pid {workdir / 'nginx.pid'};\n"
        f"events {{\n    worker_connections {worker_connections};\n}}\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp_paths}"
        "    client_body_buffer_size 64k;  # publish bodies stay in memory\n"
        "    keepalive_timeout 600s;\n"
        "    keepalive_requests 100000000;\n"
        f"    nchan_message_buffer_length {MESSAGES_KEPT};\n"
        f"    nchan_message_timeout {MESSAGE_TIMEOUT};\n"
        "    server {\n"
        f"        listen {HOST}:{port} backlog=4096;\n"
        "        location ~ ^/pub/(\\w+)$ {\n"
        "            nchan_publisher;\n"
        "            nchan_channel_id $1;\n"
        "        }\n"
        "        location ~ ^/lp/(\\w+)$ {\n"
        "            nchan_subscriber longpoll;\n"
        "            nchan_channel_id $1;\n"
        "        }\n"
        "        location ~ ^/sse/(\\w+)$ {\n"
        "            nchan_subscriber eventsource;\n"
        "            nchan_channel_id $1;\n"
        "        }\n"
        "        location ~ ^/ws/(\\w+)$ {\n"
        "            nchan_subscriber websocket;\n"
        "            nchan_channel_id $1;\n"
        "        }\n"
        "        location = /nchan_status {\n"
        "            nchan_stub_status;\n"
        "        }\n"
        "    }\n"
        "}\n"
    )


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (nginx's workers), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [int(p) for p in children.read_text().split()]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _is_nginx_worker(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return b"nginx: worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def _wait_for_workers(master: subprocess.Popen[bytes]) -> tuple[int, ...]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise BenchError(f"nginx exited with {master.returncode} during start-up")
        workers = tuple(p for p in child_pids(master.pid) if _is_nginx_worker(p))
        if workers:
            return workers
        time.sleep(0.05)
    raise BenchError("nginx started no worker process in time")


def _stop_nginx(master: subprocess.Popen[bytes], workers: tuple[int, ...]) -> None:
    if master.poll() is None:
        master.send_signal(signal.SIGTERM)  # fast shutdown (SIGQUIT would wait for requests)
        try:
            master.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(STOP_TIMEOUT_S)
    # A killed master leaves its worker behind: end it by the PID we saw it start with.
    for pid in workers:
        if _is_nginx_worker(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def nchan_server(workdir: Path) -> Iterator[HttpServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    binary, module = nginx_binary(), nchan_module_path()
    port = free_port()
    nofile = raise_nofile_limit()
    conf_path = workdir / "nginx.conf"
    conf_path.write_text(nchan_conf(port, workdir, module, nofile, _worker_user()))
    log_path = workdir / "error.log"
    argv = [binary, "-p", str(workdir), "-c", str(conf_path), "-e", str(log_path)]
    master = _spawn(argv, workdir, workdir / "nginx.out")
    workers: tuple[int, ...] = ()
    try:
        try:
            _wait_until_accepting(port, master, "nginx")
            workers = _wait_for_workers(master)
        except BenchError as exc:
            output = (workdir / "nginx.out").read_text(errors="replace").strip()
            raise BenchError(f"{exc}: {output[-500:]}") from None
        yield HttpServer("nchan", master.pid, port, log_path, workers)
    finally:
        _stop_nginx(master, workers)
