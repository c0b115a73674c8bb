"""Log lines that an attacker can trigger at will are throttled: a flood of refused
connections must not become a flood of log lines (disk, I/O, the operator's attention)."""

from __future__ import annotations

import logging
import time


class ThrottledLog:
    """At most one line per `interval` seconds per key; the next line says how many were
    suppressed meanwhile."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, max_keys: int = 1024):
        self._logger = logger
        self._interval = interval
        self._max_keys = max_keys
        self._last: dict[str, tuple[float, int]] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval:
            self._last[key] = (last[0], last[1] + 1)
            return
        suppressed = last[1] if last is not None else 0
        if len(self._last) >= self._max_keys:
            self._last.clear()
        self._last[key] = (now, 0)
        if suppressed:
            msg += " (%d similar suppressed)"
            args = (*args, suppressed)
        self._logger.log(level, msg, *args)
