"""A private redis-server for the in-process Redis micro benches (micro_redis_publish.py,
micro_redis_fanin.py): on a free port of 127.0.0.1, AOF with `appendfsync everysec`, its
files in a directory the caller owns, stopped when the block ends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextmanager
def private_redis(directory: Path) -> Iterator[str]:
    """Start redis-server with its files in `directory`; yield its URL once it accepts."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found")
    port = free_port()
    conf = directory / "redis.conf"
    conf.write_text(
        f"bind {HOST}\nport {port}\ndir {directory}\ndaemonize no\nappendonly yes\n"
        'appendfsync everysec\nsave ""\nlogfile ""\n'
    )
    process = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)  # a poll for the port with a deadline, not a wait on time
        yield f"redis://{HOST}:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
