"""What an HTTP connection's single deadline is for, and how long a kept-alive one idles."""

from __future__ import annotations

_HEAD, _IDLE = 1, 2  # what the connection's deadline is for
KEEP_ALIVE_TIMEOUT = 5.0  # seconds an idle kept-alive connection stays open (as uvicorn)
