"""The topic rights of one identity on one client id (`Permissions`): the ACL's answer,
narrowed by the token's scope, cached per topic."""

from __future__ import annotations

from pushwire.core.acl import Acl, CompiledAcl, Decision, covers, substitute
from pushwire.core.identity import Identity
from pushwire.core.scope import SCOPE_KINDS
from pushwire.core.topics import matches, split_shared


class Permissions:
    """The topic rights of one identity on one client id, with cached answers.

    Transports keep one per connection (`AuthService.permissions`) and call it for every
    PUBLISH (`can_publish`), SUBSCRIBE (`can_subscribe`) and delivery (`can_receive`). The
    compiled rules and the per-topic caches are rebuilt when the rule set changes (a version
    counter); the caches are bounded (oldest entry out)."""

    __slots__ = (
        "_acl",
        "_cache_size",
        "_compiled",
        "_pub",
        "_read_scope",
        "_recv",
        "_scoped",
        "_write_scope",
        "client_id",
        "identity",
    )

    def __init__(
        self, acl: Acl, identity: Identity, client_id: str | None = None, cache_size: int = 4096
    ) -> None:
        self._acl = acl
        self.identity = identity
        self.client_id = client_id
        self._cache_size = max(1, cache_size)
        self._pub: dict[str, bool] = {}
        self._recv: dict[str, bool] = {}
        self._compiled: CompiledAcl = acl.compile(identity.username, identity.roles, client_id)
        # a token scope restricts topics to its read/write entries (a scope of only
        # "admin" grants no topic at all); no scope: the user's full rights
        self._scoped = bool(identity.scope)
        self._read_scope: list[str] = []
        self._write_scope: list[str] = []
        for entry in identity.scope:
            kind, _, flt = entry.partition(":")
            if kind not in SCOPE_KINDS:
                continue
            concrete = substitute(flt, identity.username, client_id)
            if concrete is None:
                continue
            if kind != "write":
                self._read_scope.append(concrete)
            if kind != "read":
                self._write_scope.append(concrete)

    def _fresh(self) -> None:
        if self._compiled.version != self._acl.version:
            self._compiled = self._acl.compile(
                self.identity.username, self.identity.roles, self.client_id
            )
            self._pub.clear()
            self._recv.clear()

    def check_publish(self, topic: str) -> Decision:
        self._fresh()
        decision = self._compiled.publish(topic)
        if (
            decision.allowed
            and self._scoped
            and not any(matches(f, topic) for f in self._write_scope)
        ):
            return Decision(False, f"the token's scope does not allow writing to {topic!r}")
        return decision

    def check_subscribe(self, flt: str) -> Decision:
        self._fresh()
        decision = self._compiled.subscribe(flt)
        if decision.allowed and self._scoped:
            _, inner = split_shared(flt)  # valid: the ACL check above parsed it
            if not any(covers(f, inner) for f in self._read_scope):
                return Decision(False, f"the token's scope does not allow reading {flt!r}")
        return decision

    def check_receive(self, topic: str) -> Decision:
        self._fresh()
        decision = self._compiled.receive(topic)
        if (
            decision.allowed
            and self._scoped
            and not any(matches(f, topic) for f in self._read_scope)
        ):
            return Decision(False, f"the token's scope does not allow reading {topic!r}")
        return decision

    def can_publish(self, topic: str) -> bool:
        # per message (MQTT): the version check of `_fresh` inline, then the cached answer
        if self._compiled.version != self._acl.version:
            self._fresh()
        cached = self._pub.get(topic)
        if cached is None:
            cached = self.check_publish(topic).allowed
            self._remember(self._pub, topic, cached)
        return cached

    def can_subscribe(self, flt: str) -> bool:
        return self.check_subscribe(flt).allowed

    def can_receive(self, topic: str) -> bool:
        # per message (MQTT): the version check of `_fresh` inline, then the cached answer
        if self._compiled.version != self._acl.version:
            self._fresh()
        cached = self._recv.get(topic)
        if cached is None:
            cached = self.check_receive(topic).allowed
            self._remember(self._recv, topic, cached)
        return cached

    def _remember(self, cache: dict[str, bool], topic: str, allowed: bool) -> None:
        if len(cache) >= self._cache_size:
            del cache[next(iter(cache))]  # oldest first (dicts keep insertion order)
        cache[topic] = allowed
