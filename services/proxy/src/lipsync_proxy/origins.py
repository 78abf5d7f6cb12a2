"""Which browser origins may open `/ws`: a defence against cross-site WebSocket hijacking.

A request without an `Origin` header does not come from a browser page and is allowed. With the
default (empty) allow-list, a page served by the proxy's own host name (any port, since nginx in
front of it listens on another one) and pages on localhost may connect; `*` allows every origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _host_of(netloc: str) -> str:
    """The host name of `host[:port]` (IPv6 literals without brackets), lower-cased."""
    try:
        host = urlsplit(f"//{netloc}").hostname
    except ValueError:
        return ""
    return (host or "").lower()


def normalize(origin: str) -> str:
    """An origin as browsers send it: lower-case scheme and host, no trailing slash."""
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str | None, host_header: str | None, allowed: Sequence[str]) -> bool:
    """Whether a WebSocket handshake with this `Origin` (and `Host`) header may proceed."""
    if origin is None:
        return True
    if allowed:
        return "*" in allowed or normalize(origin) in {normalize(a) for a in allowed}
    try:
        parts = urlsplit(origin.strip())
        origin_host = (parts.hostname or "").lower()
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not origin_host:
        # "null" (file:// pages, sandboxed frames) and anything unparsable.
        return False
    return origin_host in LOCAL_HOSTS or origin_host == _host_of(host_header or "")
