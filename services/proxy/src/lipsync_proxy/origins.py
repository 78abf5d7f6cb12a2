"""Which browser origins may open `/ws`: a defence against cross-site WebSocket hijacking.

A request without an `Origin` header does not come from a browser page and is allowed. With the
default (empty) allow-list, a page served by the proxy's own host name (any port, since nginx in
front of it listens on another one) and pages on localhost may connect; `*` allows every origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _hostname(url: str) -> str:
    """The host name of `url`, lower-case, an IPv6 literal without brackets; "" when it has none."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _normalize(origin: str) -> str:
    """An origin as browsers send it: lower-case scheme and host, no trailing slash."""
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str | None, host_header: str | None, allowed: Sequence[str]) -> bool:
    """Whether a WebSocket handshake with this `Origin` (and `Host`) header may proceed."""
    if origin is None:
        return True
    if allowed:
        return "*" in allowed or _normalize(origin) in {_normalize(entry) for entry in allowed}
    host = _hostname(origin.strip())
    # "null" (file:// pages, sandboxed frames) and anything unparsable have no host.
    if not host or not _normalize(origin).startswith(("http://", "https://")):
        return False
    return host in LOCAL_HOSTS or host == _hostname(f"//{host_header or ''}")
