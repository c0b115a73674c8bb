"""The storage engine protocol (now in pushwire.ports) and its stored types (pushwire.model),
re-exported here for the engines and callers that import them from this module.

What must outlive a process goes through the engine.

The hub keeps live state in memory and is the source of truth while running; an engine is
a write-behind journal of that state plus a loader for start-up. Writes are non-blocking
calls applied in call order; `sync()` resolves once every write issued before it is durable.
Engines batch writes (group commit), so many `sync()` callers in one event-loop tick share
one transaction. Pushwire acknowledges a QoS 1/2 publish only after `sync()` when the
message went into a persistent session (write before you acknowledge).
"""

from __future__ import annotations

from pushwire.model import (
    FailureListener,
    QueueState,
    StoredConsumer,
    StoredLog,
    StoredLogEntry,
    StoredQueueEntry,
    StoredSession,
    StoredSubscription,
    WriteError,
    WriteFailure,
)
from pushwire.ports import Engine

__all__ = [
    "Engine",
    "FailureListener",
    "QueueState",
    "StoredConsumer",
    "StoredLog",
    "StoredLogEntry",
    "StoredQueueEntry",
    "StoredSession",
    "StoredSubscription",
    "WriteError",
    "WriteFailure",
]
