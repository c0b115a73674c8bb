"""The auth service's settings (from config.py, composed in server.py) and its counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pushwire.core.scram import MIN_ITERATIONS

AnonymousMode = Literal["auto", "on", "off"]


@dataclass(frozen=True, slots=True)
class AuthSettings:
    # "auto": loopback clients only, and only while no user exists; "on"; "off"
    anonymous: AnonymousMode = "auto"
    # failed logins per (IP, username): `burst` attempts, refilled over `window` seconds
    login_failures_burst: int = 10
    login_failures_window: float = 60.0
    # failed logins per IP over all usernames (spraying), refilled over the same window
    login_failures_address_burst: int = 100
    # every authenticated identity (not only the admin role) may read $SYS
    sys_readable: bool = False
    # seconds between polls of the store for changes (CLI edits, token expiry)
    watch_interval: float = 1.0
    # seconds a verified username/password pair is remembered (HTTP Basic on every request
    # would otherwise pay argon2 each time); 0 disables
    credential_cache_ttl: float = 300.0
    credential_cache_size: int = 10_000
    # per-connection topic decision cache size, and identities cached by the service
    acl_cache_size: int = 4096
    permissions_cache_size: int = 65_536
    # threads verifying passwords; None: min(4, CPUs)
    hash_workers: int | None = None
    # a token's last_used is written at most this often (seconds)
    token_touch_interval: float = 60.0
    # PBKDF2 iterations of the SCRAM-SHA-256 verifiers made when passwords are set
    scram_iterations: int = MIN_ITERATIONS


@dataclass(slots=True)
class AuthStats:
    logins_ok: int = 0
    logins_failed: int = 0
    logins_rate_limited: int = 0
    anonymous_admitted: int = 0
    anonymous_refused: int = 0
