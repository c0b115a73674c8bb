"""Which engine a server runs on (settings engine / --memory / workers / node_id), and
how server.make_engine finds the Redis engine once pushwire.engines.redis exists."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from helpers.redis import RedisServer
from pushwire.config import Settings
from pushwire.engines.memory import MemoryEngine
from pushwire.server import (
    REDIS_ENGINE_MODULE,
    PushwireServer,
    make_engine,
)


def test_memory_is_a_shorthand_for_engine_memory() -> None:
    assert Settings().engine == "sqlite"
    assert Settings().memory is False
    assert Settings(memory=True).engine == "memory"
    assert Settings(engine="memory").memory is True
    assert Settings(memory=True, engine="memory").engine == "memory"
    with pytest.raises(ValidationError, match="--memory contradicts --engine redis"):
        Settings(memory=True, engine="redis")


def test_more_than_one_worker_needs_redis() -> None:
    for engine in ("sqlite", "memory"):
        with pytest.raises(ValidationError, match="--workers 2 needs --engine redis"):
            Settings(engine=engine, workers=2)
    assert Settings(engine="redis", workers=2).workers == 2
    # the test-only escape hatch for the supervisor's tests
    assert Settings(engine="memory", workers=2, workers_allow_unshared_engine=True).workers == 2


def test_node_id_is_generated_at_start_distinct_unless_given() -> None:
    assert Settings().node_id == ""  # settings stay comparable; the server names itself
    a, b = (PushwireServer(Settings(memory=True)).settings.node_id for _ in range(2))
    assert a and b and a != b
    assert PushwireServer(Settings(memory=True, node_id="node-a")).settings.node_id == "node-a"


class _StandInRedisEngine(MemoryEngine):
    """What pushwire.engines.redis will export: RedisEngine(settings)."""

    name = "redis"

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings


@pytest.fixture
def redis_engine_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType(REDIS_ENGINE_MODULE)
    module.__spec__ = importlib.machinery.ModuleSpec(REDIS_ENGINE_MODULE, None)
    module.RedisEngine = _StandInRedisEngine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, REDIS_ENGINE_MODULE, module)
    return module


def test_make_engine_builds_redis_engine_from_settings(redis_engine_module: object) -> None:
    settings = Settings(engine="redis", redis_url="redis://127.0.0.1:1/3")
    engine = make_engine(settings)
    assert isinstance(engine, _StandInRedisEngine)
    assert engine.settings is settings
    assert isinstance(make_engine(Settings(engine="memory")), MemoryEngine)


async def test_redis_workers_do_not_lock_the_data_dir(
    redis_engine_module: object, tmp_path: Path, redis_server: RedisServer
) -> None:
    """N workers on Redis share one data_dir: the SQLite store's lock must not refuse them."""
    common: dict[str, Any] = {
        "bind": "127.0.0.1",
        "mqtt_port": 0,
        "http_port": 0,
        "sys_interval": 0,
    }
    # the auth store is in Redis with engine redis (engines/redis/auth_store.py)
    url = redis_server.url
    servers = [
        PushwireServer(
            Settings(engine="redis", workers=2, data_dir=tmp_path, redis_url=url, **common)
        )
        for _ in range(2)
    ]
    try:
        for server in servers:
            await server.start()
        assert not (tmp_path / "pushwire.lock").exists()
    finally:
        for server in servers:
            await server.stop()
