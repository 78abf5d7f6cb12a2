"""The sink as a child process on free loopback ports, and a client of its query API: what integration
tests start, point `OTEL_EXPORTER_OTLP_ENDPOINT` at (`endpoint`), and ask which spans arrived."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from lipsync_otlp_sink.store import SpanRecord

#: Every port `free_port` handed out in this process.
_given: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, never one handed out before: the kernel may give two
    probes in a row the same port, and the sink could not bind both. (The services' tests have the
    same helper in lipsync_common.ports; this package is installed on its own, without it.)"""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port


@dataclass
class SinkProcess:
    """`lipsync-otlp-sink` listening on 127.0.0.1 only. `start`, then `wait_ready`; `stop` at the end."""

    otlp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The OTLP/gRPC endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` wants it."""
        return f"http://127.0.0.1:{self.otlp_port}"

    def start(self) -> SinkProcess:
        command = [sys.executable, "-m", "lipsync_otlp_sink.cli", "--host", "127.0.0.1"]
        command += ["--otlp-port", str(self.otlp_port), "--http-port", str(self.http_port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        """Return once `/healthz` answers; raise when the process exits or `timeout_s` passes."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"lipsync-otlp-sink exited with {self.process.returncode}:\n{error}")
            try:
                self._get("/healthz")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"lipsync-otlp-sink not ready within {timeout_s:.0f} s") from None
                time.sleep(0.05)

    def spans(self, *, trace_id: str | None = None, service: str | None = None) -> list[SpanRecord]:
        """The spans received so far, in arrival order, optionally of one trace and/or one service."""
        query = {key: value for key, value in (("trace_id", trace_id), ("service", service)) if value}
        reply = json.loads(self._get("/api/spans?" + urllib.parse.urlencode(query)))
        return [SpanRecord.from_json(span) for span in reply["spans"]]

    def wait_for_spans(
        self,
        done: Callable[[list[SpanRecord]], bool],
        timeout_s: float,
        *,
        trace_id: str | None = None,
        service: str | None = None,
    ) -> list[SpanRecord]:
        """Poll `spans(...)` until `done` holds for them, and return them; raise after `timeout_s`,
        naming the spans that had arrived."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans(trace_id=trace_id, service=service)
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({span.name for span in spans})
                raise TimeoutError(f"spans not complete within {timeout_s:.0f} s; received: {names}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit status."""
        assert self.process is not None, "start() first"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        return int(self.process.returncode)

    def _get(self, path: str) -> bytes:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body
