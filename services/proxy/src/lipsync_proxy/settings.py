"""The proxy's one settings object, built from flags and the environment and validated at start.

The seed's names are kept (`-ws-port`, `-grpc-addr`, `WS_PORT`, `GRPC_ADDR`, `STATIC_DIR`), and the seed
Go proxy's real backend flags (`-grpc-addrs`, `-start-port`/`-num-servers`) set `grpc_addr` too; every
other setting reads `PROXY_<FLAG>`. A flag beats the environment, and every invalid setting is reported at
once in one message. Tracing has no flags: the standard `OTEL_*` variables configure it
(`lipsync_proxy.telemetry`), and their problems are reported in the same message.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lipsync_common.tracing import TracingConfig
from lipsync_proxy.targets import TargetError, parse_grpc_addr
from lipsync_proxy.telemetry import tracing_settings

DEFAULT_WS_PORT = 8086
DEFAULT_GRPC_ADDR = "localhost:50051"
DEFAULT_START_PORT = 50051
#: The most backends `-num-servers` may generate.
MAX_NUM_SERVERS = 256
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def checkout_static_dir() -> Path | None:
    """The repository's `static/` when the proxy runs from a checkout (an editable install), else None."""
    # settings.py sits at services/proxy/src/lipsync_proxy/ in the repository.
    candidate = Path(__file__).resolve().parents[4] / "static"
    return candidate if candidate.is_dir() else None


class SettingsError(ValueError):
    """One or more settings are invalid; the message names every problem."""


