"""Is a peer address this host? (anonymous access in mode "auto", the device API's local
calls)."""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1); False if unparseable.

    Cached: parsing the address (ipaddress) cost ~7% of a connection storm's CPU, for the
    same few peer strings every time."""
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # IPv6 zone index
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback
