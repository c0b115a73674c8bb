"""The registry behind GET /v1/admin/clients: live readers and transport sources."""

from __future__ import annotations

from pushwire.core.clients import ClientInfo, ClientRegistry


def _info(cid: str, since: float, subs: tuple[str, ...] = ()) -> ClientInfo:
    return ClientInfo(cid, "sse", "alice", None, "127.0.0.1", since, subs)


def test_registered_readers_and_sources_oldest_first() -> None:
    registry = ClientRegistry()
    subs: list[str] = ["a/#"]
    key = registry.register(lambda: _info("sse-1", 20.0, tuple(subs)))
    registry.add_source(lambda: [_info("mqtt-a", 10.0), _info("mqtt-b", 30.0)])
    assert [c.id for c in registry.list()] == ["mqtt-a", "sse-1", "mqtt-b"]
    subs.append("b/+")  # described at listing time: changes show up
    assert registry.list()[1].subscriptions == ("a/#", "b/+")
    registry.unregister(key)
    registry.unregister(key)  # twice is harmless
    assert [c.id for c in registry.list()] == ["mqtt-a", "mqtt-b"]
    assert len(registry) == 0


def test_generated_ids_are_unique_per_registry() -> None:
    registry = ClientRegistry()
    ids = {registry.next_id("sse") for _ in range(100)} | {registry.next_id("ws")}
    assert len(ids) == 101
    assert all(i.startswith(("sse-", "ws-")) for i in ids)
