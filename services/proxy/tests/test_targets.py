"""`GRPC_ADDR` into the channel target and the watched backends."""

from __future__ import annotations

import pytest

from lipsync_proxy.targets import (
    Backend,
    Endpoint,
    GrpcAddr,
    TargetError,
    backends,
    channel_target,
    parse_grpc_addr,
)


@pytest.mark.parametrize(
    "uri",
    [
        "dns:///lipsync-server-headless:50051",
        "dns://8.8.8.8/lipsync:50051",
        "ipv4:10.0.0.1:50051,10.0.0.2:50051",
        "ipv6:[::1]:50051",
        "unix:/run/lipsync.sock",
    ],
)
def test_a_grpc_target_uri_is_given_to_grpc_as_it_is(uri: str) -> None:
    addr = parse_grpc_addr(uri)
    assert addr == GrpcAddr(uri=uri)
    assert addr.names == []
    assert channel_target(addr, {}) == uri
    assert backends(addr, {}) == [Backend(uri, uri)]


def test_one_host_port_is_left_to_grpcs_own_resolver() -> None:
    addr = parse_grpc_addr(" lipsync-server:50051 ")
    assert addr.endpoints == (Endpoint("lipsync-server", 50051),)
    assert addr.names == []
    assert channel_target(addr, {}) == "lipsync-server:50051"
    assert backends(addr, {}) == [Backend("lipsync-server:50051", "lipsync-server:50051")]


def test_a_list_of_ipv4_addresses_becomes_one_ipv4_target() -> None:
    addr = parse_grpc_addr("127.0.0.1:5001, 127.0.0.1:5002")
    assert channel_target(addr, {}) == "ipv4:127.0.0.1:5001,127.0.0.1:5002"
    assert backends(addr, {}) == [
        Backend("127.0.0.1:5001", "ipv4:127.0.0.1:5001"),
        Backend("127.0.0.1:5002", "ipv4:127.0.0.1:5002"),
    ]


def test_names_in_a_list_are_replaced_by_their_addresses() -> None:
    addr = parse_grpc_addr("a.example:5001,10.0.0.9:5002")
    assert addr.names == ["a.example"]
    resolved = {"a.example": ["10.0.0.1", "10.0.0.2"]}
    assert channel_target(addr, resolved) == "ipv4:10.0.0.1:5001,10.0.0.2:5001,10.0.0.9:5002"
    assert [b.name for b in backends(addr, resolved)] == [
        "a.example:5001 (10.0.0.1)",
        "a.example:5001 (10.0.0.2)",
        "10.0.0.9:5002",
    ]


def test_a_list_with_ipv6_becomes_an_ipv6_target_with_ipv4_mapped() -> None:
    addr = parse_grpc_addr("[::1]:5001,127.0.0.1:5002")
    assert addr.endpoints == (Endpoint("::1", 5001), Endpoint("127.0.0.1", 5002))
    assert channel_target(addr, {}) == "ipv6:[::1]:5001,[::ffff:7f00:1]:5002"


def test_an_unresolved_name_cannot_make_a_target() -> None:
    with pytest.raises(TargetError, match="was not resolved"):
        channel_target(parse_grpc_addr("a:1,b:2"), {"a": ["10.0.0.1"]})


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
