"""The push gateway on engine=redis at scale: registry changes travel as named changes (no
node reloads the registry per change), the dead-home check is indexed by node, and /metrics
gives per-node figures plus cluster totals.

Two pushwire nodes run as subprocesses on one private redis-server (tests/helpers/redis.py);
the helpers of test_cluster_gateway.py make apps, devices and pushes as there.
"""

from __future__ import annotations

import functools
import re

import httpx
import pytest
import redis

from helpers.gateway import base_url, decode, push
from helpers.redis import RedisServer
from helpers.server import ServerProcess

from . import test_cluster_gateway as gwt
from .cluster_util import DEADLINE, StartNode, cluster_node, wait_for
from .test_cluster_gateway import device_client

__all__ = ["cluster_node", "device_client"]
pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")


def metric(srv: ServerProcess, name: str, **labels: str) -> float:
    """The value of one sample of GET /metrics (0 when absent)."""
    r = httpx.get(f"{base_url(srv)}/metrics", timeout=10)
    if r.status_code == 401:  # a cluster with users (an admin) asks for credentials
        r = httpx.get(f"{base_url(srv)}/metrics", timeout=10, auth=gwt.ROOT)
    assert r.status_code == 200, r.text
    text = r.text
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if got == labels:
            return float(m.group(3))
    return 0.0


def updates(srv: ServerProcess, how: str) -> float:
    return metric(srv, "pushwire_gateway_registry_updates_total", how=how)


