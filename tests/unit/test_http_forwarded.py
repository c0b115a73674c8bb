"""http/forwarded.py applies uvicorn's proxy-header rule (the one the ASGI app applies with
the same `forwarded_allow_ips`): the same client for the same peer, headers and setting."""

from __future__ import annotations

import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from pushwire.http.forwarded import TrustedProxies

TRUSTED = ["127.0.0.1,::1", "10.0.0.0/8, 192.168.1.1", "*", "10.9.9.9", "unix-proxy"]
PEERS = ["127.0.0.1", "10.1.2.3", "192.168.1.1", "203.0.113.5", "::1"]
HEADERS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"x-forwarded-for", b"203.0.113.7")],
    [(b"x-forwarded-for", b"203.0.113.7:4711")],
    [(b"x-forwarded-for", b"198.51.100.1, 10.0.0.5")],
    [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", b"10.0.0.5, 127.0.0.1")],
    [(b"x-forwarded-for", b"[2001:db8::1]:443")],
    [(b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")],
    [(b"x-forwarded-for", b"")],
    [(b"x-forwarded-for", b"unix-proxy, 203.0.113.1"), (b"x-forwarded-proto", b"https")],
    [(b"x-forwarded-proto", b"wss")],
    [(b"x-forwarded-proto", b"gopher"), (b"x-forwarded-for", b"not an address")],
]


async def _uvicorn(
    trusted: str, peer: str, headers: list[tuple[bytes, bytes]]
) -> dict[str, object]:
    seen: dict[str, object] = {}

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.update(client=scope["client"], scheme=scope["scheme"])

    middleware = ProxyHeadersMiddleware(app, trusted_hosts=trusted)  # type: ignore[arg-type]
    scope = {"type": "http", "client": (peer, 5000), "scheme": "http", "headers": headers}
    await middleware(scope, None, None)  # type: ignore[arg-type]
    return seen


@pytest.mark.parametrize("trusted", TRUSTED)
@pytest.mark.parametrize("peer", PEERS)
async def test_the_same_client_and_scheme_as_uvicorn(trusted: str, peer: str) -> None:
    proxies = TrustedProxies(trusted)
    for headers in HEADERS:
        client, scheme = proxies.client((peer, 5000), headers)
        expected = await _uvicorn(trusted, peer, headers)
        assert (client, scheme or "http") == (expected["client"], expected["scheme"]), headers


def test_no_peer_is_no_client() -> None:
    assert TrustedProxies("*").client(None, [(b"x-forwarded-for", b"1.2.3.4")]) == (None, None)
