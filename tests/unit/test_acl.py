from __future__ import annotations

from typing import Any

import pytest

from pushwire.core.acl import Acl, AclError, AclRule, covers, substitute


def allow(kind: str, subject: str | None, perm: str, flt: str, rule_id: int = 0) -> AclRule:
    return AclRule(kind, subject, "allow", perm, flt, rule_id or None)  # type: ignore[arg-type]


def deny(kind: str, subject: str | None, perm: str, flt: str, rule_id: int = 0) -> AclRule:
    return AclRule(kind, subject, "deny", perm, flt, rule_id or None)  # type: ignore[arg-type]


# -- defaults ------------------------------------------------------------------------------


def test_no_rules_everything_open_but_sys() -> None:
    acl = Acl()
    for user, roles in [(None, ()), ("bob", ()), ("root", ("admin",))]:
        assert acl.can_publish(user, roles, "c", "a/b")
        assert acl.can_subscribe(user, roles, "c", "#")
        assert acl.can_receive(user, roles, "c", "a/b")
        assert not acl.can_publish(user, roles, "c", "$SYS/broker/x")  # nobody writes $SYS
    assert not acl.can_subscribe("bob", (), "c", "$SYS/#")
    assert not acl.can_receive("bob", (), "c", "$SYS/broker/uptime")
    assert not acl.can_subscribe(None, (), "c", "$SYS/broker/uptime")
    assert acl.can_subscribe("root", ("admin",), "c", "$SYS/#")
    assert acl.can_receive("root", ("admin",), "c", "$SYS/broker/uptime")


def test_any_rule_switches_to_default_deny() -> None:
    acl = Acl([allow("user", "alice", "read", "news/#")])
    assert acl.can_subscribe("alice", (), "c", "news/#")
    assert not acl.can_publish("alice", (), "c", "news/x")  # read only
    assert not acl.can_subscribe("bob", (), "c", "news/#")  # not bob's rule
    assert not acl.can_publish(None, (), "c", "a")
    # the $SYS admin default stays
    assert acl.can_subscribe("root", ["admin"], "c", "$SYS/#")
    assert not acl.can_subscribe("alice", (), "c", "$SYS/#")


def test_sys_default_can_be_overridden_by_rules() -> None:
    acl = Acl(
        [
            allow("user", "mon", "read", "$SYS/broker/uptime"),
            deny("role", "admin", "read", "$SYS/broker/clients/#"),
            allow("user", "ops", "write", "$SYS/custom/#"),
        ]
    )
    assert acl.can_receive("mon", (), "c", "$SYS/broker/uptime")
    assert not acl.can_subscribe("mon", (), "c", "$SYS/#")  # only what the rule covers
    assert not acl.can_receive("root", ["admin"], "c", "$SYS/broker/clients/connected")
    assert acl.can_receive("root", ["admin"], "c", "$SYS/broker/uptime")  # default still
    assert acl.can_subscribe("root", ["admin"], "c", "$SYS/#")  # deny is narrower
    assert not acl.can_subscribe("root", ["admin"], "c", "$SYS/broker/clients/+")
    assert acl.can_publish("ops", (), "c", "$SYS/custom/x")
    assert not acl.can_publish("ops", (), "c", "$SYS/broker/x")


def test_wildcard_rules_do_not_reach_dollar_topics() -> None:
    acl = Acl([allow("all", None, "readwrite", "#")])
    assert acl.can_publish("bob", (), "c", "anything/at/all")
    assert not acl.can_subscribe("bob", (), "c", "$SYS/#")
    assert not acl.can_publish("bob", (), "c", "$SYS/x")
    assert not acl.can_receive("bob", (), "c", "$other/x")  # '#' never matches $ topics


# -- subjects, deny wins ---------------------------------------------------------------------


def test_subjects() -> None:
    acl = Acl(
        [
            allow("user", "alice", "readwrite", "alice/#"),
            allow("role", "ops", "read", "ops/#"),
            allow("anonymous", None, "read", "public/#"),
            allow("all", None, "read", "everyone/#"),
        ]
    )
    assert acl.can_publish("alice", (), "c", "alice/x")
    assert not acl.can_publish("bob", (), "c", "alice/x")
    assert acl.can_receive("bob", ["ops"], "c", "ops/x")
    assert not acl.can_receive("bob", ["dev"], "c", "ops/x")
    assert acl.can_receive(None, (), "c", "public/x")
    assert not acl.can_receive("bob", (), "c", "public/x")  # anonymous rules: anonymous only
    for user in (None, "alice", "bob"):
        assert acl.can_receive(user, (), "c", "everyone/x")


def test_deny_overrides_allow_whatever_the_order() -> None:
    rules = [
        allow("all", None, "readwrite", "#", 1),
        deny("user", "bob", "write", "a/b", 2),
        deny("role", "guest", "readwrite", "secret/#", 3),
    ]
    for ordered in (rules, rules[::-1]):
        acl = Acl(ordered)
        assert acl.can_publish("alice", (), "c", "a/b")
        assert not acl.can_publish("bob", (), "c", "a/b")
        assert acl.can_receive("bob", (), "c", "a/b")  # deny write only
        assert not acl.can_receive("x", ["guest"], "c", "secret/plans")
        assert not acl.can_subscribe("x", ["guest"], "c", "secret/#")
        decision = acl.compile("bob", (), "c").publish("a/b")
        assert not decision.allowed and decision.rule_id == 2
        assert "rule 2" in decision.reason


