"""The SQLite engine's writer: one thread owns the only connection and applies queued
writes in group commits (see the package docstring for the threading model and failures)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pushwire.core.histogram import Histogram
from pushwire.core.message import Message, bump_uid_floor
from pushwire.engines.base import WriteError, WriteFailure
from pushwire.engines.sqlite.backlog import WriteBacklog
from pushwire.engines.sqlite.failures import FailureReports
from pushwire.engines.sqlite.rows import SQL_LOG_HOLE, topic_key
from pushwire.engines.sqlite.schema import connect
from pushwire.engines.sqlite.schema import max_uid as max_uid_of

logger = logging.getLogger(__name__)

T = TypeVar("T")
Params = tuple[Any, ...]
# A write is (sql, params) for single statements, or (function, params) for the few
# operations that need several statements applied together.
WriteFn = Callable[[sqlite3.Connection, Any], None]
# whose write it is, for failure reports: (engine method, message, client id)
Subject = tuple[str, Message | None, str | None]
# (operation, params, bytes of payload it holds: the write-behind backlog counts them,
# whose write it is)
Write = tuple[str | WriteFn, Any, int, Subject | None]


class SQLiteWriteError(WriteError):
    """A write that belongs to no message or session could not be stored (see the module
    docstring). The underlying sqlite3 (or other) exception is the `__cause__`."""


class Sync:
    """Commit marker: resolve `future` on `loop` once the writes queued before it commit."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future


class Call:
    """Run `fn` on the writer thread (outside any transaction) after preceding commits."""

    __slots__ = ("fn", "future")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], future: concurrent.futures.Future[Any]
    ) -> None:
        self.fn = fn
        self.future = future


class Stop:
    __slots__ = ("future",)

    def __init__(self, future: concurrent.futures.Future[None]) -> None:
        self.future = future


Item = Write | Sync | Call | Stop


def settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """Runs on the event loop: resolve the sync() futures of one commit point."""
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            exc = SQLiteWriteError(f"sqlite engine: write batch rolled back: {error!r}")
            exc.__cause__ = error
            future.set_exception(exc)


