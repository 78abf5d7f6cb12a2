from __future__ import annotations

import socket

import pytest

from lipsync_common import ports


def test_a_port_is_never_handed_out_twice_even_when_the_kernel_offers_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offered = iter([40001, 40001, 40002, 40001, 40003])

    class Probe:
        def __init__(self, *args: object) -> None:
            self.port = next(offered)

        def __enter__(self) -> Probe:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def bind(self, address: tuple[str, int]) -> None:
            pass

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(ports, "_given", set())
    monkeypatch.setattr(socket, "socket", Probe)
    assert [ports.free_port() for _ in range(3)] == [40001, 40002, 40003]


def test_a_free_port_can_be_bound() -> None:
    port = ports.free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        assert server.getsockname()[1] == port
