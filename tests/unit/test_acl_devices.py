"""The reserved device tree in the ACL: devices are confined to devices/<id>/#, everybody
else reads device topics only with the admin role or a rule that names `devices`."""

from __future__ import annotations

from pushwire.core.acl import DEVICE_ROLE, Acl, AclRule


def _rule(kind: str, subject: str | None, access: str, perm: str, flt: str) -> AclRule:
    return AclRule(kind, subject, access, perm, flt)  # type: ignore[arg-type]


def test_a_device_is_confined_to_its_own_tree_whatever_the_rules() -> None:
    for acl in (Acl(), Acl([_rule("all", None, "allow", "readwrite", "#")])):
        dev = acl.compile("dev_a", {DEVICE_ROLE}, "dev_a")
        assert dev.subscribe("devices/dev_a/#").allowed
        assert dev.receive("devices/dev_a/app_1").allowed
        assert not dev.subscribe("devices/dev_b/#").allowed
        assert not dev.subscribe("devices/+/app_1").allowed
        assert not dev.subscribe("#").allowed
        assert not dev.receive("devices/dev_b/app_1").allowed
        assert not dev.receive("news").allowed
        assert not dev.publish("devices/dev_b/app_1").allowed
        assert not dev.publish("news").allowed


def test_a_device_id_with_wildcards_gets_nothing() -> None:
    dev = Acl().compile("dev_+", {DEVICE_ROLE}, None)
    assert not dev.subscribe("devices/dev_+/#").allowed
    assert not dev.receive("devices/dev_x/a").allowed


def test_ordinary_identities_do_not_read_device_topics_by_default() -> None:
    open_acl = Acl()
    anon = open_acl.compile(None, (), None)
    assert anon.subscribe("news/#").allowed
    assert anon.subscribe("#").allowed  # allowed, but delivery is checked per topic
    assert not anon.receive("devices/dev_a/app_1").allowed
    assert not anon.subscribe("devices/#").allowed
    assert not anon.publish("devices/dev_a/app_1").allowed
    admin = open_acl.compile("root", {"admin"}, None)
    assert admin.subscribe("devices/#").allowed
    assert admin.receive("devices/dev_a/app_1").allowed
    assert not admin.publish("devices/dev_a/app_1").allowed


def test_a_wide_allow_rule_does_not_reach_devices_but_a_named_one_does() -> None:
    acl = Acl(
        [
            _rule("all", None, "allow", "readwrite", "#"),
            _rule("user", "ops", "allow", "read", "devices/+/app_1"),
        ]
    )
    bob = acl.compile("bob", (), None)
    assert bob.receive("news").allowed
    assert not bob.receive("devices/dev_a/app_1").allowed
    assert not bob.subscribe("devices/dev_a/#").allowed
    assert not bob.publish("devices/dev_a/app_1").allowed
    ops = acl.compile("ops", (), None)
    assert ops.receive("devices/dev_a/app_1").allowed
    assert not ops.receive("devices/dev_a/app_2").allowed