def test_narrow_deny_keeps_wide_subscription_but_filters_delivery() -> None:
    acl = Acl([allow("all", None, "read", "#"), deny("all", None, "read", "secret/#")])
    assert acl.can_subscribe("u", (), "c", "#")
    assert acl.can_subscribe("u", (), "c", "+/x")
    assert not acl.can_subscribe("u", (), "c", "secret/+")
    assert not acl.can_subscribe("u", (), "c", "secret")  # secret/# matches the parent
    assert acl.can_receive("u", (), "c", "public/x")
    assert not acl.can_receive("u", (), "c", "secret/x")


def test_subscription_needs_one_rule_covering_it() -> None:
    acl = Acl([allow("all", None, "read", "a/+"), allow("all", None, "read", "b/#")])
    assert acl.can_subscribe("u", (), "c", "a/x")
    assert acl.can_subscribe("u", (), "c", "a/+")
    assert not acl.can_subscribe("u", (), "c", "a/#")  # a/+ does not cover a or a/x/y
    assert acl.can_subscribe("u", (), "c", "b/+/c")
    assert acl.can_subscribe("u", (), "c", "b")
    assert not acl.can_subscribe("u", (), "c", "#")


def test_shared_subscriptions_are_checked_on_their_filter() -> None:
    acl = Acl([allow("all", None, "read", "jobs/#")])
    assert acl.can_subscribe("u", (), "c", "$share/workers/jobs/+")
    assert not acl.can_subscribe("u", (), "c", "$share/workers/other/+")
    assert not acl.can_subscribe("u", (), "c", "$share/bad")  # malformed: refused


def test_invalid_input_is_refused() -> None:
    acl = Acl()
    assert not acl.can_publish("u", (), "c", "a/+")
    assert not acl.can_publish("u", (), "c", "")
    assert not acl.can_subscribe("u", (), "c", "a/#/b")


# -- substitutions ---------------------------------------------------------------------------


def test_username_and_client_id_substitution() -> None:
    acl = Acl(
        [
            allow("all", None, "readwrite", "users/%u/#"),
            allow("all", None, "readwrite", "clients/%c/#"),
            allow("all", None, "read", "mixed/%u-%c"),
        ]
    )
    assert acl.can_publish("alice", (), "dev1", "users/alice/inbox")
    assert not acl.can_publish("alice", (), "dev1", "users/bob/inbox")
    assert acl.can_subscribe("alice", (), "dev1", "users/alice/#")
    assert not acl.can_subscribe("alice", (), "dev1", "users/+/#")
    assert acl.can_publish("alice", (), "dev1", "clients/dev1/x")
    assert not acl.can_publish("alice", (), "dev2", "clients/dev1/x")
    assert acl.can_receive("alice", (), "dev1", "mixed/alice-dev1")


def test_percent_u_never_matches_anonymous() -> None:
    acl = Acl([allow("all", None, "readwrite", "users/%u/#")])
    assert not acl.can_publish(None, (), "c", "users/%u/x")
    assert not acl.can_publish(None, (), "c", "users/x")
    assert not acl.can_subscribe(None, (), "c", "users/#")


@pytest.mark.parametrize("evil", ["+", "#", "a/b", "x+", "", "a\x00"])
def test_substitution_cannot_widen_a_rule(evil: str) -> None:
    acl = Acl([allow("all", None, "readwrite", "users/%u/#"), allow("all", None, "read", "c/%c")])
    # a username or client id with wildcards or levels matches nothing at all
    assert not acl.can_subscribe(evil, (), evil, "users/#")
    assert not acl.can_subscribe(evil, (), evil, "users/+/x")
    assert not acl.can_publish(evil, (), evil, "users/other/x")
    assert not acl.can_receive(evil, (), evil, "c/other")
    assert substitute("users/%u/#", evil, None) is None


def test_substitution_cannot_move_a_rule_into_sys() -> None:
    acl = Acl([allow("all", None, "readwrite", "%c/#")])
    assert acl.can_publish("u", (), "dev", "dev/x")
    assert not acl.can_subscribe("u", (), "$SYS", "$SYS/#")
    assert not acl.can_publish("u", (), "$SYS", "$SYS/x")
    assert substitute("$SYS/%u", "mon", None) == "$SYS/mon"  # a literal $ rule is fine


def test_deny_rule_with_missing_value_does_not_apply() -> None:
    # a rule with %u never applies to anonymous clients, a deny rule included
    acl = Acl([allow("all", None, "read", "pub/#"), deny("all", None, "read", "pub/%u/#")])
    assert not acl.can_receive("alice", (), "c", "pub/alice/x")
    assert acl.can_receive("alice", (), "c", "pub/bob/x")
    assert acl.can_receive(None, (), "c", "pub/alice/x")


