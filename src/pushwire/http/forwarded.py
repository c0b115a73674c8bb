"""The client behind a reverse proxy: `X-Forwarded-For` and `X-Forwarded-Proto` from the
proxies the `forwarded_allow_ips` setting trusts, the rule uvicorn's proxy-header
middleware applies (the owned protocol applies it natively on the hot paths, the ASGI app
through that middleware, configured with the same setting: one rule for both).

From a trusted peer, the client is the last address of the `X-Forwarded-For` chain that
is not itself a trusted proxy (each proxy appends the address it saw), or the first one when
all are trusted; `X-Forwarded-Proto` (http, https, ws, wss) becomes the scheme. From any other peer
both headers are ignored: anyone can send them."""

from __future__ import annotations

import functools
import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The peers whose forwarding headers are believed: addresses, networks (`10.0.0.0/8`),
    other literals compared as text, or `*` for any peer (comma-separated)."""

    def __init__(self, spec: str) -> None:
        items = [item.strip() for item in spec.split(",") if item.strip()]
        self.any = "*" in items
        self.addresses: set[Address] = set()
        self.networks: list[Network] = []
        self.literals: set[str] = set()
        for item in items:
            try:
                if "/" in item:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(item))
            except ValueError:
                self.literals.add(item)
        # a peer's answer is reused: a proxy connects from the same few addresses (bounded)
        self.trusts = functools.lru_cache(maxsize=4096)(self._trusts)

    def __contains__(self, host: str | None) -> bool:
        if self.any:
            return True
        if not host or len(host) > 253:
            return False
        return self.trusts(host)

    def _trusts(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        return ip in self.addresses or any(ip in net for net in self.networks)

    def client(
        self, peer: tuple[str, int] | None, headers: list[tuple[bytes, bytes]]
    ) -> tuple[tuple[str, int] | None, str | None]:
        """(client, scheme) of a request from `peer`: the forwarded ones when the peer is
        trusted and sent them; else `peer` and None (the connection's scheme)."""
        if peer is None or peer[0] not in self:
            return peer, None
        proto: bytes | None = None
        chain: list[bytes] = []
        for name, value in headers:
            if name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-for":
                chain.append(value)
        scheme: str | None = None
        if proto is not None:
            given = proto.decode("latin-1").strip()
            if given in ("http", "https", "ws", "wss"):  # as uvicorn takes it
                scheme = given
        if not chain:
            return peer, scheme
        host, port = self._forwarded_client(b", ".join(chain).decode("latin-1"))
        # an empty header names nobody: the peer stays the client
        return ((host, port) if host else peer), scheme

    def _forwarded_client(self, header: str) -> tuple[str, int]:
        hosts = [item.strip() for item in header.split(",")]
        if self.any:
            return _host_port(hosts[0])
        for item in reversed(hosts):
            host, port = _host_port(item)
            if host not in self:
                return host, port
        return _host_port(hosts[0])  # all trusted: the client is a proxy too


def _host_port(value: str) -> tuple[str, int]:
    """`1.2.3.4`, `1.2.3.4:5678`, `[::1]:5678` -> (host, port or 0); anything else is taken
    as a host as it is (it is then trusted only as a literal)."""
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, 0
        host, rest = value[1:end], value[end + 1 :]
        if not rest:
            return host, 0
        if not rest.startswith(":"):
            return value, 0
        try:
            return host, int(rest[1:])
        except ValueError:
            return host, 0
    if value.count(":") == 1:
        host, port = value.rsplit(":", 1)
        try:
            return host, int(port)
        except ValueError:
            return value, 0
    return value, 0
