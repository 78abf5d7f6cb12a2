"""Start real processes on free loopback ports for the integration tests, and talk to them.

`ProxyProcess` runs `lipsync-proxy`, `DoubleProcess` the fake backend of `doubles.py`, `ServerProcess`
the real `lipsync-server`. Each waits until it is ready, and stops with SIGTERM (SIGKILL if asked).
None of them sees the `OTEL_*` variables of the test run: a process traces only when its `env` says so.
"""

from __future__ import annotations

import abc
import http.client
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipsync_common.ports import free_port
from lipsync_common.waiting import TIME_UNIT

BIN = Path(sys.executable).parent
DOUBLES = Path(__file__).with_name("doubles.py")


def v1_request(model_name: str, frame_id: int) -> bytes:
    """The seed's binary request."""
    name = model_name.encode()
    return bytes((len(name),)) + name + struct.pack("<I", frame_id)


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> HttpReply:
    """A plain HTTP GET to 127.0.0.1:port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * TIME_UNIT)
    try:
        connection.request("GET", path, headers=headers or {})
        reply = connection.getresponse()
        return HttpReply(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
    finally:
        connection.close()


def grpc_serving(address: str) -> bool:
    """Whether the gRPC server at `address` answers SERVING on grpc.health.v1."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class Process(abc.ABC):
    """A child process started from `command()`, its output kept in a file for failure messages."""

    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    #: Variables added to the test run's environment, less its OTEL_* ones.
    env: Mapping[str, str] = field(default_factory=dict)

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The command line that starts the process."""

    def start(self) -> Process:
        log = (self.log_dir / f"{type(self).__name__}-{self.port}.log").open("ab")
        env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env | dict(self.env)
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return (self.log_dir / f"{type(self).__name__}-{self.port}.log").read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.command()} exited early:\n{self.output()}")
            if self.ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.command()} not ready within {timeout:.0f} s:\n{self.output()}")

    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether the started process serves."""

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20 * TIME_UNIT) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


@dataclass
class DoubleProcess(Process):
    """The fake backend of doubles.py; `delay_ms_per_frame` makes frame f take f times as long."""

    frames: int = 300
    delay_ms: float = 0.0
    delay_ms_per_frame: float = 0.0
    payload_size: int = 98_432

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(DOUBLES),
            "--port",
            str(self.port),
            "--frames",
            str(self.frames),
            "--delay-ms",
            str(self.delay_ms),
            "--delay-ms-per-frame",
            str(self.delay_ms_per_frame),
            "--payload-size",
            str(self.payload_size),
        ]

    def ready(self) -> bool:
        return grpc_serving(self.address)


@dataclass
class ServerProcess(Process):
    """The real lipsync-server with the demo avatar (generated once into `cache_dir`)."""

    cache_dir: Path = Path()
    metrics_port: int = field(default_factory=free_port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(BIN / "lipsync-server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--cache-dir",
            str(self.cache_dir),
            "--grace-period",
            "1",
        ]

    def ready(self) -> bool:
        return grpc_serving(self.address)


@dataclass
class ProxyProcess(Process):
    """`lipsync-proxy` on 127.0.0.1:port in front of `grpc_addr` (none given: `args` name the
    backends); ready once /healthz answers."""

    grpc_addr: str = ""
    args: Sequence[str] = ()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def command(self) -> list[str]:
        return [
            str(BIN / "lipsync-proxy"),
            "--host",
            "127.0.0.1",
            "-ws-port",
            str(self.port),
            *(("-grpc-addr", self.grpc_addr) if self.grpc_addr else ()),
            "--log-level",
            "warning",
            *self.args,
        ]

    def ready(self) -> bool:
        try:
            return http_get(self.port, "/healthz").status == 200
        except OSError:
            return False

    def health(self) -> HttpReply:
        return http_get(self.port, "/health")
