"""The seed Go proxy's backend flags."""

from __future__ import annotations

import pytest

from lipsync_proxy.settings import SettingsError, settings_from_args


@pytest.mark.parametrize(
    ("args", "grpc_addr"),
    [
        (["-grpc-addrs", "a:1,b:2"], "a:1,b:2"),
        (["--grpc-addrs", "a:1"], "a:1"),
        (["-start-port", "50061", "-num-servers", "3"], "localhost:50061,localhost:50062,localhost:50063"),
        (["-num-servers", "2"], "localhost:50051,localhost:50052"),
        (["-start-port", "7000"], "localhost:7000"),
    ],
)
def test_the_seed_go_proxys_backend_flags_set_the_backends(args: list[str], grpc_addr: str) -> None:
    assert settings_from_args(args, environ={"GRPC_ADDR": "env:1"}).grpc_addr == grpc_addr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["-grpc-addr", "a:1", "-grpc-addrs", "b:2"], "-grpc-addr and -grpc-addrs name the same backends"),
        (["-grpc-addrs", "b:2", "-num-servers", "2"], "-grpc-addrs and -start-port/-num-servers"),
        (["-num-servers", "0"], "-num-servers 0: must be 1..256"),
        (["-start-port", "65535", "-num-servers", "2"], "the ports 65535..65536 must be 1..65535"),
        (["-start-port", "x"], "-start-port 'x': not an integer"),
        (["-grpc-addrs", "a:1,,b:2"], "an empty entry"),
    ],
)
def test_bad_seed_backend_flags_are_reported_with_the_rest(args: list[str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        settings_from_args(args, environ={})
