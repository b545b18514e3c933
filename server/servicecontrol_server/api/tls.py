"""Transport security for both endpoints: server TLS from a certificate and key, and
mutual TLS when a client CA is given (every client must then present a certificate it
signed). Binding beyond loopback without TLS is refused unless asked for explicitly."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import grpc

from ..settings import Settings


class TransportRefused(Exception):
    """The server would start in a way its settings say it must not."""


def tls_enabled(settings: Settings) -> bool:
    return settings.tls_cert is not None


def check_transport(settings: Settings) -> None:
    """TransportRefused, with one line saying why, for settings that must not start."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise TransportRefused("--tls-cert and --tls-key go together: give both or neither")
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        raise TransportRefused("--tls-client-ca needs --tls-cert and --tls-key")
    for path in (settings.tls_cert, settings.tls_key, settings.tls_client_ca):
        if path is not None and not Path(path).is_file():
            raise TransportRefused(f"TLS file not found: {path}")
    if tls_enabled(settings) or settings.insecure:
        return
    for listen in (settings.grpc_listen, settings.aws_listen):
        if listen and not is_loopback(listen):
            raise TransportRefused(
                f"refusing to listen on {listen} without TLS: give --tls-cert and --tls-key, "
                "or --insecure to serve plaintext beyond this machine"
            )


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        # A host name, an empty host or 0.0.0.0-style wildcards: reachable from outside.
        return False


def grpc_credentials(settings: Settings) -> grpc.ServerCredentials:
    assert settings.tls_cert is not None and settings.tls_key is not None
    client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def http_ssl_context(settings: Settings) -> ssl.SSLContext:
    assert settings.tls_cert is not None and settings.tls_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca is not None:
        context.load_verify_locations(cafile=str(settings.tls_client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
