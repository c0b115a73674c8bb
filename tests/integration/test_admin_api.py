"""The admin API (`/v1/admin/...`): admins only; users, tokens and ACL rules that apply at
once (a revoked token's or removed user's live streams end); the OpenAPI description of the
security. Uses the users and rules of test_http_auth.py's `secured` server."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from httpx_sse import aconnect_sse

from .test_http_auth import Secured, basic, bearer, error, no_secrets, secured

__all__ = ["secured"]
pytestmark = pytest.mark.pushwire_only("pushwire's admin API")


def test_admin_api_is_for_admins_only(secured: Secured) -> None:
    url = f"{secured.url}/v1/admin"
    error(httpx.get(f"{url}/users"), 401, "unauthorized")
    error(httpx.get(f"{url}/users", headers=basic("alice")), 403, "forbidden")
    error(httpx.get(f"{url}/tokens", headers=bearer(secured.alice_token)), 403, "forbidden")
    error(
        httpx.post(
            f"{url}/acl",
            headers=basic("bob"),
            json={"all": True, "access": "allow", "permission": "readwrite", "filter": "#"},
        ),
        403,
        "forbidden",
    )
    # a token of an admin whose scope leaves out "admin" is not admin
    scoped, _ = secured.new_token("root", "--scope", "read:users/#")
    error(httpx.get(f"{url}/users", headers=bearer(scoped)), 403, "forbidden")
    r = httpx.get(f"{url}/users", headers=basic("root"))
    assert r.status_code == 200
    assert {"alice", "bob", "root"} <= {u["name"] for u in r.json()}


async def test_admin_api_users_tokens_and_rules(secured: Secured) -> None:
    url = f"{secured.url}/v1/admin"
    root = basic("root")
    async with httpx.AsyncClient(base_url=url, headers=root, timeout=10) as admin:
        r = await admin.post("/users", json={"name": "dave", "password": "dave-pw", "roles": ["x"]})
        assert r.status_code == 201 and r.json()["name"] == "dave" and r.json()["roles"] == ["x"]
        assert "dave-pw" not in r.text
        r = await admin.post("/users", json={"name": "dave", "password": "again"})
        error(r, 409, "conflict")
        error(await admin.post("/users", json={"name": "a/b", "password": "p"}), 400, "bad_request")
        error(await admin.post("/users", json={"name": "eve"}), 400, "bad_request")
        r = await admin.put("/users/dave/roles", json={"roles": ["ops", "x"]})
        assert r.status_code == 200 and r.json()["roles"] == ["ops", "x"]
        error(await admin.put("/users/nobody/password", json={"password": "p"}), 404, "not_found")

        # a token: its secret once, it works at once, it is listed without the secret
        r = await admin.post("/tokens", json={"user": "dave", "expires": "1h", "name": "dash"})
        assert r.status_code == 201, r.text
        created = r.json()
        token, token_id = created["token"], created["id"]
        assert created["status"] == "active" and created["expires"] is not None
        async with httpx.AsyncClient(base_url=secured.url, timeout=10) as client:
            r = await client.get("/v1/poll/users/dave/%23", headers=bearer(token))
            assert r.status_code == 200
            r = await client.get("/v1/poll/users/alice/%23", headers=bearer(token))
            error(r, 403, "forbidden")
            r = await admin.get("/tokens", params={"user": "dave"})
            assert [t["id"] for t in r.json()] == [token_id] and "token" not in r.json()[0]
            assert token not in r.text
            error(await admin.post("/tokens", json={"user": "nobody"}), 404, "not_found")
            r = await admin.post("/tokens", json={"user": "dave", "scope": ["bogus"]})
            error(r, 400, "bad_request")

            # revoking applies at once (no store round trip) and ends live readers
            async with aconnect_sse(
                client, "GET", "/v1/sse/users/dave/%23", headers=bearer(token)
            ) as events:
                assert events.response.status_code == 200
                r = await admin.delete(f"/tokens/{token_id}")
                assert r.status_code == 200 and r.json()["status"] == "revoked"
                reasons = []
                async with asyncio.timeout(5):
                    async for event in events.aiter_sse():
                        if event.event == "close":
                            reasons.append(json.loads(event.data)["reason"])
                assert reasons == ["revoked"]
            error(
                await client.get("/v1/poll/users/dave/%23", headers=bearer(token)),
                401,
                "unauthorized",
            )
            error(await admin.delete("/tokens/000000000000"), 404, "not_found")

            # rules: add, use, remove
            rule = {"user": "dave", "access": "allow", "permission": "read", "filter": "news/#"}
            dave = basic("dave", "dave-pw")
            error(await client.get("/v1/poll/news/%23", headers=dave), 403, "forbidden")
            r = await admin.post("/acl", json=rule)
            assert r.status_code == 201, r.text
            rule_id = r.json()["id"]
            assert r.json()["subject_kind"] == "user" and r.json()["subject"] == "dave"
            assert (await client.get("/v1/poll/news/%23", headers=dave)).status_code == 200
            error(await admin.post("/acl", json=rule), 409, "conflict")
            bad = {**rule, "role": "x"}
            error(await admin.post("/acl", json=bad), 400, "bad_request")
            assert rule_id in [x["id"] for x in (await admin.get("/acl")).json()]
            r = await admin.delete(f"/acl/{rule_id}")
            assert r.status_code == 200 and r.json()["filter"] == "news/#"
            error(await client.get("/v1/poll/news/%23", headers=dave), 403, "forbidden")
            error(await admin.delete(f"/acl/{rule_id}"), 404, "not_found")

            # removing a user ends the streams it opened with its password too
            async with aconnect_sse(client, "GET", "/v1/sse/users/dave/%23", headers=dave) as ev:
                assert ev.response.status_code == 200
                r = await admin.delete("/users/dave")
                assert r.status_code == 200 and r.json()["name"] == "dave"
                reasons = []
                async with asyncio.timeout(5):
                    async for event in ev.aiter_sse():
                        if event.event == "close":
                            reasons.append(json.loads(event.data)["reason"])
                assert reasons == ["revoked"]
            error(await client.get("/v1/poll/users/dave/%23", headers=dave), 401, "unauthorized")
            error(await admin.delete("/users/dave"), 404, "not_found")
    no_secrets(secured.srv.output())
    assert "dave-pw" not in secured.srv.output()


def test_openapi_describes_the_security(secured: Secured) -> None:
    spec = httpx.get(f"{secured.url}/openapi.json").json()  # the description is public
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["basic"]["scheme"] == "basic"
    assert schemes["auth_query"]["in"] == "query" and schemes["auth_query"]["name"] == "auth"
    paths = spec["paths"]
    poll = paths["/v1/poll/{filter}"]["get"]
    assert {"auth_query": []} in poll["security"] and {} in poll["security"]
    assert {"403", "401", "429"} <= set(poll["responses"])
    publish = paths["/v1/publish/{topic}"]["post"]
    assert {"bearer": []} in publish["security"] and {"auth_query": []} not in publish["security"]
    for path in ("/v1/admin/users", "/v1/admin/tokens", "/v1/admin/acl"):
        for op in paths[path].values():
            assert op["security"] == [{"bearer": []}, {"basic": []}], (path, op["security"])
            assert {"401", "403"} <= set(op["responses"])
    assert "/v1/admin/tokens/{token_id}" in paths
    assert "TokenCreated" in spec["components"]["schemas"]