class GroupCommitWriter(FailureReports, WriteBacklog):
    """The writer thread and its queue (see the package docstring): lifecycle, commit points,
    and the group commit. The stores (sessions.py, retained.py, log.py) queue their writes
    with `_write` and their reads with `_call`; engine.py sets these attributes up."""

    path: Path
    durable: bool
    batch_max: int
    commits: int
    commit_seconds: Histogram
    failed_batches: int
    failed_writes: int
    _ops: queue.SimpleQueue[Item]
    _thread: threading.Thread | None
    _state: str
    _dirty: bool
    _last_sync: asyncio.Future[None] | None
    _unreported: BaseException | None

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"SQLiteEngine.open() on an engine that is {self._state}")
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._loop = asyncio.get_running_loop()
        thread = threading.Thread(
            target=self._run, args=(ready,), name="pushwire-sqlite-writer", daemon=True
        )
        thread.start()
        try:
            max_uid = await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(thread.join)
            self._state = "closed"
            raise
        self._thread = thread
        self._state = "open"
        # Right away, not only in load_*: no Message created from now on may reuse a uid
        # that is already on disk, or its body would be taken for the stored one.
        bump_uid_floor(max_uid)

    async def close(self) -> None:
        """Commit everything pending, stop the writer and close the database.

        Raises SQLiteWriteError (after releasing everything) if the final commit failed."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"  # from here on, writes raise
        loop = asyncio.get_running_loop()
        final: asyncio.Future[None] = loop.create_future()
        self._ops.put(Sync(loop, final))
        stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._ops.put(Stop(stopped))
        error: SQLiteWriteError | None = None
        try:
            await asyncio.shield(final)
        except SQLiteWriteError as exc:
            error = exc
        await asyncio.wrap_future(stopped)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if error is not None:
            raise error

    # -- commit points --------------------------------------------------------------------

    async def sync(self) -> None:
        """Return once every write issued before this call is committed (durable=True).

        With durable=False this returns at once: the writes are committed shortly after
        by the writer, and failures are only logged (use `flush()` to wait anyway)."""
        self._check_open()
        if self.durable:
            await self.flush()

    async def flush(self) -> None:
        """Wait until every write issued before this call is committed, whatever `durable`
        says. Raises SQLiteWriteError if a batch failed since the previous commit point."""
        self._check_open()
        last = self._last_sync
        if not self._dirty and (last is None or last.done()):
            # nothing written since the last commit point, which is already settled
            # (a failure there was reported to its waiters, once)
            return
        loop = asyncio.get_running_loop()
        if self._dirty or last is None or last.get_loop() is not loop:
            last = loop.create_future()
            self._ops.put(Sync(loop, last))
            self._last_sync = last
            self._dirty = False
        # shield: one waiter being cancelled must not cancel the shared future of the others
        await asyncio.shield(last)

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"SQLiteEngine is {self._state}, not open")

    def _write(
        self, op: str | WriteFn, params: Any, subject: Subject | None = None, size: int = 0
    ) -> None:
        if self._state != "open":
            raise RuntimeError(f"SQLiteEngine is {self._state}: cannot write")
        self._dirty = True
        self._queued_bytes += size
        self._ops.put((op, params, size, subject))

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run `fn(conn)` on the writer thread after the writes queued before it commit.

        Queued synchronously (not in a coroutine) so its place in the write order is the
        moment of the call. Also the test seam to hold the writer still."""
        self._check_open()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._ops.put(Call(fn, future))
        return asyncio.wrap_future(future)

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        """Writer thread body."""
        try:
            conn = connect(self.path, self.durable)
            max_uid = max_uid_of(conn)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(max_uid)
        stop: Stop | None = None
        try:
            stop = self._serve(conn)
        except BaseException:
            # only a bug gets here (_commit catches batch errors); say so loudly, since
            # sync() waiters will wait forever from now on
            logger.critical("sqlite engine: writer thread died", exc_info=True)
            raise
        finally:
            try:
                conn.close()
            except sqlite3.Error:
                logger.exception("sqlite engine: error closing %s", self.path)
            if stop is not None:
                stop.future.set_result(None)

    def _serve(self, conn: sqlite3.Connection) -> Stop:
        ops = self._ops
        while True:
            item = ops.get()  # block for the first item of a batch
            writes: list[Write] = []
            waiters: list[Sync] = []
            tail: Call | Stop | None = None
            count = 0
            while True:
                if isinstance(item, tuple):
                    writes.append(item)
                elif isinstance(item, Sync):
                    waiters.append(item)
                else:
                    # reads and stop end the batch so they run after its commit
                    tail = item
                    break
                count += 1
                if count >= self.batch_max:
                    break
                try:
                    item = ops.get_nowait()
                except queue.Empty:
                    break

            failures = self._commit(conn, writes) if writes else []
            if writes:
                # every write of the batch left the queue, stored or refused
                self._applied(sum(w[2] for w in writes))
            # failures of writes that belong to no message or session: sync() raises them
            error: BaseException | None = next(
                (exc for write, exc in failures if write[3] is None), None
            )
            if failures:
                # before the waiters are resolved: a waiter asks write_failed() at once
                self._report(failures)
            if waiters:
                if error is None and self._unreported is not None:
                    error = self._unreported
                self._unreported = None
                self._resolve(waiters, error)
            elif error is not None and self._unreported is None:
                self._unreported = error

            if isinstance(tail, Call):
                try:
                    result = tail.fn(conn)
                except BaseException as exc:
                    tail.future.set_exception(exc)
                else:
                    tail.future.set_result(result)
            elif isinstance(tail, Stop):
                return tail

    def _commit(
        self, conn: sqlite3.Connection, writes: list[Write]
    ) -> list[tuple[Write, BaseException]]:
        """Apply one batch in one transaction; return the writes that could not be stored
        (with why), [] when all were."""
        began = time.perf_counter()
        try:
            # IMMEDIATE: take the write lock up front, so a lock problem shows here and not
            # halfway through the batch
            conn.execute("BEGIN IMMEDIATE")
            for op, params, _size, _subject in writes:
                if isinstance(op, str):
                    conn.execute(op, params)
                else:
                    op(conn, params)
            conn.execute("COMMIT")
        except Exception as exc:
            self.failed_batches += 1
            logger.warning(
                "sqlite engine: batch of %d writes failed (%s); retrying one write at a time",
                len(writes),
                type(exc).__name__,
            )
            self._rollback(conn)
            return self._commit_one_by_one(conn, writes)
        self.commit_seconds.observe(time.perf_counter() - began)
        self.commits += 1
        return []

    def _commit_one_by_one(
        self, conn: sqlite3.Connection, writes: list[Write]
    ) -> list[tuple[Write, BaseException]]:
        """The batch again, each write inside its own savepoint: a write that fails is
        rolled back alone and the rest commit. When the transaction itself fails (BEGIN,
        COMMIT, or an error after which SQLite rolled everything back, such as a full
        disk), nothing of the batch is stored and every write is reported."""
        failures: list[tuple[Write, BaseException]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for write in writes:
                op, params, _size, subject = write
                conn.execute("SAVEPOINT one_write")
                try:
                    if isinstance(op, str):
                        conn.execute(op, params)
                    else:
                        op(conn, params)
                except Exception as err:
                    conn.execute("ROLLBACK TO one_write")
                    failures.append((write, err))
                    if subject is not None and subject[0] == "log_append":
                        # the id was issued (readers may have seen it): remember the hole
                        conn.execute(SQL_LOG_HOLE, (topic_key(params[1]), params[0]))
                conn.execute("RELEASE one_write")
            conn.execute("COMMIT")
        except Exception as exc:
            self._rollback(conn)
            self.failed_writes += len(writes)
            logger.error(
                "sqlite engine: batch of %d writes rolled back", len(writes), exc_info=True
            )
            return [(write, exc) for write in writes]
        self.commits += 1
        if failures:
            self.failed_writes += len(failures)
            for write, problem in failures:
                # the operation and the error class only: the values are clients' data
                logger.error(
                    "sqlite engine: %s could not be stored (%s); %d other writes of its batch were",
                    write[3][0] if write[3] is not None else "a write",
                    type(problem).__name__,
                    len(writes) - len(failures),
                )
        return failures

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                logger.exception("sqlite engine: rollback failed")

    def _report(self, failures: list[tuple[Write, BaseException]]) -> None:
        """Hand the failed writes to the event loop (`_record_failures`)."""
        loop = self._loop
        if loop is None:
            return
        reports = [
            WriteFailure(subject[0], subject[1], subject[2], type(exc).__name__)
            for (_, _, _, subject), exc in failures
            if subject is not None
        ]
        if not reports:
            return
        try:
            loop.call_soon_threadsafe(self._record_failures, reports)
        except RuntimeError:
            logger.debug("sqlite engine: event loop closed; failure reports dropped")

    @staticmethod
    def _resolve(waiters: list[Sync], error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for waiter in waiters:
            by_loop.setdefault(waiter.loop, []).append(waiter.future)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(settle, futures, error)
            except RuntimeError:
                # the loop is closed: nobody can be waiting on these futures any more
                logger.debug("sqlite engine: sync waiter's event loop is closed")
