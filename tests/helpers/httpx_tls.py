"""One default TLS context for every httpx client the tests make.

`httpx.get/post(...)` build a Client per call, and each Client builds an `ssl.SSLContext`
and loads certifi's CA bundle into it: ~25 ms of CPU, even for plain http:// URLs. Tests
poll with such calls (until a server shows a state), so on a loaded 2-core machine that CPU
came out of the servers under test and pushed slow tests into their timeout. An SSLContext
may be shared by any number of connections; clients that bring their own context or options
(`verify=ctx`, a client certificate, `verify=False`) are not touched."""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx
import httpx._transports.default as _default_transport

_create = httpx.create_ssl_context  # what the transports call, by their module's name


@functools.cache
def _shared_default() -> ssl.SSLContext:
    return _create()


def _create_ssl_context(
    verify: Any = True, cert: Any = None, trust_env: bool = True
) -> ssl.SSLContext:
    if verify is True and cert is None and trust_env:
        return _shared_default()
    return _create(verify=verify, cert=cert, trust_env=trust_env)


def share_default_tls_context() -> None:
    """Make httpx's transports reuse one default context (idempotent)."""
    setattr(_default_transport, "create_ssl_context", _create_ssl_context)  # noqa: B010