def test_registry_changes_reach_the_other_node_one_by_one_and_a_gap_reloads_once(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    gwt.redis_cli(redis_server, "user", "add", gwt.ROOT[0], "--role", "admin",
                  "--password-stdin", stdin=gwt.ROOT[1] + "\n")  # fmt: skip
    a, b = cluster_node(), cluster_node()
    app_id, key = gwt.make_app(redis_server, a, b)
    full = updates(b, "full")
    full_a = updates(a, "full")
    applied = updates(b, "incremental")
    assert full >= 1  # the start-up load

    # a token registered on A is honoured on B, unregistered on A refused on B
    device_id, secret, token = gwt.register(a, app_id, b)
    wait_for(lambda: push(b, key, token, {"alert": "x"}).status_code == 200, "B takes the token")
    r = httpx.delete(
        f"{base_url(a)}/v1/devices/{device_id}/tokens/{token}", auth=(device_id, secret)
    )
    assert r.status_code == 204, r.text
    wait_for(lambda: push(b, key, token, {"alert": "t"}).status_code == 410, "B answers 410")
    assert updates(b, "incremental") >= applied + 3  # device, token, token deleted
    # a device removed through A's admin API: B ends it too
    r = httpx.delete(f"{base_url(a)}/v1/admin/devices/{device_id}", auth=gwt.ROOT)
    assert r.status_code in (200, 204), r.text
    wait_for(
        lambda: httpx.get(f"{base_url(b)}/v1/devices/{device_id}", auth=(device_id, secret))
        .status_code == 401,
        "B to forget the device",
    )  # fmt: skip
    # and no whole-registry reload for any of them, on either node
    assert (updates(a, "full"), updates(b, "full")) == (full_a, full)

    # a notice lost (the generation bumped behind the nodes' back): one full reload
    with redis.Redis.from_url(redis_server.url) as r_:
        r_.incr("pw:gw:gen")
    wait_for(lambda: updates(b, "full") == full + 1, "B to reload once after the gap")
    # after it, changes are applied one by one again (and the gap is not reloaded twice)
    gwt.register(a, app_id, b)
    assert updates(b, "full") == full + 1


def node_id(srv: ServerProcess) -> str:
    return str(httpx.get(f"{base_url(srv)}/v1/health", timeout=10).json()["node_id"])


def test_dead_home_check_reads_no_home_table_and_a_dead_homes_pushes_still_arrive(
    cluster_node: StartNode, redis_server: RedisServer, device_client: gwt.DeviceClient
) -> None:
    a, b = cluster_node(*gwt.FAST_FAILOVER), cluster_node(*gwt.FAST_FAILOVER)
    app_id, key = gwt.make_app(redis_server, a, b)
    devices = [gwt.register(a, app_id, b) for _ in range(3)]
    for device_id, secret, _ in devices:
        device_client(a, device_id, secret).disconnect()  # A is home of all three
    r_ = redis.Redis.from_url(redis_server.url, decode_responses=True)
    home = "pw:gw:home"
    wait_for(lambda: all(r_.hget(home, d) == node_id(a) for d, _, _ in devices), "A homes them")

    # rounds of B's dead-home check while every node lives: no read of the home table
    r_.config_resetstat()
    checks = metric(b, "pushwire_gateway_home_checks_total")
    wait_for(lambda: metric(b, "pushwire_gateway_home_checks_total") >= checks + 3, "3 home checks")
    stats = r_.info("commandstats")
    for whole_table in ("hgetall", "hkeys", "hvals", "hscan"):
        assert f"cmdstat_{whole_table}" not in stats, stats.get(f"cmdstat_{whole_table}")

    # pushes for A's devices accepted on B wait on A; A dies; B finds them through the index
    a_id = node_id(a)
    assert r_.smembers(f"pw:gw:homes:{a_id}") == {d for d, _, _ in devices}
    sent = {d: gwt.pushed(b, key, token, f"for {d}") for d, _, token in devices}
    a.kill()
    b_id = node_id(b)
    wait_for(lambda: all(r_.hget(home, d) == b_id for d in sent), "B to adopt the devices", 30)
    assert r_.smembers(f"pw:gw:homes:{a_id}") == set()  # A's index emptied by the moves
    for device_id, secret, _ in devices:
        client = device_client(b, device_id, secret)
        assert decode(client.get(DEADLINE))["id"] == sent[device_id]
    r_.close()


def test_metrics_give_each_nodes_push_figures_and_the_cluster_totals(
    cluster_node: StartNode, redis_server: RedisServer, device_client: gwt.DeviceClient
) -> None:
    a, b = cluster_node(), cluster_node()
    app_id, key = gwt.make_app(redis_server, a, b)
    device_id, secret, token = gwt.register(a, app_id, b)
    client = device_client(a, device_id, secret)
    sent = [gwt.pushed(srv, key, token, "m") for srv in (a, a, b)]
    got = [decode(m)["id"] for m in client.get_until(lambda m: decode(m)["id"] == sent[-1])]
    assert got == sent
    for push_id in sent:
        gwt.wait_state(b, key, push_id, "delivered")
    r = httpx.delete(
        f"{base_url(a)}/v1/devices/{device_id}/tokens/{token}", auth=(device_id, secret)
    )
    assert r.status_code == 204, r.text
    # not probed with pushes: one B accepted before the deletion's notice reached it is
    # counted (accepted on B, delivered by A) and the figures below are one off
    wait_for(lambda: gwt.device_status(b, device_id, secret)["apps"] == [], "B to drop the token")
    assert push(b, key, token, {"alert": "t"}).status_code == 410
    ids = {"a": node_id(a), "b": node_id(b)}
    want_nodes = {
        (ids["a"], "accepted"): 2.0,
        (ids["b"], "accepted"): 1.0,
        (ids["a"], "delivered"): 3.0,  # A is the device's home: it saw the acks
        (ids["b"], "delivered"): 0.0,
        (ids["b"], "unregistered"): 1.0,
    }
    want_totals = {"accepted": 3.0, "delivered": 3.0, "expired": 0.0, "unregistered": 1.0}

    def figures(srv: ServerProcess) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
        nodes = {
            (n, e): metric(srv, "pushwire_gateway_node_pushes_total", event=e, node=n)
            for n, e in want_nodes
        }
        totals = {e: metric(srv, "pushwire_gateway_cluster_pushes", event=e) for e in want_totals}
        return nodes, totals

    last: dict[str, object] = {}

    def agrees(srv: ServerProcess) -> bool:
        last[str(srv)] = got = figures(srv)
        return got == (want_nodes, want_totals)

    for srv in (a, b):  # the same figures on either node, once a heartbeat shared them
        try:
            what = f"{srv}'s /metrics to show every node's figures"
            wait_for(functools.partial(agrees, srv), what)
        except AssertionError:
            raise AssertionError(f"{srv}: {last[str(srv)]}") from None


def test_a_lost_notice_connection_reloads_once_and_changes_flow_again(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    a, b = cluster_node(), cluster_node()
    app_id, _ = gwt.make_app(redis_server, a, b)
    full = updates(b, "full")
    # every pub/sub connection dropped by Redis (as on a Redis restart): notices sent
    # meanwhile may be lost, so the node reloads once when it subscribes again
    with redis.Redis.from_url(redis_server.url) as r_:
        assert r_.client_kill_filter(_type="pubsub") >= 2
    wait_for(lambda: updates(b, "full") >= full + 1, "B to reload after resubscribing")
    reloaded = updates(b, "full")
    applied = updates(b, "incremental")
    gwt.register(a, app_id, b)  # and changes are applied one by one again
    assert updates(b, "incremental") >= applied + 2
    assert updates(b, "full") == reloaded
