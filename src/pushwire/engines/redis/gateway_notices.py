"""Registry change notices of the gateway on Redis: each names its generation and what it
changed, so every node applies the change alone instead of reloading the registry.

A notice on channel `gw:changed` is "<generation>\\n<kind>\\t<id>\\n..." (kinds: `app`,
`key` (id "app\\0kid"), `device`, `token`); gateway_store.py publishes it in the MULTI/EXEC
of the write that bumped `gw:gen` to that generation. A reader that sees a generation that
is not the next one, or whose pub/sub connection was (re)made, missed something and reloads
the whole registry (gateway/registry.py): that is the only path to a full reload.

Waiting runs on the event loop on its own asyncio connection; a Redis error is logged and
answered with no notices after the timeout: the next wait subscribes again and answers
None (reload once: notices may have been lost meanwhile)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import redis
import redis.asyncio

from pushwire.engines.redis.notices import close_quietly

log = logging.getLogger("pushwire.gateway")

KINDS = frozenset({"app", "key", "device", "token"})


@dataclass(frozen=True, slots=True)
class RegistryChange:
    generation: int
    items: tuple[tuple[str, str], ...]  # (kind, id) of every record the write touched


def encode_change(generation: int, items: list[tuple[str, str]]) -> bytes:
    return "\n".join([str(generation), *(f"{k}\t{i}" for k, i in items)]).encode()


def decode_change(raw: bytes | str) -> RegistryChange | None:
    """The notice, or None when it is not one (an old node's bare "changed": reload)."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return None
    head, *lines = text.split("\n")
    if not head.isdigit():
        return None
    items: list[tuple[str, str]] = []
    for line in lines:
        kind, sep, ident = line.partition("\t")
        if not sep or kind not in KINDS:
            return None
        items.append((kind, ident))
    return RegistryChange(int(head), tuple(items))


class RegistryNotices:
    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self._pubsub: redis.asyncio.client.PubSub | None = None
        self._client: redis.asyncio.Redis | None = None

    async def wait(self, timeout: float) -> list[RegistryChange | None] | None:
        """The notices that came within `timeout` (an empty list when none did; a None in
        the list for a message that is no notice), or None when the subscription was
        (re)made just now and changes may have been missed: the caller reloads."""
        try:
            if self._pubsub is None:
                self._client = redis.asyncio.Redis.from_url(self.url)
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(self.channel)
                return None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            got: list[RegistryChange | None] = []
            wait = timeout
            while True:
                msg = await self._pubsub.get_message(timeout=max(0.0, wait))
                if msg is not None:
                    got.append(decode_change(msg["data"]))
                    wait = 0.0  # take what is already here, then return
                    continue
                if got or (wait := deadline - loop.time()) <= 0:
                    return got
        except (redis.RedisError, OSError) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc
            log.warning("gateway: registry notices from Redis lost (%s); will reload", exc)
            await self.close()
            await asyncio.sleep(timeout)
            # no reload asked here: the next call subscribes again and answers None, and
            # that one reload (once no further change can be missed) covers the gap. A None
            # here too reloaded twice per lost connection (test_cluster_gateway_scale's
            # "reloads once")
            return []

    async def close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        await close_quietly(pubsub, client)
