"""Retained messages in one Redis hash (topic -> "<position> <encoded message>").

The publish script keeps the hash current in the same step that gives a message its
position, and the message then reaches every node through the fan-out stream, where each
node's hub updates its own retained tree: the fan-out is the change notification. A node
loads the hash at start-up after noting the fan-out position it will read from, so an
update in between is applied again, never missed.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from pushwire.engines.redis import keys
from pushwire.engines.redis.codec import decode
from pushwire.model import Message


async def load_retained(client: aioredis.Redis) -> list[Message]:
    out: list[Message] = []
    stored: Any = await client.hgetall(keys.RETAINED)  # bytes (decode_responses=False)
    for _topic, value in stored.items():
        position, blob = value.split(b" ", 1)
        message = decode(blob)
        message.log_id = int(position)
        out.append(message)
    return out