@pytest.mark.parametrize("evil", ["+", "#", "a/b", "x+y"])
def test_deny_rule_cannot_be_escaped_with_an_odd_client_id(evil: str) -> None:
    # honest clients are denied clients/<own id>/...; an odd id is denied all of them
    acl = Acl([allow("all", None, "read", "#"), deny("all", None, "read", "clients/%c/#")])
    assert not acl.can_receive("u", (), "dev1", "clients/dev1/x")
    assert acl.can_receive("u", (), "dev1", "clients/dev2/x")
    assert not acl.can_receive("u", (), evil, "clients/dev2/x")
    assert not acl.can_subscribe("u", (), evil, "clients/+/x")
    assert acl.can_receive("u", (), evil, "other/x")


def test_dollar_names_are_plain_literals_below_the_first_level() -> None:
    acl = Acl([allow("all", None, "read", "#"), deny("all", None, "read", "clients/%c/#")])
    assert not acl.can_receive("u", (), "$SYS", "clients/$SYS/x")
    assert acl.can_receive("u", (), "$SYS", "clients/dev2/x")


def test_substitution_is_not_recursive() -> None:
    assert substitute("a/%u/%c", "x%cy", "dev") == "a/x%cy/dev"
    assert substitute("a/%u-%c", "bob", "dev") == "a/bob-dev"
    assert substitute("a/%u/b", "x+", None, deny=True) == "a/+/b"
    assert substitute("%c/#", "u", "$SYS", deny=True) == "+/#"
    assert substitute("a/%x", None, None) == "a/%x"  # only %u and %c are placeholders


# -- rule objects ----------------------------------------------------------------------------


def test_rule_validation() -> None:
    with pytest.raises(AclError):
        AclRule("user", None, "allow", "read", "a")
    with pytest.raises(AclError):
        AclRule("all", "x", "allow", "read", "a")
    with pytest.raises(AclError):
        AclRule("all", None, "allow", "read", "a/#/b")
    with pytest.raises(AclError):
        AclRule("all", None, "permit", "read", "a")  # type: ignore[arg-type]
    with pytest.raises(AclError):
        AclRule("all", None, "allow", "all", "a")  # type: ignore[arg-type]
    with pytest.raises(AclError):
        AclRule("all", None, "allow", "read", "$share/g/a")


def test_rule_from_config() -> None:
    rule = AclRule.from_config(
        {"user": "bob", "access": "allow", "permission": "write", "filter": "a/#"}
    )
    assert rule == AclRule("user", "bob", "allow", "write", "a/#")
    rule = AclRule.from_config(
        {"anonymous": True, "access": "deny", "permission": "read", "filter": "#"}
    )
    assert rule.subject_kind == "anonymous" and rule.subject is None
    bad: list[dict[str, Any]] = [
        {"access": "allow", "permission": "read", "filter": "a"},
        {"user": "a", "role": "b", "access": "allow", "permission": "read", "filter": "a"},
        {"anonymous": False, "access": "allow", "permission": "read", "filter": "a"},
        {"user": "a", "access": "allow", "permission": "read", "filter": "a", "x": 1},
        {"user": "a", "access": "allow", "permission": "read"},
        {"user": 3, "access": "allow", "permission": "read", "filter": "a"},
    ]
    for entry in bad:
        with pytest.raises(AclError):
            AclRule.from_config(entry)


def test_version_changes_only_with_new_rules() -> None:
    acl = Acl()
    v = acl.version
    rules = [allow("all", None, "read", "a")]
    assert acl.set_rules(rules)
    assert acl.version == v + 1
    assert not acl.set_rules(list(rules))
    assert acl.version == v + 1
    compiled = acl.compile("u", (), "c")
    assert compiled.version == acl.version


@pytest.mark.parametrize(
    ("wide", "narrow", "expected"),
    [
        ("a/#", "a/+/b", True),
        ("a/+", "a/#", False),
        ("#", "#", True),
        ("#", "a", True),
        ("a/#", "a", True),
        ("a/+", "a", False),
        ("+/+", "a/+", True),
        ("a/b", "a/+", False),
        ("+", "$SYS", False),
        ("#", "$SYS/#", False),
        ("$SYS/#", "$SYS/a", True),
        ("+/#", "+", True),
        ("a/+/#", "a/#", False),
    ],
)
def test_covers_examples(wide: str, narrow: str, expected: bool) -> None:
    assert covers(wide, narrow) is expected


def test_sys_readable_opens_sys_to_every_authenticated_identity() -> None:
    acl = Acl(sys_readable=True)
    assert acl.can_subscribe("bob", [], None, "$SYS/#")
    assert acl.can_receive("bob", [], None, "$SYS/broker/uptime")
    assert not acl.can_subscribe(None, [], None, "$SYS/#")  # anonymous: never
    assert not acl.can_publish("bob", [], None, "$SYS/x")  # nobody writes $SYS
    assert not Acl().can_subscribe("bob", [], None, "$SYS/#")  # the default: admin only
    # it opens $SYS only: the gateway's device topics stay the admin role's
    assert not acl.can_subscribe("bob", [], None, "devices/#")
    assert not acl.can_receive("bob", [], None, "devices/d1/app")
