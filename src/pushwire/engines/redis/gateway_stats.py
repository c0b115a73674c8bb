"""Each gateway node's push figures in Redis, so any node's /metrics shows every node's and
the cluster's totals (the gateway side is gateway/cluster_stats.py). Keys, under `prefix`:

- `gw:stats:<node>`  JSON {figure: count} of that node, expiring `ttl` after its last write
                     (a stopped node leaves the per-node figures and the totals then);
- `gw:stats-nodes`   set of the nodes that wrote one (an expired node is dropped from it).

One script per round writes this node's figures and reads the others': its cost grows with
the nodes, never with devices or pushes."""

from __future__ import annotations

import json
from typing import Final, cast

from pushwire.engines.redis.gateway_store import RedisGatewayStore

# KEYS: nodes set; ARGV: prefix, node, json, ttl ms -> flat [node, json, ...] of live nodes
_EXCHANGE: Final = """
redis.call('SET', ARGV[1] .. 'gw:stats:' .. ARGV[2], ARGV[3], 'PX', ARGV[4])
redis.call('SADD', KEYS[1], ARGV[2])
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. 'gw:stats:' .. n)
  if v then
    out[#out + 1] = n
    out[#out + 1] = v
  else
    redis.call('SREM', KEYS[1], n)
  end
end
return out
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisNodeStats:
    def __init__(self, store: RedisGatewayStore) -> None:
        self.store = store  # its client, opened when the gateway starts
        self.prefix = store.prefix
        self._nodes = store.prefix + "gw:stats-nodes"

    def exchange(
        self, node_id: str, figures: dict[str, int], ttl: float
    ) -> dict[str, dict[str, int]]:
        """Write this node's figures; return every live node's (this one's included)."""
        raw = self.store.client.eval(
            _EXCHANGE, 1, self._nodes, self.prefix, node_id, json.dumps(figures),
            str(max(1, int(ttl * 1000))),
        )  # fmt: skip
        flat = [_text(x) for x in cast(list[bytes], raw)]
        out: dict[str, dict[str, int]] = {}
        for node, blob in zip(flat[::2], flat[1::2], strict=True):
            try:
                got = json.loads(blob)
            except ValueError:
                continue  # not ours to trust: skip that node's figures
            if isinstance(got, dict):
                out[node] = {str(k): int(v) for k, v in got.items() if isinstance(v, int)}
        return out
