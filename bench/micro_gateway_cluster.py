"""Redis and client cost of the gateway's cluster upkeep on engine=redis, per round/change,
with N devices: the dead-home check (old whole-table HGETALL scan vs the per-node index
script) and a registry change seen by another node (old full reload vs reading the records
the notice names). A private redis-server (tests/helpers/redis.py), a few seconds.

    .venv/bin/python bench/micro_gateway_cluster.py [N]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers.redis import RedisServer
from pushwire.engines.redis.gateway_homes import RedisDeviceHomes
from pushwire.engines.redis.gateway_store import RedisGatewayStore
from pushwire.gateway.model import DeviceToken

ROUNDS = 20


def measure(r: redis.Redis, name: str, fn: Callable[[], object], n: int) -> None:
    r.config_resetstat()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(ROUNDS):
        fn()
    cpu = (time.process_time() - cpu0) / ROUNDS * 1000
    wall = (time.perf_counter() - wall0) / ROUNDS * 1000
    stats = {k[8:]: v for k, v in r.info("commandstats").items() if "config" not in k}
    usec = sum(v["usec"] for v in stats.values()) / ROUNDS
    calls = {k: v["calls"] / ROUNDS for k, v in stats.items()}
    print(
        f"N={n} {name}: redis {usec:.0f} us, client CPU {cpu:.2f} ms, wall {wall:.2f} ms, {calls}"
    )


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        srv = RedisServer(Path(d), appendfsync="everysec").start()
        try:
            store = RedisGatewayStore(srv.url)
            store.open()
            r = redis.Redis.from_url(srv.url)
            for node in ("n1", "n2"):
                r.set(f"pw:node:{node}", 1)
            links = {node: RedisDeviceHomes(store, node, 5.0) for node in ("n1", "n2")}
            pipe = r.pipeline(transaction=False)
            for i in range(n):
                links["n2" if i % 2 else "n1"].claim(f"dev{i}")
                record = {"device_id": f"dev{i}", "secret_hash": "h", "created": 0.0}
                pipe.hset("pw:gw:devices", f"dev{i}", json.dumps(record))
            pipe.execute()
            token = DeviceToken("tok", "dev1", "app", 0.0)
            store.add_token(token)

            def old_scan() -> object:
                homes = cast(dict[bytes, bytes], store.client.hgetall("pw:gw:home"))
                nodes = sorted({v.decode() for v in homes.values()} - {"n1"})
                _ = [store.client.exists(f"pw:node:{x}") for x in nodes]
                return homes

            measure(r, "dead-home check, whole-table scan (before)", old_scan, n)
            measure(r, "dead-home check, index script (after)", links["n1"].orphans, n)
            measure(r, "registry change, full reload (before)", store.registry, n)
            measure(r, "registry change, named records (after)",
                    lambda: store.records([("token", "tok")]), n)  # fmt: skip
            store.close()
        finally:
            srv.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
