"""The stream entries of engine=redis: one entry per publish batch, many messages inside.

A publish batch (history.py's script call) takes consecutive positions first..last. It
writes ONE fan-out entry (id "<last>-0") and ONE entry per topic of the batch to that
topic's history stream (id "<the topic's last position in the batch>-0"), instead of one
XADD per message. Every entry holds `f` = the batch's first position, so a message's
position is `f` + its index in the batch: unique and ordered across nodes, and the same
on every node, so a cursor resumes exactly anywhere.

Framing inside an entry (payloads are raw bytes, so lengths, not separators):
- fan-out `b`: "<length> <encoded message>" per message, in batch order (index implicit);
- topic `m`: "<index> <length> <encoded message>" per message of that topic.
Entries written by earlier versions (one message per topic entry, fan-out records
"<position> <length> <message>", no `f`) are still read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pushwire.engines.redis.keys import position_of


def frame(blob: bytes) -> bytes:
    return b"%d " % len(blob)


def frame_indexed(index: int, blob: bytes) -> bytes:
    return b"%d %d " % (index, len(blob))


def unframe(data: bytes) -> Iterator[bytes]:
    at = 0
    end = len(data)
    while at < end:
        space = data.index(b" ", at)
        start = space + 1
        stop = start + int(data[at:space])
        yield data[start:stop]
        at = stop


def unframe_indexed(data: bytes) -> Iterator[tuple[int, bytes]]:
    at = 0
    end = len(data)
    while at < end:
        space = data.index(b" ", at)
        index = int(data[at:space])
        space2 = data.index(b" ", space + 1)
        start = space2 + 1
        stop = start + int(data[space + 1 : space2])
        yield index, data[start:stop]
        at = stop


def fanout_messages(fields: dict[bytes, Any]) -> Iterator[tuple[int, bytes]]:
    """(position, encoded message) of a fan-out entry, in position order."""
    first = fields.get(b"f")
    if first is None:  # an earlier version's entry: positions written out
        yield from unframe_indexed(fields[b"b"])
        return
    yield from enumerate(unframe(fields[b"b"]), int(first))


def topic_messages(entry_id: bytes, fields: dict[bytes, Any]) -> Iterator[tuple[int, bytes]]:
    """(position, encoded message) of a topic history entry, in position order."""
    first = fields.get(b"f")
    if first is None:  # an earlier version's entry: one message, id = its position
        yield position_of(entry_id), fields[b"m"]
        return
    base = int(first)
    for index, blob in unframe_indexed(fields[b"m"]):
        yield base + index, blob
