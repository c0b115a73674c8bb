"""Topic access control: rules, their evaluation, and the filter-subset test.

A rule grants (`allow`) or refuses (`deny`) `read`, `write` or `readwrite` on the topics a
filter matches, to one subject: a user, a role, anonymous clients, or all clients. Filters
use the MQTT wildcards (`+`, `#`) and two substitutions: `%u` (the username) and `%c` (the
client id). Evaluation for one identity:

1. the rules that apply to it are those of its username, of each of its roles, the
   `anonymous` rules when it has no username, and the `all` rules;
2. among them, the rules that match: for a topic (publish, delivery) the rule's filter
   matches the topic; for a subscription filter the rule's filter COVERS it (every topic the
   subscription can match is matched by the rule); `$share/group/f` is checked on `f`;
3. a matching `deny` wins over any `allow`; a matching `allow` grants;
4. when no rule matches, the defaults: `$SYS` topics are readable by the `admin` role (by
   every authenticated identity with `sys_readable`) and writable by nobody; any other
   topic is readable and writable when the store holds no rules at all (open until
   configured), refused once it holds any (default deny).

Device topics (`devices/...`, the push gateway's, docs/gateway.md) are reserved like `$SYS`:
an identity with the `device` role (a registered device, username = its device id) reads
and writes `devices/<its id>/#` and nothing else, whatever the rules say; for everybody
else a rule grants a device topic only when its filter names `devices` as its first level
(an `allow read #` does not), and without such a rule device topics are readable by the
`admin` role and writable by nobody (the gateway publishes pushes itself).

A subscription may be granted by a wide rule while a narrower deny rule exists (allow read
`#`, deny read `secret/#`, subscribe `#`): the subscription is accepted and the transports
check `receive` for each topic at delivery time. `CompiledAcl` (the rules of one identity,
with `%u`/`%c` already substituted) is what the auth service caches per connection.

Substitution never widens access. A rule using `%u` never applies to anonymous clients (nor
`%c` to a connection without a client id). A username or client id containing `+`, `#`, `/`
or U+0000, or one that would turn the rule into a `$` topic, makes an allow rule not match,
and turns the level of a deny rule that holds it into `+` (the deny then covers what it
covers for every well-behaved name).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args

from pushwire.core.topics import TopicError, matches, split_shared, validate_filter

SubjectKind = Literal["user", "role", "anonymous", "all"]
Access = Literal["allow", "deny"]
Permission = Literal["read", "write", "readwrite"]
Action = Literal["publish", "subscribe", "receive"]

SUBJECT_KINDS: Final[tuple[str, ...]] = get_args(SubjectKind)
ACCESSES: Final[tuple[str, ...]] = get_args(Access)
PERMISSIONS: Final[tuple[str, ...]] = get_args(Permission)

ADMIN_ROLE: Final = "admin"
DEVICE_ROLE: Final = "device"
DEVICES_LEVEL: Final = "devices"
SYS_LEVEL: Final = "$SYS"
_UNSAFE_SUBSTITUTION: Final = frozenset("+#/\x00")
_PLACEHOLDER: Final = re.compile("%[uc]")


class AclError(ValueError):
    """A rule (or a rule as written in a config file) that makes no sense."""


def is_sys(topic_or_filter: str) -> bool:
    """True for `$SYS` and everything below it."""
    return topic_or_filter == SYS_LEVEL or topic_or_filter.startswith("$SYS/")


def is_device_topic(topic_or_filter: str) -> bool:
    """True for the push gateway's reserved `devices` tree."""
    return topic_or_filter == DEVICES_LEVEL or topic_or_filter.startswith("devices/")


def device_filter(device_id: str) -> str | None:
    """The one filter a device may use, `devices/<id>/#`; None for an unsafe id."""
    if not _safe_value(device_id) or device_id.startswith("$"):
        return None
    return f"{DEVICES_LEVEL}/{device_id}/#"


