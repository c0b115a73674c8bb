"""The HTTP surface (FastAPI). For now: health; the HTTP transports build on this app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from pushwire import __version__
from pushwire.core.hub import Hub


def create_app(hub: Hub) -> FastAPI:
    app = FastAPI(title="pushwire", version=__version__)

    @app.get("/v1/health", tags=["admin"])
    async def health() -> dict[str, Any]:
        """Liveness and a few numbers: 200 while the server runs."""
        return {
            "status": "ok",
            "version": __version__,
            "engine": hub.engine.name,
            "uptime": hub.stats.uptime(),
            "clients_connected": hub.stats.clients_connected,
            "sessions": len(hub.sessions),
        }

    return app
