"""The process heap after start-up: settled once, so the cyclic garbage collector stops
re-scanning it.

A started server holds hundreds of thousands of long-lived objects (modules, FastAPI's
routes, the hub, restored sessions). CPython's oldest-generation collections walk all of
them, and a steady stream of short-lived objects (one connection per device reconnect)
keeps triggering those collections: in a connect storm they were about a tenth of the
CPU per connection (bench/README.md). `gc.freeze()` moves what is alive now into the
permanent generation, which the collector skips; it is still freed by reference counting.
"""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Collect what start-up left behind, then freeze the rest (call once, after start)."""
    gc.collect()
    gc.freeze()
