"""A Redis pub/sub channel that says "something changed": the auth store and the gateway
store each publish one after every write, and every node's reloader waits on it.

Waiting runs on the event loop, on its own asyncio connection. A Redis error is logged and
turned into waiting out the timeout: the caller's generation poll stays the backstop, so a
lost notice only delays a reload, never loses it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis
import redis.asyncio

log = logging.getLogger(__name__)


class ChangeNotices:
    def __init__(self, url: str, channel: str, what: str) -> None:
        self.url = url
        self.channel = channel
        self._what = what  # names the store in the log line
        self._pubsub: redis.asyncio.client.PubSub | None = None
        self._client: redis.asyncio.Redis | None = None

    async def wait(self, timeout: float) -> None:
        """Return when a change was published on the channel, or after `timeout`."""
        try:
            if self._pubsub is None:
                self._client = redis.asyncio.Redis.from_url(self.url)
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(self.channel)
                # a change made before the subscription took effect sends no notice here:
                # return, so the caller reloads once now that no further change is missed
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                if await self._pubsub.get_message(timeout=left) is not None:
                    return
        except (redis.RedisError, OSError) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # redis-py turned our cancellation into a connection error: stop, as asked
                raise asyncio.CancelledError from exc
            log.warning("%s: change notices from Redis lost (%s); polling", self._what, exc)
            await self.close()
            await asyncio.sleep(timeout)

    async def close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        await close_quietly(pubsub, client)


async def close_quietly(
    pubsub: redis.asyncio.client.PubSub | None, client: redis.asyncio.Redis | None
) -> None:
    """Close a notice listener's pub/sub and its client; a Redis that is already gone is
    what made us close, so its errors are not news (shared with gateway_notices.py)."""
    if pubsub is not None:
        with contextlib.suppress(redis.RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
    if client is not None:
        with contextlib.suppress(redis.RedisError, OSError):
            await client.aclose()
