"""Which origins may open /ws."""

from __future__ import annotations

import pytest

from lipsync_proxy.origins import origin_allowed


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (None, "proxy.example:8086"),
        ("https://proxy.example", "proxy.example:8086"),
        ("https://proxy.example:8443", "proxy.example"),
        ("HTTPS://PROXY.EXAMPLE", "proxy.example"),
        ("http://localhost:3000", "proxy.example"),
        ("http://127.0.0.1", None),
        ("http://[::1]:8080", "proxy.example"),
        ("https://[2001:db8::1]", "[2001:db8::1]:8086"),
    ],
)
def test_by_default_the_proxys_own_host_and_localhost_may_connect(
    origin: str | None, host: str | None
) -> None:
    assert origin_allowed(origin, host, ())


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://evil.example", "proxy.example"),
        ("https://proxy.example.evil.example", "proxy.example"),
        ("https://localhost.evil.example", "proxy.example"),
        ("null", "proxy.example"),
        ("file://", "proxy.example"),
        ("ftp://proxy.example", "proxy.example"),
        ("https://proxy.example", None),
        ("http://[::1", "proxy.example"),
    ],
)
def test_by_default_other_origins_are_refused(origin: str, host: str | None) -> None:
    assert not origin_allowed(origin, host, ())


def test_an_allow_list_replaces_the_default() -> None:
    allowed = ("https://app.example", "https://other.example:8443/")
    assert origin_allowed("https://app.example", "proxy.example", allowed)
    assert origin_allowed("https://other.example:8443", "proxy.example", allowed)
    assert not origin_allowed("http://localhost", "proxy.example", allowed)
    assert not origin_allowed("https://proxy.example", "proxy.example", allowed)
    assert origin_allowed("https://anything.example", "proxy.example", ("*",))
