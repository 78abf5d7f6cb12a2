"""Start the real `lipsync-server` process on free loopback ports, for integration tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipsync_common.ports import free_port
from lipsync_common.waiting import TIME_UNIT

SERVER_BIN = Path(sys.executable).with_name("lipsync-server")


def health_status(address: str, service: str = "", timeout: float = 1.0) -> int | None:
    """The grpc.health.v1 status, or None when the server does not answer."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return None
    return int(reply.status)


@dataclass
class ServerProcess:
    args: Sequence[str]
    cache_dir: Path
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        command = [
            str(SERVER_BIN),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--cache-dir",
            str(self.cache_dir),
            *self.args,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return self

    def wait_serving(self, timeout: float = 120 * TIME_UNIT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"lipsync-server exited early:\n{self.output()}")
            if health_status(self.address) == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
        raise TimeoutError(f"lipsync-server not SERVING within {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        """What the process printed; only once it has exited."""
        assert self.process is not None
        if self.process.poll() is None or self.process.stdout is None:
            return ""
        return self.process.stdout.read().decode(errors="replace")

    def stop(self, timeout: float = 20 * TIME_UNIT) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)
