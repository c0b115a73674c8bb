"""The client list (core/clients.py `ClientRegistry`) of an in-process server, read on its
loop: which live-reader entries it holds, and what they are bound to. For the tests that
check a client leaving frees its entry."""

from __future__ import annotations

import gc

from helpers.inproc import InProcessServer
from pushwire.core.clients import ClientInfo, ClientRegistry


def entry_owners(srv: InProcessServer) -> list[object]:
    """What each live-reader entry of the client list is bound to (None: not a method)."""

    def owners() -> list[object]:
        # `type(o) is`, not isinstance: gc.get_objects() may hold a dead weak proxy, and
        # isinstance on it raises ReferenceError
        registries = [o for o in gc.get_objects() if type(o) is ClientRegistry]
        return [getattr(d, "__self__", None) for r in registries for d in r._live.values()]

    return srv.call(owners)


def listed_clients(srv: InProcessServer) -> list[ClientInfo]:
    """The clients the list holds now."""

    def listed() -> list[ClientInfo]:
        registries = [o for o in gc.get_objects() if type(o) is ClientRegistry]
        return [d() for r in registries for d in r._live.values()]

    return srv.call(listed)
