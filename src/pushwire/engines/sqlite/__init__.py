"""The SQLite engine: the embedded default store, one database file, no server to run.

Threading model. sqlite3 calls block (and fsync blocks for milliseconds), so none of them
run on the event loop. One writer thread owns the only connection. Write methods just
append an operation to a `queue.SimpleQueue` (thread-safe, lock-free for put, keeps call
order) and return. The writer blocks for the first operation, drains whatever else is
already queued (up to `batch_max`), applies it all in ONE transaction and commits: a group
commit, so the fsync cost is paid once per batch rather than once per write. `sync()` puts
a marker in the same queue; the writer resolves the marker's future after the commit of the
batch it was drained in, which covers every write queued before it. Reads (`load_*`) go
through the same queue, after the preceding writes have been committed, so they see them.

Failures. A write that cannot be stored fails alone. When a batch fails, it is rolled back
and applied again one write at a time, each inside its own SAVEPOINT: a write that fails is
rolled back to its savepoint and skipped, the others commit (see `_commit_one_by_one`).
Why retry rather than validate every write before queueing it: validation can only catch
what we thought of (a lone surrogate, an integer over 64 bits), while SQLite itself decides
what it rejects (constraints, triggers, a value it cannot bind); the retry covers all of it
and costs nothing until something fails. A log entry that cannot be stored leaves a hole
row (`log_holes`) in the same transaction, so a reader whose cursor crosses it is told of a
gap even after a restart.

Each failed write is reported as a `WriteFailure` naming its message and session, on the
event loop, before the `sync()` waiters of its batch are resolved: `write_failed(message)`
then tells each waiter whether ITS message was stored, so one client's bad write never
fails another client's publish. Only a failed write that belongs to no message or session
(log trims, consumer cursors, ...) raises `SQLiteWriteError` from `sync()`: in the waiters
of its batch, or, if the batch had none, in those of the next commit point, once. The writer
thread keeps serving later batches.

Storage. A message body is stored once per `Message.uid` in `messages` and referenced by
`queue` rows; triggers on `queue` drop the body with its last reference, so every path that
removes queue rows (queue_delete, session_delete, a queue_put replacing a seq) collects it.
Retained messages are a separate table keyed by topic holding the whole message.

Modules, one job each: schema.py (tables, version, migrations, opening the connection),
writer.py (the writer thread, its queue and the group commit), backlog.py (write-behind
backlog), failures.py (failure reports on the event loop), rows.py (row encodings),
sessions.py / retained.py / log.py (the stores), engine.py (`SQLiteEngine`, composing them).
"""

from pushwire.engines.sqlite.engine import SQLiteEngine
from pushwire.engines.sqlite.schema import SCHEMA_VERSION
from pushwire.engines.sqlite.writer import SQLiteWriteError

__all__ = ["SCHEMA_VERSION", "SQLiteEngine", "SQLiteWriteError"]
