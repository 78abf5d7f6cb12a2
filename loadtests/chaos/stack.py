"""The processes the fault tests start, hurt and restart, all on loopback ports, and what they report.

The real `lipsync-server` and `lipsync-proxy` come from `loadtests.processes`. `DoubleProcess` is the
proxy tests' fake backend (`services/proxy/tests/doubles.py`): a fixed delay per call and a count of
the calls it is serving and of those its client cancelled, which is how a test sees that a vanished
client's work was cancelled. `kill` and `terminate` are the faults; `proxy_metric` reads the proxy's
Prometheus text and `double_stats` the double's counters.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import grpc

from loadtests.processes import REPO, Process, grpc_serving

DOUBLES = REPO / "services" / "proxy" / "tests" / "doubles.py"
CONTROL_STATS = "/lipsync.test.Control/Stats"


@dataclass
class DoubleProcess(Process):
    """The fake backend: every Infer takes `delay_ms` and answers a `payload_size`-byte JPEG shape."""

    delay_ms: float = 0.0
    payload_size: int = 98_432
    frames: int = 300

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
            "--payload-size",
            str(self.payload_size),
        ]

    def ready(self) -> bool:
        return grpc_serving(self.address)


def kill(process: Process) -> None:
    """SIGKILL: the process dies at once, in the middle of whatever it was doing."""
    assert process.process is not None
    process.process.kill()
    process.process.wait()


def terminate(process: Process, timeout_s: float = 30.0) -> tuple[int, float]:
    """SIGTERM and wait: the exit status and how long the process took to exit."""
    assert process.process is not None
    started = time.monotonic()
    process.process.send_signal(signal.SIGTERM)
    try:
        code = process.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.process.kill()
        process.process.wait()
        code = -int(signal.SIGKILL)
    return code, round(time.monotonic() - started, 3)


def proxy_metric(port: int, name: str, labels: str = "") -> float:
    """The sum of the proxy's samples of metric `name` whose labels contain `labels` (e.g. 'code="OK"')."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            series, value = line.rsplit(" ", 1)
            if labels in series:
                total += float(value)
    return total


def http_status(port: int, path: str) -> int:
    """The status of GET 127.0.0.1:port/path (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def double_stats(address: str) -> dict[str, dict[str, int]]:
    """What the double at `address` is serving now, has served, and had cancelled, per method."""
    with grpc.insecure_channel(address) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(CONTROL_STATS)
        reply = call(b"", timeout=5)
    stats: dict[str, dict[str, int]] = json.loads(reply)
    return stats
