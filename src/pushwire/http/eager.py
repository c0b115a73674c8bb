"""Running a handler's coroutine at once in a protocol callback, a task only when it waits."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

_T = TypeVar("_T")


def run_eagerly(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, _T]
) -> _T | asyncio.Task[_T]:
    """Run `coro` at once, in this callback: its result when it finishes without waiting
    (no task: the common case for a publish to the memory store), else a task that goes on
    from where it waits. Raises what `coro` raises before its first wait."""
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        result: _T = stop.value
        return result
    if getattr(yielded, "_asyncio_future_blocking", None):
        # what a task does at once with an awaited future: another request awaiting the
        # same future (the store's shared sync) before our task runs would otherwise find
        # the flag set and fail ("await wasn't used with future"); `_delegate` sets it
        # again when it hands the future to the task
        yielded._asyncio_future_blocking = False
    return loop.create_task(_resume(coro, yielded))


@types.coroutine
def _delegate(coro: Coroutine[Any, Any, _T], yielded: Any) -> Generator[Any, Any, Any]:
    """Go on driving `coro`, which already yielded `yielded` to us, under a task."""
    if getattr(yielded, "_asyncio_future_blocking", None) is not None:
        yielded._asyncio_future_blocking = True  # cleared by `_FastCycle._run`: see there
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # thrown in by the task (cancellation): pass it on
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _resume(coro: Coroutine[Any, Any, _T], yielded: Any) -> _T:
    result: _T = await _delegate(coro, yielded)
    return result
