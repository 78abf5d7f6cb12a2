"""The processes a benchmark measures, each started on a free loopback port and stopped afterwards.

`BackendProcess` is the fixed-payload benchmark backend, `ProxyProcess` the real `lipsync-proxy`,
`ServerProcess` the real `lipsync-server` with its demo avatar, `NginxProcess` nginx terminating TLS
in front of the proxy (as deploy/ does). Each one's output goes to a log file in `log_dir`, shown when
it fails to start. Use them as context managers: started and ready on entry, stopped on exit.
"""

from __future__ import annotations

import abc
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipsync_common.ports import free_port

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def grpc_serving(address: str) -> bool:
    """Whether the gRPC server at `address` answers SERVING on grpc.health.v1."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(port: int, path: str) -> bool:
    """Whether GET 127.0.0.1:port/path answers 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Process(abc.ABC):
    """A child process started from `command()`, its output kept in a log file."""

    log_dir: Path
    port: int = field(default_factory=free_port)
    ready_timeout_s: float = 30.0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The command line that starts the process."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether the started process serves."""

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{type(self).__name__}-{self.port}.log"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self.process.pid

    def environment(self) -> dict[str, str] | None:
        """The process's environment; None: this one's."""
        return None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=self.environment()
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command()} exited early:\n{self._output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"{self.command()} not ready in {self.ready_timeout_s:.0f} s:\n{self._output()}"
                )
            time.sleep(0.05)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class BackendProcess(Process):
    """The fixed-payload benchmark backend (`loadtests.backend`)."""

    delay_ms: float = 0.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "loadtests.backend",
            "--port",
            str(self.port),
            "--delay-ms",
            str(self.delay_ms),
        ]

    def ready(self) -> bool:
        return grpc_serving(self.address)


@dataclass
class ServerProcess(Process):
    """The real `lipsync-server` with the demo avatar, generated into `cache_dir` on first start."""

    cache_dir: Path = Path()
    ready_timeout_s: float = 180.0
    extra_args: tuple[str, ...] = ()

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
            "0",
            "--cache-dir",
            str(self.cache_dir),
            "--log-level",
            "warning",
            *self.extra_args,
        ]

    def ready(self) -> bool:
        return grpc_serving(self.address)


_COMPOSE = REPO / "deploy" / "compose"
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def deployed_otel(endpoint: str) -> dict[str, str]:
    """The `OTEL_*` variables compose gives the services (its `x-otel-environment`, with the defaults of
    `deploy/compose/.env`), exporting to `endpoint` instead of Jaeger."""
    env_file = dict(
        line.split("=", 1)
        for line in (_COMPOSE / ".env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    found: dict[str, str] = {}
    block = False
    for line in (_COMPOSE / "compose.yaml").read_text().splitlines():
        if line.startswith("x-otel-environment:"):
            block = True
        elif block and line and not line.startswith(" "):
            break
        elif block and line.strip().startswith("OTEL_"):
            name, value = (part.strip() for part in line.split(":", 1))
            found[name] = _DEFAULTED.sub(lambda m: env_file.get(m.group(1), m.group(2)), value)
    if "OTEL_TRACES_SAMPLER" not in found:
        raise RuntimeError("deploy/compose/compose.yaml's x-otel-environment sets no OTEL_TRACES_SAMPLER")
    return found | {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}


@dataclass
class ProxyProcess(Process):
    """`lipsync-proxy` on 127.0.0.1 in front of `grpc_addr`, without its per-frame log line (as deployed)."""

    grpc_addr: str = ""
    extra_args: tuple[str, ...] = ()
    #: The proxy's `OTEL_*` variables, instead of any this process has: none, tracing off.
    otel: Mapping[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def environment(self) -> dict[str, str]:
        kept = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
        return kept | dict(self.otel)

    def command(self) -> list[str]:
        return [
            str(BIN / "lipsync-proxy"),
            "--host",
            "127.0.0.1",
            "-ws-port",
            str(self.port),
            "-grpc-addr",
            self.grpc_addr,
            "--log-level",
            "warning",
            "--quiet-frames",
            *self.extra_args,
        ]

    def ready(self) -> bool:
        return http_ok(self.port, "/readyz")


NGINX_CONF = """\
# nginx for the end-to-end benchmark: TLS in front of the proxy, with the /ws location of the
# project's nginx.conf (deploy/helm/lipsync/files/nginx.conf).
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    tcp_nodelay on;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream lipsync_proxy {{ server 127.0.0.1:{proxy_port}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/tls.crt;
        ssl_certificate_key {dir}/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /ws {{
            proxy_pass http://lipsync_proxy;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_read_timeout 60s;
            proxy_send_timeout 60s;
            proxy_buffering off;
        }}
    }}
}}
"""


@dataclass
class NginxProcess(Process):
    """nginx terminating TLS (a throwaway self-signed certificate) in front of the proxy's /ws."""

    proxy_port: int = 0
    nginx: str = "nginx"
    openssl: str = "openssl"

    @property
    def wss_url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        directory = self.log_dir / f"nginx-{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                self.openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt"),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        conf = NGINX_CONF.format(dir=directory, port=self.port, proxy_port=self.proxy_port)
        (directory / "nginx.conf").write_text(conf)
        self._conf = directory / "nginx.conf"
        super().start()

    def command(self) -> list[str]:
        return [self.nginx, "-p", str(self._conf.parent), "-c", str(self._conf)]

    def client_tls(self) -> ssl.SSLContext:
        """A client context that trusts this nginx's certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self._conf.parent / "tls.crt"))

    def ready(self) -> bool:
        return tcp_open(self.port)
