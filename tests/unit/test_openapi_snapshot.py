"""`/openapi.json` describes the same endpoints, parameters, bodies, responses and security
requirements as before the hot routes moved onto the owned HTTP protocol (issue 10).

The snapshot (tests/data/openapi_before_issue10.json) was taken from `create_app` before the
change; hot endpoints are now declared once as data (http/endpoints.py) and their fragments
merged into FastAPI's generated schema, so this holds that the merge is faithful."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pushwire.core.hub import Hub
from pushwire.engines.memory import MemoryEngine
from pushwire.http.app import create_app

SNAPSHOT = Path(__file__).parent.parent / "data" / "openapi_before_issue10.json"


def _normalized(spec: dict[str, Any]) -> dict[str, Any]:
    """The schema with parameter lists in a stable order (their order carries no meaning)."""
    spec = json.loads(json.dumps(spec))
    spec["info"]["version"] = "VERSION"
    for ops in spec["paths"].values():
        for op in ops.values():
            if "parameters" in op:
                op["parameters"] = sorted(op["parameters"], key=lambda p: (p["in"], p["name"]))
    return spec


def test_openapi_matches_the_snapshot_taken_before_the_owned_protocol() -> None:
    before = _normalized(json.loads(SNAPSHOT.read_text()))
    now = _normalized(create_app(Hub(MemoryEngine())).openapi())
    assert sorted(now["paths"]) == sorted(before["paths"])
    for path, ops in before["paths"].items():
        assert sorted(now["paths"][path]) == sorted(ops), path
        for method, op in ops.items():
            assert now["paths"][path][method] == op, (method, path)
    assert now["components"] == before["components"]
    assert now == before
