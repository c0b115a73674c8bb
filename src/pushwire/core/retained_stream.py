"""Retained messages for new subscriptions, handed over in slices.

A subscription to `#` over 100,000 retained topics used to be answered in one go on the
event loop: its SUBACK waited for the whole scan (seconds with ten such filters), and so did
every other client. A `RetainedStream` (one per session) walks the retained tree a bounded
slice at a time (`retained_slice` nodes per loop turn), so other clients are served between
slices. It goes only as fast as the subscriber reads: a message is handed over only when it
can be sent at once (`Session.stream_room`: the send buffer has room and, for QoS 1/2, nothing
is queued, the inflight window is open and the message fits the byte bound beside what is
inflight); otherwise the stream keeps that message and resumes when `Session.pump` says there
is room. So the retained set never goes through the session's queue: it is neither capped by
the queue bounds (a QoS 1 subscriber used to get the inflight window plus what the queue
could hold, the rest refused) nor piles up in memory, and QoS 0 retained messages are not
dropped for a subscriber that simply reads slower than we write.

Messages set after a stream started are skipped: the subscription was already in place, so
the subscriber got them live, and sending them again would repeat them (or, worse, put an
older value after a newer one).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pushwire.core.retain import RetainedNode
from pushwire.core.session import Link, Session, Subscription


@dataclass(slots=True)
class _Job:
    sub: Subscription
    # what the session held under that filter when the job began: if that changes
    # (UNSUBSCRIBE, or a new SUBSCRIBE that starts its own job), this job ends
    current: Subscription | None
    nodes: Iterator[RetainedNode | None]
    since: int  # the store's stamp when the subscription was acknowledged
    ids: list[int]
    # a node reached while the subscriber had no room: handed over first when it has
    pending: RetainedNode | None = None


class RetainedStream:
    def __init__(
        self,
        session: Session,
        link: Link,
        slice_size: int,
        on_done: Callable[[RetainedStream], None],
    ) -> None:
        self.session = session
        self.link = link
        self.slice_size = slice_size
        self._on_done = on_done
        self._jobs: deque[_Job] = deque()
        self._handle: asyncio.Handle | None = None
        self._waiting = False
        self._closed = False

    def add(self, sub: Subscription, nodes: Iterator[RetainedNode | None], since: int) -> None:
        ids = [sub.subscription_id] if sub.subscription_id else []
        current = self.session.subscriptions.get(sub.filter)
        self._jobs.append(_Job(sub, current, nodes, since, ids))
        if self._handle is None and not self._waiting:
            # the first slice at once: it follows the SUBACK already written
            self._step()

    def close(self) -> None:
        """Stop (the connection ended or was taken over)."""
        self._closed = True
        self._jobs.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.session.drain_waiter == self._resume:
            self.session.drain_waiter = None

    def _resume(self) -> None:
        # called from Session.pump, maybe inside another packet's handling: next turn
        self._waiting = False
        if not self._closed and self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._step)

    def _step(self) -> None:
        self._handle = None
        session = self.session
        if self._closed or session.link is not self.link:
            self._finish()
            return
        budget = self.slice_size
        now = time.time()
        while self._jobs:
            job = self._jobs[0]
            if session.subscriptions.get(job.sub.filter) is not job.current:
                self._jobs.popleft()  # unsubscribed or replaced meanwhile
                continue
            qos = job.sub.options.qos
            while True:
                node = job.pending
                if node is not None:
                    job.pending = None
                else:
                    try:
                        node = next(job.nodes)
                    except StopIteration:
                        break
                    budget -= 1
                if node is not None:
                    # read now, not when the node was reached: it may have changed while
                    # the stream waited (a newer value went out live: skip it)
                    message = node.message
                    if message is not None and node.stamp <= job.since and not message.expired(now):
                        grant = min(message.qos, qos)
                        if not session.stream_room(grant, message):
                            job.pending = node  # offered again when there is room
                            self._wait()
                            return
                        session.offer(message, grant, True, job.ids, None)
                if budget <= 0:
                    self._handle = asyncio.get_running_loop().call_soon(self._step)
                    return
            self._jobs.popleft()
        self._finish()

    def _wait(self) -> None:
        """No room: resume when the session pumps (an ack, or the send buffer drained)."""
        self._waiting = True
        self.session.drain_waiter = self._resume

    def _finish(self) -> None:
        if not self._closed:
            self.close()
            self._on_done(self)
