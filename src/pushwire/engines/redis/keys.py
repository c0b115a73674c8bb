"""The Redis key names of engine=redis (one prefix, so one Redis can hold several clusters
by giving each its own database in redis_url)."""

from __future__ import annotations

PREFIX = "pw:"
SEQ = PREFIX + "seq"  # INCR: the position of every message, one order for the cluster
EPOCH = PREFIX + "epoch"  # the history's epoch token (SET NX: the first node makes it)
FANOUT = PREFIX + "fanout"  # stream every node reads, in position order
LOG = PREFIX + "log:"  # + topic: that topic's history, stream entry ids "<position>-0"
TOPICS = PREFIX + "topics"  # set of topics that have a history stream
EVICTED = PREFIX + "evicted"  # hash topic -> "<highest evicted position> <its time>"
RETAINED = PREFIX + "retained"  # hash topic -> "<position> <encoded message>"
CONSUMERS = PREFIX + "consumers"  # hash "owner\0name\0filter" -> "<acked> <last used>"


def stream_id(position: int) -> str:
    return f"{position}-0"


def position_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])
