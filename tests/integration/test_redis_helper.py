"""The private redis-server helper (tests/helpers/redis.py) that the Redis engine's tests
stand on: it starts, answers, keeps what its AOF wrote across kill -9, restarts on the same
port and data dir, and ends only its own process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from helpers.redis import RedisServer, running_redis


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


def test_fixture_gives_a_private_server_with_aof_always(redis_server: RedisServer) -> None:
    with _client(redis_server) as c:
        assert c.ping()
        assert c.config_get("appendonly") == {"appendonly": "yes"}
        assert c.config_get("appendfsync") == {"appendfsync": "always"}
        assert c.config_get("save") == {"save": ""}
        assert c.config_get("dir")["dir"] == str(redis_server.data_dir)
        assert c.config_get("bind")["bind"] == "127.0.0.1"


def test_kill_9_then_restart_keeps_an_aof_written_key(redis_server: RedisServer) -> None:
    with _client(redis_server) as c:
        c.set("acked", "kept")
        c.xadd("stream", {"n": "1"})
    port, first_pid = redis_server.port, redis_server.pid
    assert redis_server.kill() == -9
    assert not redis_server.running
    with pytest.raises(redis.ConnectionError), _client(redis_server) as c:
        c.ping()
    redis_server.start()
    assert (redis_server.port, redis_server.starts) == (port, 2)
    assert redis_server.pid != first_pid
    with _client(redis_server) as c:
        assert c.get("acked") == b"kept"
        assert c.xlen("stream") == 1


def test_graceful_restart_on_same_port_and_data_dir(redis_server: RedisServer) -> None:
    with _client(redis_server) as c:
        c.set("k", "v")
    port = redis_server.port
    redis_server.restart()
    assert redis_server.port == port
    with _client(redis_server) as c:
        assert c.get("k") == b"v"


def test_stopping_one_leaves_the_other_running(tmp_path: Path) -> None:
    with running_redis(tmp_path / "a") as a, running_redis(tmp_path / "b") as b:
        assert a.port != b.port
        a_pid = a.pid
        a.kill()
        with pytest.raises(ProcessLookupError):
            os.kill(a_pid, 0)  # gone and reaped
        with _client(b) as c:
            assert c.ping()
        b_pid = b.pid
    with pytest.raises(ProcessLookupError):
        os.kill(b_pid, 0)  # the context manager stopped it
