"""Run one server process to its end and turn start-up failures into exit statuses."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pushwire.config import Settings

log = logging.getLogger("pushwire")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def event_loop_runner() -> Any:
    """uvloop's runner when it is installed (faster sockets), asyncio's otherwise."""
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def run_server(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT. 0 after a clean stop; 2 when the configured engine is
    not available (a set-up error: restarting cannot help); 1 for other start-up errors, and
    when the shared store (Redis) lost its data."""
    from pushwire.server import DataDirInUse, EngineUnavailable, StoreLost, serve
    from pushwire.tls import TLSConfigError

    try:
        event_loop_runner()(serve(settings))
    except EngineUnavailable as exc:
        log.error("cannot start: %s", exc)
        return 2
    except (DataDirInUse, TLSConfigError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    except StoreLost:
        return 1  # logged when it happened; a restart loads what the store has now
    return 0
