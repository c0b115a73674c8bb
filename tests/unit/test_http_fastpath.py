"""http/fastpath.py: hot routes served without FastAPI's per-request parameter solving,
documented by their declared signature."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from pushwire.http.errors import install_error_handlers
from pushwire.http.fastpath import FastRoute, fast, query_int

calls: list[str] = []


async def _fast(request: Request) -> JSONResponse:
    calls.append("fast")
    return JSONResponse({"n": query_int(request, "n"), "name": request.path_params["name"]})


def _app() -> FastAPI:
    router = APIRouter(route_class=FastRoute)

    @router.get("/fast/{name}")
    @fast(_fast)
    async def documented(
        name: str, n: Annotated[int | None, Query(description="a number")] = None
    ) -> JSONResponse:
        calls.append("documented")
        return JSONResponse({"n": n, "name": name})

    @router.get("/plain/{name}")
    async def plain(
        name: str, n: Annotated[int | None, Query(description="a number")] = None
    ) -> JSONResponse:
        return JSONResponse({"n": n, "name": name})

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    return app


def test_fast_route_serves_the_fast_handler_and_documents_the_signature() -> None:
    calls.clear()
    client = TestClient(_app())
    assert client.get("/fast/x?n=7").json() == {"n": 7, "name": "x"}
    assert calls == ["fast"]
    assert client.get("/plain/x?n=7").json() == {"n": 7, "name": "x"}
    spec = client.get("/openapi.json").json()
    fast_params = spec["paths"]["/fast/{name}"]["get"]["parameters"]
    plain_params = spec["paths"]["/plain/{name}"]["get"]["parameters"]
    assert fast_params == plain_params
    assert [p["name"] for p in fast_params] == ["name", "n"]


def test_query_int_answers_like_fastapi_validation() -> None:
    client = TestClient(_app())
    for value in ("x", "1.5", "", "-3", " 4", "1e3", "٣"):
        fast_reply = client.get("/fast/x", params={"n": value})
        plain_reply = client.get("/plain/x", params={"n": value})
        assert fast_reply.status_code == plain_reply.status_code, value
        assert fast_reply.json() == plain_reply.json(), value
    assert client.get("/fast/x").json() == {"n": None, "name": "x"}
    bad = client.get("/fast/x?n=abc")
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("query.n: Input should be a valid integer")
