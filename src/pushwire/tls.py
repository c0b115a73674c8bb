"""TLS for the MQTT and HTTP listeners, from PEM files named in the settings."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from pushwire.config import Settings

_CERT_REQS = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


class TLSConfigError(ValueError):
    pass


def check_tls_settings(settings: Settings) -> None:
    if settings.tls_cert is None and (settings.http_tls or settings.tls_key is not None):
        raise TLSConfigError("tls_key / http_tls need tls_cert")
    if settings.tls_client_auth != "none" and settings.tls_ca is None:
        raise TLSConfigError("tls_client_auth needs tls_ca (the CA client certificates chain to)")


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The server-side context, or None when TLS is not configured."""
    check_tls_settings(settings)
    if settings.tls_cert is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    ctx.verify_mode = _CERT_REQS[settings.tls_client_auth]
    if settings.tls_ca is not None:
        ctx.load_verify_locations(cafile=settings.tls_ca)
    return ctx


def http_server_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTP listener's context (`http_tls`), or None for plain HTTP."""
    if not settings.http_tls:
        return None
    return server_context(settings)


def certificate_username(peercert: dict[str, Any] | None) -> str | None:
    """The subject CN of a verified client certificate (ssl.getpeercert() form)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def scope_certificate_name(scope: Mapping[str, Any]) -> str | None:
    """The verified client certificate's CN of the connection an ASGI scope came on: the
    owned HTTP protocol (http/connection.py) puts it into the scope's `tls` extension, per
    connection (no table keyed by peer address)."""
    tls = scope.get("extensions", {}).get("tls")
    if not tls:
        return None
    name = tls.get("client_cert_name")
    return str(name) if name is not None else None


def tls_extension(cert_name: str | None) -> dict[str, Any]:
    """The scope's `tls` extension for a TLS connection whose client certificate is named
    `cert_name` (None: no verified client certificate)."""
    return {"client_cert_name": cert_name, "client_cert_chain": [], "server_cert": None}
