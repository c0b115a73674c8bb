"""How many failed logins an address may cost (`LoginBudget`), and the login counters.

A password or token login takes one attempt from the budget of (address, username) and
from the address's overall budget before any hashing; a successful login gives both back,
so only failures are counted. Why two: behind a reverse proxy every user shares one address,
and a budget per address alone let one user's typos (or one attacker) lock everybody out;
per (address, username), the typos lock only that username from that address. The looser
per-address budget (ten times as many failures by default) still caps password spraying over
many usernames and the argon2 work one address can cause. Failures are logged with the
username and address only; no password or token is ever logged."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pushwire.core.auth_input import log_name
from pushwire.core.auth_settings import AuthSettings, AuthStats
from pushwire.core.identity import AuthResult
from pushwire.core.ratelimit import KeyedLimiter

log = logging.getLogger("pushwire.auth")


class LoginBudget:
    """The failure budgets, keyed by (address, subject): the username, or a token id for
    bearer tokens (core/tokens.py `token_subject`)."""

    def __init__(
        self, settings: AuthSettings, stats: AuthStats, monotonic: Callable[[], float]
    ) -> None:
        self.stats = stats
        self.monotonic = monotonic
        self._log_every = settings.login_failures_window
        self._failures: KeyedLimiter[tuple[str, str]] = KeyedLimiter(
            settings.login_failures_burst / settings.login_failures_window,
            settings.login_failures_burst,
            clock=monotonic,
        )
        self._address_failures: KeyedLimiter[str] = KeyedLimiter(
            settings.login_failures_address_burst / settings.login_failures_window,
            settings.login_failures_address_burst,
            clock=monotonic,
        )
        self._rate_limit_logged: dict[tuple[str, str], float] = {}

    def take(self, attempt: tuple[str, str], username: str | None) -> AuthResult | None:
        """Take one attempt from the budget of (IP, username) and from the IP's overall
        budget; a result when either is used up (then nothing is taken from the other)."""
        peer_ip = attempt[0]
        if self._failures.try_acquire(attempt):
            if self._address_failures.try_acquire(peer_ip):
                return None
            self._failures.refund(attempt)
            retry_after = self._address_failures.retry_after(peer_ip)
            what = f"from {peer_ip} (any user)"
        else:
            retry_after = self._failures.retry_after(attempt)
            what = f"from {peer_ip} for user {log_name(username)}"
        self.stats.logins_rate_limited += 1
        now = self.monotonic()
        last = self._rate_limit_logged.get(attempt)
        if last is None or now - last >= self._log_every:
            if len(self._rate_limit_logged) > 10_000:
                self._rate_limit_logged.clear()
            self._rate_limit_logged[attempt] = now
            log.warning("too many failed logins %s: refusing them for a while", what)
        return AuthResult(
            None,
            "rate_limited",
            "too many failed logins, try again later",
            retry_after=retry_after,
        )

    def refund(self, attempt: tuple[str, str]) -> None:
        """A successful login costs no budget."""
        self._failures.refund(attempt)
        self._address_failures.refund(attempt[0])

    def failed(
        self, peer_ip: str, username: str | None, why: str, *, token: bool = False
    ) -> AuthResult:
        # the attempt's token stays taken: that is what counts failures
        self.stats.logins_failed += 1
        log.warning("login failed from %s for user %s: %s", peer_ip, log_name(username), why)
        message = "invalid or expired token" if token else "bad username or password"
        return AuthResult(None, "bad_credentials", message)

    def sweep(self) -> None:
        """Forget full budgets and old log marks (housekeeping, about once a minute)."""
        self._failures.sweep()
        self._address_failures.sweep()
        self._rate_limit_logged.clear()