@dataclass(frozen=True)
class Settings:
    """How one proxy process runs."""

    ws_port: int = DEFAULT_WS_PORT
    # "" binds every interface, IPv4 and IPv6.
    host: str = ""
    grpc_addr: str = DEFAULT_GRPC_ADDR
    static_dir: Path | None = field(default_factory=checkout_static_dir)
    # Empty: the proxy's own host and localhost. "*" allows every origin.
    allowed_origins: tuple[str, ...] = ()
    max_inflight: int = 8
    max_inflight_total: int = 1024
    timeout_s: float = 5.0
    # Frames per InferBatch call under load (lipsync_proxy.dispatch).
    max_batch: int = 16
    session_timeout_s: float = 3600.0
    max_message_size: int = 1 << 20
    ping_interval_s: float = 20.0
    grace_period_s: float = 10.0
    # Messages a second one connection / one client address may send; 0: no limit (see rate_limit.py).
    rate_limit: float = 0.0
    address_rate_limit: float = 0.0
    # Connections one client address may have open; 0: no limit.
    max_connections_per_address: int = 0
    # The header naming the client's address, set by a trusted reverse proxy in front; "": the TCP peer.
    client_address_header: str = ""
    log_level: str = "info"
    log_format: str = "text"
    quiet_frames: bool = False
    tracing: TracingConfig = field(default_factory=TracingConfig)

    def problems(self) -> list[str]:
        """Every invalid setting, described; empty when all is well."""
        found = []
        if not 0 <= self.ws_port <= 65535:
            found.append(f"--ws-port {self.ws_port}: must be 0..65535")
        try:
            parse_grpc_addr(self.grpc_addr)
        except TargetError as exc:
            found.append(f"--grpc-addr {self.grpc_addr!r}: {exc}")
        if self.static_dir is not None and not self.static_dir.is_dir():
            found.append(f"--static-dir {self.static_dir}: not a directory")
        for origin in self.allowed_origins:
            if origin != "*" and "://" not in origin:
                found.append(f"--allowed-origins {origin!r}: must be * or scheme://host[:port]")
        if self.max_inflight < 1:
            found.append(f"--max-inflight {self.max_inflight}: must be at least 1")
        if self.max_inflight_total < self.max_inflight:
            found.append(
                f"--max-inflight-total {self.max_inflight_total}: must be at least --max-inflight "
                f"({self.max_inflight})"
            )
        if not self.timeout_s > 0:
            found.append(f"--timeout {self.timeout_s}: must be > 0 seconds")
        if not 1 <= self.max_batch <= 256:
            found.append(f"--max-batch {self.max_batch}: must be 1..256 (1: no batches)")
        if not self.session_timeout_s > 0:
            found.append(f"--session-timeout {self.session_timeout_s}: must be > 0 seconds")
        if self.max_message_size < 64:
            found.append(f"--max-message-size {self.max_message_size}: must be at least 64 bytes")
        if not self.ping_interval_s > 0:
            found.append(f"--ping-interval {self.ping_interval_s}: must be > 0 seconds")
        if self.grace_period_s < 0:
            found.append(f"--grace-period {self.grace_period_s}: must be >= 0 seconds")
        if not self.rate_limit >= 0:
            found.append(f"--rate-limit {self.rate_limit}: must be >= 0 messages a second (0: no limit)")
        if not self.address_rate_limit >= 0:
            found.append(
                f"--address-rate-limit {self.address_rate_limit}: must be >= 0 a second (0: no limit)"
            )
        if self.max_connections_per_address < 0:
            found.append(
                f"--max-connections-per-address {self.max_connections_per_address}: must be >= 0 (0: off)"
            )
        if self.client_address_header and not _HEADER_NAME.fullmatch(self.client_address_header):
            found.append(f"--client-address-header {self.client_address_header!r}: not an HTTP header name")
        if self.log_level not in LOG_LEVELS:
            found.append(f"--log-level {self.log_level!r}: must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            found.append(f"--log-format {self.log_format!r}: must be text or json")
        return found


def _env_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    return None


def build_parser(prog: str = "lipsync-proxy") -> argparse.ArgumentParser:
    """The proxy's flags. Types are left to `settings_from_args` so that every bad value is reported."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="WebSocket <-> gRPC proxy for the lip-sync server, with health, metrics and files.",
        epilog="Environment: WS_PORT, GRPC_ADDR, STATIC_DIR and PROXY_<FLAG> for the others; flags win.",
    )
    add = parser.add_argument
    add("-ws-port", "--ws-port", dest="ws_port", help=f"HTTP/WebSocket port (default {DEFAULT_WS_PORT})")
    add("--host", help="address to bind (default: every interface)")
    add(
        "-grpc-addr",
        "--grpc-addr",
        dest="grpc_addr",
        help=f"backend(s): host:port, h1:p1,h2:p2 or a gRPC target URI (default {DEFAULT_GRPC_ADDR})",
    )
    # The seed Go proxy's real flags, as its run scripts used them: they set the same backends.
    add("-grpc-addrs", "--grpc-addrs", dest="grpc_addrs", help="comma list h1:p1,h2:p2 (as -grpc-addr)")
    add(
        "-start-port",
        "--start-port",
        dest="start_port",
        help="backends on localhost from this port (with -num-servers; default 50051)",
    )
    add(
        "-num-servers",
        "--num-servers",
        dest="num_servers",
        help="backends localhost:START ... localhost:START+N-1 (with -start-port; default 1)",
    )
    add("--static-dir", help="directory served at / (default: the checkout's static/)")
    add("--allowed-origins", help="comma list of scheme://host[:port] or *; default: own host and localhost")
    add("--max-inflight", help="requests one connection may have in flight (default 8)")
    add("--max-inflight-total", help="requests all connections may have in flight (default 1024)")
    add("--timeout", help="deadline of every gRPC call, seconds (default 5)")
    add("--max-batch", help="frames per InferBatch call under load (default 16; 1: no batches)")
    add("--session-timeout", help="deadline of a v2 speaking session's gRPC stream, seconds (default 3600)")
    add("--max-message-size", help="largest inbound WebSocket message, bytes (default 1048576)")
    add(
        "--ping-interval",
        help="seconds between WebSocket pings; a peer silent as long is dropped (default 20)",
    )
    add("--grace-period", help="seconds SIGTERM waits for in-flight work (default 10)")
    add(
        "--rate-limit", help="messages a second one connection may send; more are read later (default 0: off)"
    )
    add(
        "--address-rate-limit",
        help="messages a second all connections of one client address may send (0: off)",
    )
    add("--max-connections-per-address", help="connections one client address may have open (default 0: off)")
    add(
        "--client-address-header",
        help="header naming the client address, set by a trusted reverse proxy (e.g. X-Real-IP)",
    )
    add("--log-level", help="debug, info, warning or error (default info)")
    add("--log-format", help="text or json (default text)")
    add("--quiet-frames", action="store_true", default=None, help="no log line per frame")
    return parser


# Environment variable of each Settings field that has one; the flags of the same fields win.
_ENV = {
    "ws_port": "WS_PORT",
    "host": "PROXY_HOST",
    "grpc_addr": "GRPC_ADDR",
    "static_dir": "STATIC_DIR",
    "allowed_origins": "PROXY_ALLOWED_ORIGINS",
    "max_inflight": "PROXY_MAX_INFLIGHT",
    "max_inflight_total": "PROXY_MAX_INFLIGHT_TOTAL",
    "timeout": "PROXY_TIMEOUT",
    "max_batch": "PROXY_MAX_BATCH",
    "session_timeout": "PROXY_SESSION_TIMEOUT",
    "max_message_size": "PROXY_MAX_MESSAGE_SIZE",
    "ping_interval": "PROXY_PING_INTERVAL",
    "grace_period": "PROXY_GRACE_PERIOD",
    "rate_limit": "PROXY_RATE_LIMIT",
    "address_rate_limit": "PROXY_ADDRESS_RATE_LIMIT",
    "max_connections_per_address": "PROXY_MAX_CONNECTIONS_PER_ADDRESS",
    "client_address_header": "PROXY_CLIENT_ADDRESS_HEADER",
    "log_level": "PROXY_LOG_LEVEL",
    "log_format": "PROXY_LOG_FORMAT",
    "quiet_frames": "PROXY_QUIET_FRAMES",
}


def _backends_flags(namespace: Mapping[str, object], problems: list[str]) -> str | None:
    """`GRPC_ADDR` as the seed Go proxy's flags give it (`-grpc-addrs`, or `-start-port` and
    `-num-servers`); None when neither is given. They name the backends `-grpc-addr` names, so at most
    one of the three ways may be used."""
    addrs, start, count = (namespace.get(name) for name in ("grpc_addrs", "start_port", "num_servers"))
    ways = [
        flag
        for flag, given in (
            ("-grpc-addr", namespace.get("grpc_addr") is not None),
            ("-grpc-addrs", addrs is not None),
            ("-start-port/-num-servers", start is not None or count is not None),
        )
        if given
    ]
    if len(ways) > 1:
        problems.append(f"{' and '.join(ways)} name the same backends: give one of them")
        return None
    if addrs is not None:
        return str(addrs)
    if start is None and count is None:
        return None
    first = _whole(start, "-start-port", DEFAULT_START_PORT, problems)
    servers = _whole(count, "-num-servers", 1, problems)
    if not 1 <= servers <= MAX_NUM_SERVERS:
        problems.append(f"-num-servers {servers}: must be 1..{MAX_NUM_SERVERS}")
    elif not 0 < first <= 65536 - servers:
        problems.append(f"-start-port {first}: the ports {first}..{first + servers - 1} must be 1..65535")
    else:
        return ",".join(f"localhost:{port}" for port in range(first, first + servers))
    return None


def _whole(value: object, flag: str, default: int, problems: list[str]) -> int:
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError:
        problems.append(f"{flag} {value!r}: not an integer")
        return default


def settings_from_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate the settings; raise SettingsError naming every invalid one."""
    env = os.environ if environ is None else environ
    namespace = vars(build_parser().parse_args(list(argv)))
    raw: dict[str, str] = {}
    for name, variable in _ENV.items():
        flag_value = namespace.get(name)
        if flag_value is not None:
            raw[name] = str(flag_value) if not isinstance(flag_value, bool) else ("1" if flag_value else "0")
        elif env.get(variable, "").strip():
            raw[name] = env[variable].strip()

    problems: list[str] = []
    defaults = Settings(static_dir=None)

    def number(name: str, flag: str, kind: type[int] | type[float], default: float) -> float:
        if name not in raw:
            return default
        try:
            return kind(raw[name])
        except ValueError:
            problems.append(f"{flag} {raw[name]!r}: not {'an integer' if kind is int else 'a number'}")
            return default

    def boolean(name: str, default: bool) -> bool:
        if name not in raw:
            return default
        parsed = _env_bool(raw[name])
        if parsed is None:
            problems.append(f"{_ENV[name]} {raw[name]!r}: must be true or false")
            return default
        return parsed

    grpc_addr = _backends_flags(namespace, problems) or raw.get("grpc_addr", defaults.grpc_addr)
    static_dir = Path(raw["static_dir"]) if "static_dir" in raw else checkout_static_dir()
    origins = tuple(o.strip() for o in raw.get("allowed_origins", "").split(",") if o.strip())
    settings = Settings(
        ws_port=int(number("ws_port", "--ws-port", int, defaults.ws_port)),
        host=raw.get("host", defaults.host),
        grpc_addr=grpc_addr,
        static_dir=static_dir,
        allowed_origins=origins,
        max_inflight=int(number("max_inflight", "--max-inflight", int, defaults.max_inflight)),
        max_inflight_total=int(
            number("max_inflight_total", "--max-inflight-total", int, defaults.max_inflight_total)
        ),
        timeout_s=number("timeout", "--timeout", float, defaults.timeout_s),
        max_batch=int(number("max_batch", "--max-batch", int, defaults.max_batch)),
        session_timeout_s=number("session_timeout", "--session-timeout", float, defaults.session_timeout_s),
        max_message_size=int(
            number("max_message_size", "--max-message-size", int, defaults.max_message_size)
        ),
        ping_interval_s=number("ping_interval", "--ping-interval", float, defaults.ping_interval_s),
        grace_period_s=number("grace_period", "--grace-period", float, defaults.grace_period_s),
        rate_limit=number("rate_limit", "--rate-limit", float, defaults.rate_limit),
        address_rate_limit=number(
            "address_rate_limit", "--address-rate-limit", float, defaults.address_rate_limit
        ),
        max_connections_per_address=int(
            number(
                "max_connections_per_address",
                "--max-connections-per-address",
                int,
                defaults.max_connections_per_address,
            )
        ),
        client_address_header=raw.get("client_address_header", defaults.client_address_header),
        log_level=raw.get("log_level", defaults.log_level).lower(),
        log_format=raw.get("log_format", defaults.log_format).lower(),
        quiet_frames=boolean("quiet_frames", defaults.quiet_frames),
        tracing=tracing_settings(env, problems),
    )
    problems += settings.problems()
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return settings
