"""One Redis round trip per loop turn for the small calls of many connections at once.

A connect storm (10,000 MQTT clients arriving together) makes every CONNECT take its
client-id lock, and every accepted connection write its place in `pw:where`. Sent one by
one, each is a round trip through the shared connection pool with its own Python-side
cost (a pool checkout, a command encoded, a reply parsed under a task switch): at about
330 CONNECTs/s the server waited on Redis rather than computed. `CallBatch` collects the
calls made during one loop turn and sends them as ONE non-transactional pipeline on the
next turn; each caller awaits its own reply (or exception). Batches go strictly one after
another: a call made after another one was answered runs after it.

Scripts are called by EVALSHA without redis-py's per-pipeline `SCRIPT EXISTS` round trip:
a reply NOSCRIPT (a restarted Redis forgets its scripts) loads the script and runs the
calls that got it again, in their order, right after the rest of their batch. A pipeline
that fails as a whole (Redis unreachable, timed out) fails every call in it: callers
refuse (MQTT reason code), never act as if it had been done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from redis.commands.core import AsyncScript


@dataclass(slots=True)
class _Call:
    script: AsyncScript | None
    args: tuple[Any, ...]  # the command (script None) or keys-count, keys and args
    reply: asyncio.Future[Any]


class CallBatch:
    """Calls of one loop turn, sent together."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self._pending: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # pipelines sent (a figure for tests and benches)

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command (as `execute_command` takes it); its reply when answered."""
        return self._add(None, args)

    def script(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Queue one run of a registered script; its reply when answered."""
        return self._add(script, (len(keys), *keys, *args))

    def _add(self, script: AsyncScript | None, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Call(script, args, reply))
        if self._flusher is None or self._flusher.done():
            # started on the next turn: every call made in this one joins the first batch
            self._flusher = asyncio.ensure_future(self._flush())
        return reply

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            await self._send(batch, retry_scripts=True)

    async def _send(self, batch: list[_Call], *, retry_scripts: bool) -> None:
        pipe = self.client.pipeline(transaction=False)
        for call in batch:
            if call.script is None:
                pipe.execute_command(*call.args)
            else:
                pipe.execute_command("EVALSHA", call.script.sha, *call.args)
        self.batches += 1
        try:
            results = await pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            for call in batch:
                if not call.reply.done():
                    call.reply.set_exception(exc)
            return
        again: list[_Call] = []
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError) and retry_scripts:
                again.append(call)
            elif call.reply.done():
                continue  # the caller gave up (cancelled)
            elif isinstance(result, Exception):
                call.reply.set_exception(result)
            else:
                call.reply.set_result(result)
        if again:
            try:
                for script in {id(c.script): c.script for c in again}.values():
                    assert script is not None
                    script.sha = await self.client.script_load(script.script)
            except (redis.RedisError, OSError, TimeoutError) as exc:
                for call in again:
                    if not call.reply.done():
                        call.reply.set_exception(exc)
                return
            await self._send(again, retry_scripts=False)
