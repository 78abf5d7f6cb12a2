"""`GRPC_ADDR` into the sources of the backends' addresses."""

from __future__ import annotations

import pytest

from lipsync_proxy.targets import (
    Address,
    Endpoint,
    GrpcAddr,
    Source,
    TargetError,
    parse_grpc_addr,
    sources_of,
)


def fixed(name: str, host: str = "", port: int = 0, path: str = "") -> Source:
    return Source(name, fixed=Address(host, port, path))


@pytest.mark.parametrize(
    ("grpc_addr", "sources"),
    [
        ("127.0.0.1:50051", [fixed("127.0.0.1:50051", "127.0.0.1", 50051)]),
        ("[::1]:7", [fixed("[::1]:7", "::1", 7)]),
        ("lipsync-server:50051", [Source("lipsync-server:50051", "lipsync-server", 50051)]),
        (
            "dns:///lipsync-server-headless:50051",
            [Source("lipsync-server-headless:50051", "lipsync-server-headless", 50051)],
        ),
        ("dns://10.0.0.53/lipsync:50051", [Source("lipsync:50051", "lipsync", 50051)]),
        (
            "ipv4:10.0.0.1:1,10.0.0.2:2",
            [fixed("10.0.0.1:1", "10.0.0.1", 1), fixed("10.0.0.2:2", "10.0.0.2", 2)],
        ),
        ("ipv6:[::ffff:10.0.0.1]:50051", [fixed("[::ffff:10.0.0.1]:50051", "::ffff:10.0.0.1", 50051)]),
        ("unix:/run/lipsync.sock", [fixed("unix:/run/lipsync.sock", path="/run/lipsync.sock")]),
        ("unix:///run/lipsync.sock", [fixed("unix:///run/lipsync.sock", path="/run/lipsync.sock")]),
        (
            "a:1,10.0.0.9:2",
            [
                fixed("a:1 (10.0.0.1)", "10.0.0.1", 1),
                fixed("a:1 (10.0.0.2)", "10.0.0.2", 1),
                fixed("10.0.0.9:2", "10.0.0.9", 2),
            ],
        ),
    ],
)
def test_grpc_addr_names_the_sources_of_the_backend_addresses(grpc_addr: str, sources: list[Source]) -> None:
    resolved = {"a": ["10.0.0.1", "10.0.0.2"]}
    assert sources_of(parse_grpc_addr(grpc_addr), resolved) == sources


@pytest.mark.parametrize(
    ("grpc_addr", "problem"),
    [
        ("xds:///lipsync", "the xds: scheme is not supported"),
        ("unix-abstract:lipsync", "the unix-abstract: scheme is not supported"),
        ("unix:relative.sock", "absolute path"),
        ("dns:///no-port", "expected host:port"),
        ("a:1,b:2", "'b' was not resolved"),
    ],
)
def test_a_target_the_proxy_cannot_follow_is_refused_with_the_reason(grpc_addr: str, problem: str) -> None:
    with pytest.raises(TargetError) as raised:
        sources_of(parse_grpc_addr(grpc_addr), {"a": ["10.0.0.1"]})
    assert problem in str(raised.value)


def test_an_address_is_its_own_grpc_target() -> None:
    assert Address("10.0.0.1", 5).target == "ipv4:10.0.0.1:5"
    assert Address("::1", 5).target == "ipv6:[::1]:5"
    assert Address(path="/run/x.sock").target == "unix:/run/x.sock"
    assert str(Address("::1", 5)) == "[::1]:5"


def test_a_uri_is_kept_as_it_is_and_a_list_as_its_endpoints() -> None:
    assert parse_grpc_addr("dns:///x:1") == GrpcAddr(uri="dns:///x:1")
    addr = parse_grpc_addr(" a.example:5001, [::1]:5002 ")
    assert addr.endpoints == (Endpoint("a.example", 5001), Endpoint("::1", 5002))
    assert addr.names == ["a.example"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("localhost", "expected host:port"),
        (":50051", "expected host:port"),
        ("host:", "the port must be 1..65535"),
        ("host:http", "the port must be 1..65535"),
        ("host:65536", "the port must be 1..65535"),
        ("a:1,", "an empty entry"),
        ("::1:50051", "write an IPv6 address as [addr]:port"),
        ("[::1]50051", "[addr]:port"),
        ("[10.0.0.1]:5", "is not an IPv6 address"),
        ("bad_host!:5", "is not a host name or IP address"),
        ("dns:", "names nothing"),
    ],
)
def test_a_malformed_address_is_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(TargetError) as raised:
        parse_grpc_addr(text)
    assert problem in str(raised.value)
