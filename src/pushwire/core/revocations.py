"""Which credentials stopped being valid (`Revocations`): tokens revoked, expired or removed
with their user, users removed (or removed and made again), push devices removed; each told
once to the listeners that close the connections they authenticated (MQTT, HTTP streams).

The auth service hands it every new snapshot of the store (`compare`) and asks it, on each
watch tick, whether a token expired since (`check_expiry`); `next_expiry` lets the watch
loop sleep until then when the store reports its changes itself."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pushwire.model import AuthSnapshot

log = logging.getLogger("pushwire.auth")

RevokedCallback = Callable[[str], None]
UserRemovedCallback = Callable[[str], None]


class Revocations:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.revoked_callbacks: list[RevokedCallback] = []
        self.user_removed_callbacks: list[UserRemovedCallback] = []
        self._dead_tokens: set[str] = set()  # revoked/expired/removed, already reported
        self.next_expiry = float("inf")

    def compare(self, old: AuthSnapshot, snap: AuthSnapshot) -> None:
        """Report what `snap` no longer lets in that `old` did (nothing for the first
        snapshot: no connection was authenticated before it)."""
        first = old.generation < 0
        now = self.clock()
        dead: list[str] = []
        for token_id, token in snap.tokens.items():
            if not token.active(now) and token_id not in self._dead_tokens:
                self._dead_tokens.add(token_id)
                if not first:
                    dead.append(token_id)
        for token_id in old.tokens:
            if token_id not in snap.tokens and token_id not in self._dead_tokens:
                dead.append(token_id)  # removed with its user
        self._dead_tokens.intersection_update(snap.tokens)
        removed = [
            name
            for name, user in old.users.items()
            if name not in snap.users or snap.users[name].created != user.created
        ]
        self.next_expiry = min(
            (t.expires for t in snap.tokens.values() if t.expires is not None and t.active(now)),
            default=float("inf"),
        )
        for token_id in dead:
            self._fire(self.revoked_callbacks, token_id, "revoked")
        for name in removed:
            self._fire(self.user_removed_callbacks, name, "user_removed")

    def check_expiry(self, snap: AuthSnapshot) -> None:
        """Report the tokens of `snap` that expired since the last look."""
        now = self.clock()
        if now < self.next_expiry:
            return
        expired: list[str] = []
        nxt = float("inf")
        for token_id, token in snap.tokens.items():
            if token.revoked is not None or token.expires is None:
                continue
            if token.expires <= now:
                if token_id not in self._dead_tokens:
                    self._dead_tokens.add(token_id)
                    expired.append(token_id)
            else:
                nxt = min(nxt, token.expires)
        self.next_expiry = nxt
        for token_id in expired:
            log.info("token %s expired", token_id)
            self._fire(self.revoked_callbacks, token_id, "revoked")

    def device_removed(self, device_id: str) -> None:
        """A push device was removed: its connections end as a removed user's do."""
        self._fire(self.user_removed_callbacks, device_id, "device_removed")

    @staticmethod
    def _fire(callbacks: Sequence[Callable[[str], None]], value: str, what: str) -> None:
        for callback in list(callbacks):
            try:
                callback(value)
            except Exception:
                log.exception("auth: %s callback failed", what)
