"""Stream URIs: syntax validation, credential redaction, and the network-safety rule.

In a deployed stack the worker must never be sent to loopback, private, link-local or cloud-metadata
addresses (SSRF). ``check_stream_host`` resolves the host and rejects such addresses unless the operator
setting ``ALLOW_PRIVATE_STREAM_HOSTS`` is on (the local stack turns it on so tests can use 127.0.0.1). The
API checks at create; the worker checks again when it connects (DNS may have changed).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

SCHEMES = ("rtmp", "rtmps", "rtsp")
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443, "rtsp": 554}


class UnsafeStreamHost(ValueError):
    pass


def validate_stream_uri(uri: str) -> None:
    """Raise ``ValueError`` with a message that tells the caller what to fix."""
    if any(ch.isspace() for ch in uri) or any(ord(ch) < 32 for ch in uri):
        raise ValueError("streamUri must not contain whitespace or control characters")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"streamUri is not a valid URI: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError("streamUri must use one of the protocols rtmp, rtsp or rtmps")
    if not parts.hostname:
        raise ValueError("streamUri must include a host, e.g. rtmp://host/app/key")
    if port == 0:
        raise ValueError("streamUri has an invalid port")


def redact_uri(uri: str) -> str:
    """``scheme://host:port/…`` — no user info, path (stream keys live there) or query. Safe for logs."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<invalid uri>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/…"


def _is_forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _is_forbidden(ip.ipv4_mapped)
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
        or ip in ipaddress.ip_network("fd00:ec2::/32")  # EC2 IPv6 metadata
    )


def check_stream_host(uri: str, allow_private: bool) -> list[str]:
    """Resolve the URI's host; raise :class:`UnsafeStreamHost` if any address is not public.

    Returns the resolved addresses. With ``allow_private`` only resolvability is checked.
    """
    parts = urlsplit(uri)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeStreamHost(f"streamUri host {host!r} cannot be resolved") from exc
    addresses = sorted({str(info[4][0]).split("%")[0] for info in infos})
    if not allow_private:
        for address in addresses:
            if _is_forbidden(ipaddress.ip_address(address)):
                raise UnsafeStreamHost(
                    f"streamUri host {host!r} resolves to a loopback, private, link-local or metadata address"
                )
    return addresses
