"""Free loopback ports for the processes that tests and benchmarks start."""

from __future__ import annotations

import socket

#: Every port this process handed out.
_given: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now, and one this process has not handed out
    before: the kernel may give two probes in a row the same free port, and a server started with
    it twice (as its gRPC and its metrics port, say) could not bind the second."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