@dataclass(frozen=True, slots=True)
class AclRule:
    subject_kind: SubjectKind
    subject: str | None
    access: Access
    permission: Permission
    filter: str
    id: int | None = None

    def __post_init__(self) -> None:
        if self.subject_kind not in SUBJECT_KINDS:
            raise AclError(f"subject kind must be one of {', '.join(SUBJECT_KINDS)}")
        if self.subject_kind in ("user", "role"):
            if not self.subject:
                raise AclError(f"a {self.subject_kind} rule needs a {self.subject_kind} name")
        elif self.subject is not None:
            raise AclError(f"an {self.subject_kind!r} rule takes no subject name")
        if self.access not in ACCESSES:
            raise AclError("access must be 'allow' or 'deny'")
        if self.permission not in PERMISSIONS:
            raise AclError("permission must be 'read', 'write' or 'readwrite'")
        if self.filter.startswith("$share/"):
            raise AclError("rules name the filter, not the $share/group/ prefix")
        try:
            validate_filter(self.filter)
        except TopicError as exc:
            raise AclError(f"bad filter {self.filter!r}: {exc}") from None

    @property
    def key(self) -> tuple[str, str | None, str, str, str]:
        """What the rule says, without its id (two rules with one key are duplicates)."""
        return (self.subject_kind, self.subject, self.access, self.permission, self.filter)

    @property
    def reads(self) -> bool:
        return self.permission != "write"

    @property
    def writes(self) -> bool:
        return self.permission != "read"

    def with_id(self, rule_id: int | None) -> AclRule:
        return dataclasses.replace(self, id=rule_id)

    def describe_subject(self) -> str:
        if self.subject_kind in ("user", "role"):
            return f"{self.subject_kind} {self.subject}"
        return self.subject_kind

    def __str__(self) -> str:
        return f"{self.describe_subject()}: {self.access} {self.permission} {self.filter}"

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> AclRule:
        """A rule from a TOML `[[acl]]` table: exactly one of `user = "name"`,
        `role = "name"`, `anonymous = true`, `all = true`; plus `access`, `permission`,
        `filter`."""
        allowed = {"user", "role", "anonymous", "all", "access", "permission", "filter"}
        unknown = set(entry) - allowed
        if unknown:
            raise AclError(f"unknown acl keys: {', '.join(sorted(unknown))}")
        subjects = [k for k in ("user", "role", "anonymous", "all") if k in entry]
        if len(subjects) != 1:
            raise AclError("an acl entry needs exactly one of user, role, anonymous, all")
        kind = subjects[0]
        subject: str | None
        if kind in ("user", "role"):
            subject = entry[kind]
            if not isinstance(subject, str):
                raise AclError(f"acl {kind} must be a string")
        else:
            if entry[kind] is not True:
                raise AclError(f"acl {kind} must be true")
            subject = None
        for k in ("access", "permission", "filter"):
            if not isinstance(entry.get(k), str):
                raise AclError(f"acl entry needs a string {k!r}")
        return cls(
            subject_kind=cast(SubjectKind, kind),
            subject=subject,
            access=cast(Access, entry["access"]),
            permission=cast(Permission, entry["permission"]),
            filter=entry["filter"],
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def substitute(
    template: str, username: str | None, client_id: str | None, *, deny: bool = False
) -> str | None:
    """`template` with `%u`/`%c` replaced, or None when the rule must not match.

    A missing value (anonymous for `%u`; an empty string counts as missing) makes the rule
    not match. An unsafe value (containing `+`, `#`, `/` or U+0000, or one that would turn
    the filter into a `$` topic) makes an allow rule not match; for a deny rule (`deny=True`)
    the level holding it becomes `+` instead, so the deny still covers what it covers for
    every well-behaved name: a client cannot escape a deny by choosing an odd client id."""
    if "%" not in template:
        return template
    values = {"%u": username, "%c": client_id}
    levels = template.split("/")
    for i, level in enumerate(levels):
        if "%" not in level:
            continue
        used = [values[p] for p in _PLACEHOLDER.findall(level)]
        if not used:
            continue
        if not all(used):
            return None
        if all(_safe_value(cast(str, v)) for v in used):
            # both at once: a value containing "%c" is not substituted again
            levels[i] = _PLACEHOLDER.sub(lambda m: cast(str, values[m.group(0)]), level)
        elif deny:
            levels[i] = "+"
        else:
            return None
    if levels[0].startswith("$") and not template.startswith("$"):
        # a name starting with '$' must not move a rule into $SYS & co.
        if not deny:
            return None
        levels[0] = "+"
    return "/".join(levels)


def _safe_value(value: str) -> bool:
    return _UNSAFE_SUBSTITUTION.isdisjoint(value)


def covers(wide: str, narrow: str) -> bool:
    """True when every topic that filter `narrow` matches is matched by filter `wide`.

    Both must be valid filters (no `$share/` prefix). Level by level: `#` in `wide` covers
    the rest (and, like `matches`, the parent level); `+` covers any single level but not a
    `#`; a literal covers only the same literal. A filter starting with a wildcard matches no
    `$` topic, so it cannot cover a filter whose first level is a `$` literal."""
    w = wide.split("/")
    n = narrow.split("/")
    if w[0] in ("+", "#") and n[0] not in ("+", "#") and n[0].startswith("$"):
        return False
    for i, level in enumerate(w):
        if level == "#":
            return True
        if i >= len(n):
            return False  # `narrow` matches a topic that ends before this level
        other = n[i]
        if other == "#":
            return False  # `narrow` matches the parent level; `wide` needs this level
        if level == "+":
            continue
        if other != level:  # a literal covers neither another literal nor '+'
            return False
    return len(w) == len(n)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    rule_id: int | None = None

    def __bool__(self) -> bool:
        return self.allowed


_ALLOW_OPEN: Final = Decision(True, "allowed: no acl rules are configured")
_ALLOW_SYS_ADMIN: Final = Decision(True, "allowed: the admin role may read $SYS")
_DENY_SYS_READ: Final = Decision(False, "$SYS topics are readable by the admin role only")
_ALLOW_SYS_READABLE: Final = Decision(True, "allowed: sys_readable lets every user read $SYS")
_DENY_SYS_WRITE: Final = Decision(False, "$SYS topics are not writable")
_DENY_BAD_TOPIC: Final = Decision(False, "invalid topic name")
_DENY_BAD_FILTER: Final = Decision(False, "invalid topic filter")
_ALLOW_OWN_DEVICE: Final = Decision(True, "allowed: a device's own devices/<id>/# topics")
_DENY_OTHER_THAN_OWN: Final = Decision(
    False, "a device may use only its own devices/<device id>/# topics"
)
_ALLOW_DEVICES_ADMIN: Final = Decision(True, "allowed: the admin role may read device topics")
_DENY_DEVICES_READ: Final = Decision(
    False, "device topics are readable by their device and the admin role only"
)
_DENY_DEVICES_WRITE: Final = Decision(False, "device topics are written by the push gateway only")

# (filter with %u/%c substituted, rule id)
_Compiled = tuple[str, int | None]


class CompiledAcl:
    """The rules that apply to one identity, substituted, split by access and permission."""

    __slots__ = (
        "confined",
        "is_admin_role",
        "open",
        "read_allow",
        "read_deny",
        "sys_readable",
        "version",
        "write_allow",
        "write_deny",
    )

    def __init__(
        self,
        rules: Iterable[AclRule],
        *,
        username: str | None,
        client_id: str | None,
        is_admin_role: bool,
        open_: bool,
        version: int = 0,
        device: bool = False,
        sys_readable: bool = False,
    ) -> None:
        # a device: only its own devices/<id>/# (an empty filter list: nothing at all)
        self.confined: list[str] | None = None
        if device:
            own = device_filter(username) if username else None
            self.confined = [own] if own else []
        self.read_allow: list[_Compiled] = []
        self.read_deny: list[_Compiled] = []
        self.write_allow: list[_Compiled] = []
        self.write_deny: list[_Compiled] = []
        self.is_admin_role = is_admin_role
        self.sys_readable = sys_readable  # $SYS (and only $SYS) readable as by the admin role
        self.open = open_  # no rules in the store: allow by default
        self.version = version
        for rule in rules:
            flt = substitute(rule.filter, username, client_id, deny=rule.access == "deny")
            if flt is None:
                continue
            entry = (flt, rule.id)
            if rule.reads:
                (self.read_allow if rule.access == "allow" else self.read_deny).append(entry)
            if rule.writes:
                (self.write_allow if rule.access == "allow" else self.write_deny).append(entry)

    def publish(self, topic: str) -> Decision:
        """May this identity publish to topic name `topic`?"""
        if not topic or "+" in topic or "#" in topic:
            return _DENY_BAD_TOPIC
        if self.confined is not None:
            return self._confined(topic, matches)
        device_topic = is_device_topic(topic)
        for flt, rule_id in self.write_deny:
            if matches(flt, topic):
                return Decision(False, f"denied by acl rule {rule_id}", rule_id)
        for flt, rule_id in self.write_allow:
            if matches(flt, topic) and (not device_topic or is_device_topic(flt)):
                return Decision(True, f"allowed by acl rule {rule_id}", rule_id)
        if is_sys(topic):
            return _DENY_SYS_WRITE
        if device_topic:
            return _DENY_DEVICES_WRITE
        if self.open:
            return _ALLOW_OPEN
        return Decision(False, f"no acl rule allows writing to {topic!r}")

    def receive(self, topic: str) -> Decision:
        """May this identity be sent a message published to `topic`?"""
        if self.confined is not None:
            return self._confined(topic, matches)
        device_topic = is_device_topic(topic)
        for flt, rule_id in self.read_deny:
            if matches(flt, topic):
                return Decision(False, f"denied by acl rule {rule_id}", rule_id)
        for flt, rule_id in self.read_allow:
            if matches(flt, topic) and (not device_topic or is_device_topic(flt)):
                return Decision(True, f"allowed by acl rule {rule_id}", rule_id)
        return self._read_default(topic)

    def subscribe(self, flt: str) -> Decision:
        """May this identity subscribe to `flt` (`$share/group/f` is checked on `f`)?"""
        try:
            _, flt = split_shared(flt)
            validate_filter(flt)
        except TopicError:
            return _DENY_BAD_FILTER
        if self.confined is not None:
            return self._confined(flt, covers)
        device_filter_ = is_device_topic(flt)
        for rule_flt, rule_id in self.read_deny:
            if covers(rule_flt, flt):
                return Decision(False, f"denied by acl rule {rule_id}", rule_id)
        for rule_flt, rule_id in self.read_allow:
            if covers(rule_flt, flt) and (not device_filter_ or is_device_topic(rule_flt)):
                return Decision(True, f"allowed by acl rule {rule_id}", rule_id)
        return self._read_default(flt)

    def _confined(self, topic_or_filter: str, test: Callable[[str, str], bool]) -> Decision:
        assert self.confined is not None
        if any(test(own, topic_or_filter) for own in self.confined):
            return _ALLOW_OWN_DEVICE
        return _DENY_OTHER_THAN_OWN

    def _read_default(self, topic_or_filter: str) -> Decision:
        if is_sys(topic_or_filter):
            if self.is_admin_role:
                return _ALLOW_SYS_ADMIN
            return _ALLOW_SYS_READABLE if self.sys_readable else _DENY_SYS_READ
        if is_device_topic(topic_or_filter):
            return _ALLOW_DEVICES_ADMIN if self.is_admin_role else _DENY_DEVICES_READ
        if self.open:
            return _ALLOW_OPEN
        return Decision(False, f"no acl rule allows reading {topic_or_filter!r}")


class Acl:
    """The current rule set, indexed by subject; `version` changes with every new set."""

    def __init__(
        self,
        rules: Iterable[AclRule] = (),
        *,
        admin_role: str = ADMIN_ROLE,
        sys_readable: bool = False,
    ) -> None:
        self.admin_role = admin_role
        # `sys_readable`: every authenticated identity (one with a username) may read $SYS,
        # as the admin role may; deny rules still apply
        self.sys_readable = sys_readable
        self.version = 0
        self._rules: tuple[AclRule, ...] = ()
        self._all: list[tuple[int, AclRule]] = []
        self._anonymous: list[tuple[int, AclRule]] = []
        self._users: dict[str, list[tuple[int, AclRule]]] = {}
        self._roles: dict[str, list[tuple[int, AclRule]]] = {}
        self.set_rules(rules)

    @property
    def rules(self) -> tuple[AclRule, ...]:
        return self._rules

    def set_rules(self, rules: Iterable[AclRule]) -> bool:
        """Replace the rule set; True (and a new version) when it differs from the last."""
        new = tuple(rules)
        if new == self._rules and self.version:
            return False
        self._rules = new
        self._all, self._anonymous = [], []
        self._users, self._roles = {}, {}
        for pos, rule in enumerate(new):
            entry = (pos, rule)
            if rule.subject_kind == "all":
                self._all.append(entry)
            elif rule.subject_kind == "anonymous":
                self._anonymous.append(entry)
            elif rule.subject_kind == "user":
                self._users.setdefault(cast(str, rule.subject), []).append(entry)
            else:
                self._roles.setdefault(cast(str, rule.subject), []).append(entry)
        self.version += 1
        return True

    def applicable(self, username: str | None, roles: Iterable[str]) -> list[AclRule]:
        """The rules that apply to an identity, in rule-set order."""
        found = list(self._all)
        if username is None:
            found.extend(self._anonymous)
        else:
            found.extend(self._users.get(username, ()))
        for role in set(roles):
            found.extend(self._roles.get(role, ()))
        found.sort(key=lambda entry: entry[0])
        return [rule for _, rule in found]

    def compile(
        self, username: str | None, roles: Iterable[str], client_id: str | None
    ) -> CompiledAcl:
        roles = frozenset(roles)
        return CompiledAcl(
            self.applicable(username, roles),
            username=username,
            client_id=client_id,
            is_admin_role=self.admin_role in roles,
            open_=not self._rules,
            version=self.version,
            device=DEVICE_ROLE in roles,
            sys_readable=self.sys_readable and username is not None,
        )

    # one-off checks (tests, admin tools); the hot paths keep a CompiledAcl per connection

    def can_publish(
        self, username: str | None, roles: Iterable[str], client_id: str | None, topic: str
    ) -> bool:
        return self.compile(username, roles, client_id).publish(topic).allowed

    def can_subscribe(
        self, username: str | None, roles: Iterable[str], client_id: str | None, flt: str
    ) -> bool:
        return self.compile(username, roles, client_id).subscribe(flt).allowed

    def can_receive(
        self, username: str | None, roles: Iterable[str], client_id: str | None, topic: str
    ) -> bool:
        return self.compile(username, roles, client_id).receive(topic).allowed
