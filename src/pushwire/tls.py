"""TLS for the MQTT and HTTP listeners, from PEM files named in the settings."""

from __future__ import annotations

import ssl
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


def uvicorn_ssl_options(settings: Settings) -> dict[str, Any]:
    """The same TLS setup, in the form uvicorn.Config takes."""
    if not settings.http_tls or settings.tls_cert is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_cert),
        "ssl_cert_reqs": _CERT_REQS[settings.tls_client_auth],
    }
    if settings.tls_key is not None:
        options["ssl_keyfile"] = str(settings.tls_key)
    if settings.tls_ca is not None:
        options["ssl_ca_certs"] = str(settings.tls_ca)
    return options


def certificate_username(peercert: dict[str, Any] | None) -> str | None:
    """The subject CN of a verified client certificate (ssl.getpeercert() form)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


# verified client-certificate names of live HTTPS/WSS connections, by peer address: uvicorn
# does not put the certificate into the ASGI scope, so its protocol (http/guard.py) records
# it here and the HTTP auth layer and MQTT over WebSocket look it up
_CERTIFICATE_NAMES: dict[tuple[str, int], str] = {}


def remember_certificate_name(peer: tuple[str, int], name: str) -> None:
    _CERTIFICATE_NAMES[peer] = name


def forget_certificate_name(peer: tuple[str, int]) -> None:
    _CERTIFICATE_NAMES.pop(peer, None)


def certificate_name(host: str, port: int) -> str | None:
    """The client certificate's CN of the live connection from (host, port), if any."""
    return _CERTIFICATE_NAMES.get((host, port))
