"""The proxy's one settings object, built from flags and the environment and validated at start.

Each field of `Settings` is one setting: its type says how its text is read, `setting(...)` gives its
default and help. Its flag is `--<field>` (less a `_s` suffix, `_` as `-`) and its variable
`PROXY_<FLAG>`, except for the seed's names, which are kept (`-ws-port`, `-grpc-addr`, `WS_PORT`,
`GRPC_ADDR`, `STATIC_DIR`); the seed Go proxy's real backend flags (`-grpc-addrs`,
`-start-port`/`-num-servers`) set `grpc_addr` too. A flag beats the environment, and every invalid setting
is reported at once in one message. Tracing has no flags: the standard `OTEL_*` variables configure it
(`lipsync_common.tracing`), and their problems are reported in the same message.
"""

from __future__ import annotations

import argparse
import os
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from lipsync_common.tracing import TracingConfig
from lipsync_proxy.targets import TargetError, parse_grpc_addr

DEFAULT_START_PORT = 50051
#: The most backends `-num-servers` may generate.
MAX_NUM_SERVERS = 256
LOG_LEVELS = ("debug", "info", "warning", "error")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def checkout_static_dir() -> Path | None:
    """The repository's `static/` when the proxy runs from a checkout (an editable install), else None."""
    # settings.py sits at services/proxy/src/lipsync_proxy/ in the repository.
    candidate = Path(__file__).resolve().parents[4] / "static"
    return candidate if candidate.is_dir() else None


class SettingsError(ValueError):
    """One or more settings are invalid; the message names every problem."""


def setting(
    default: object,
    help_text: str,
    *,
    env: str | None = None,
    seed_name: bool = False,
    factory: Callable[[], object] | None = None,
) -> Any:
    """A field of `Settings` with its flag's help, to which a default that is a number or a string is
    added. `env`: its variable, when not `PROXY_<FLAG>`; `seed_name`: its flag is spelled with one dash
    too; `factory`: makes the default instead."""
    if isinstance(default, int | float | str) and not isinstance(default, bool) and default != "":
        help_text += f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
    metadata = {"help": help_text, "env": env, "seed_name": seed_name}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """How one proxy process runs."""

    ws_port: int = setting(8086, "HTTP/WebSocket port", env="WS_PORT", seed_name=True)
    host: str = setting("", "address to bind (default: every interface, IPv4 and IPv6)")
    grpc_addr: str = setting(
        "localhost:50051",
        "backend(s): host:port, h1:p1,h2:p2 or a gRPC target URI",
        env="GRPC_ADDR",
        seed_name=True,
    )
    static_dir: Path | None = setting(  # noqa: RUF009  (a field(), as `setting` returns)
        None,
        "directory served at / (default: the checkout's static/)",
        env="STATIC_DIR",
        factory=checkout_static_dir,
    )
    allowed_origins: tuple[str, ...] = setting(
        (), "comma list of scheme://host[:port] or *; default: own host and localhost"
    )
    max_inflight: int = setting(8, "requests one connection may have in flight")
    max_inflight_total: int = setting(1024, "requests all connections may have in flight")
    timeout_s: float = setting(5.0, "deadline of every gRPC call, seconds")
    # lipsync_proxy.dispatch
    max_batch: int = setting(16, "frames per InferBatch call under load; 1: no batches")
    session_timeout_s: float = setting(3600.0, "deadline of a v2 speaking session's gRPC stream, seconds")
    max_message_size: int = setting(1 << 20, "largest inbound WebSocket message, bytes")
    ping_interval_s: float = setting(
        20.0, "seconds between WebSocket pings; a peer silent as long is dropped"
    )
    grace_period_s: float = setting(10.0, "seconds SIGTERM waits for in-flight work")
    # lipsync_proxy.rate_limit
    rate_limit: float = setting(0.0, "messages a second one connection may send; more are read later; 0: off")
    address_rate_limit: float = setting(
        0.0, "messages a second all connections of one address may send; 0: off"
    )
    max_connections_per_address: int = setting(0, "connections one client address may have open; 0: off")
    client_address_header: str = setting(
        "", "header naming the client address, set by a trusted reverse proxy in front (e.g. X-Real-IP)"
    )
    log_level: str = setting("info", "debug, info, warning or error")
    log_format: str = setting("text", "text or json")
    quiet_frames: bool = setting(False, "no log line per frame")
    tracing: TracingConfig = field(default_factory=TracingConfig)

    def problems(self) -> list[str]:
        """Every invalid setting, described; empty when all is well."""
        found: list[str] = []

        def check(valid: object, name: str, problem: str) -> None:
            if not valid:
                value = getattr(self, name)
                shown = repr(value) if isinstance(value, str) else value
                found.append(f"{_flag(name)} {shown}: {problem}")

        check(0 <= self.ws_port <= 65535, "ws_port", "must be 0..65535")
        try:
            parse_grpc_addr(self.grpc_addr)
        except TargetError as exc:
            check(False, "grpc_addr", str(exc))
        check(self.static_dir is None or self.static_dir.is_dir(), "static_dir", "not a directory")
        for origin in self.allowed_origins:
            if origin != "*" and "://" not in origin:
                found.append(f"--allowed-origins {origin!r}: must be * or scheme://host[:port]")
        check(self.max_inflight >= 1, "max_inflight", "must be at least 1")
        check(
            self.max_inflight_total >= self.max_inflight,
            "max_inflight_total",
            f"must be at least --max-inflight ({self.max_inflight})",
        )
        check(self.timeout_s > 0, "timeout_s", "must be > 0 seconds")
        check(1 <= self.max_batch <= 256, "max_batch", "must be 1..256 (1: no batches)")
        check(self.session_timeout_s > 0, "session_timeout_s", "must be > 0 seconds")
        check(self.max_message_size >= 64, "max_message_size", "must be at least 64 bytes")
        check(self.ping_interval_s > 0, "ping_interval_s", "must be > 0 seconds")
        check(self.grace_period_s >= 0, "grace_period_s", "must be >= 0 seconds")
        check(self.rate_limit >= 0, "rate_limit", "must be >= 0 messages a second (0: no limit)")
        check(self.address_rate_limit >= 0, "address_rate_limit", "must be >= 0 a second (0: no limit)")
        check(self.max_connections_per_address >= 0, "max_connections_per_address", "must be >= 0 (0: off)")
        header = self.client_address_header
        check(
            not header or _HEADER_NAME.fullmatch(header), "client_address_header", "not an HTTP header name"
        )
        check(self.log_level in LOG_LEVELS, "log_level", f"must be one of {', '.join(LOG_LEVELS)}")
        check(self.log_format in ("text", "json"), "log_format", "must be text or json")
        return found


def _flag(name: str) -> str:
    return "--" + name.removesuffix("_s").replace("_", "-")


def _variable(option: Field[Any]) -> str:
    return option.metadata["env"] or "PROXY_" + _flag(option.name)[2:].upper().replace("-", "_")


def _options() -> list[Field[Any]]:
    """The fields of `Settings` that have a flag (all but tracing)."""
    return [option for option in fields(Settings) if "help" in option.metadata]


def build_parser(prog: str = "lipsync-proxy") -> argparse.ArgumentParser:
    """The proxy's flags. Values stay text for `settings_from_args`, so that every bad one is reported."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="WebSocket <-> gRPC proxy for the lip-sync server, with health, metrics and files.",
        epilog="Environment: WS_PORT, GRPC_ADDR, STATIC_DIR and PROXY_<FLAG> for the others; flags win.",
    )
    for option in _options():
        flag = _flag(option.name)
        names = [flag[1:], flag] if option.metadata["seed_name"] else [flag]
        help_text = option.metadata["help"]
        if option.default is False:  # a switch: the flag alone turns it on
            parser.add_argument(*names, dest=option.name, action="store_const", const="1", help=help_text)
        else:
            parser.add_argument(
                *names, dest=option.name, metavar=_variable(option).removeprefix("PROXY_"), help=help_text
            )
    # The seed Go proxy's real flags, as its run scripts used them: they set the same backends.
    add = parser.add_argument
    add("-grpc-addrs", "--grpc-addrs", dest="grpc_addrs", help="comma list h1:p1,h2:p2 (as -grpc-addr)")
    add(
        "-start-port",
        "--start-port",
        dest="start_port",
        help=f"backends on localhost from this port (with -num-servers; default {DEFAULT_START_PORT})",
    )
    add(
        "-num-servers",
        "--num-servers",
        dest="num_servers",
        help="backends localhost:START ... localhost:START+N-1 (with -start-port; default 1)",
    )
    return parser


def _switch(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


#: How the text of a flag or variable becomes the value of its field, by the field's type, and what is
#: wrong with a text it cannot read.
_PARSERS: dict[object, tuple[Callable[[str], object], str]] = {
    int: (int, "not an integer"),
    float: (float, "not a number"),
    bool: (_switch, "must be true or false"),
    str: (str, ""),
    Path | None: (Path, ""),
    tuple[str, ...]: (_comma_list, ""),
}


def _backends_flags(flags: Mapping[str, str | None], problems: list[str]) -> str | None:
    """`GRPC_ADDR` as the seed Go proxy's flags give it (`-grpc-addrs`, or `-start-port` and
    `-num-servers`); None when neither is given. They name the backends `-grpc-addr` names, so at most
    one of the three ways may be used."""
    addrs, start, count = flags["grpc_addrs"], flags["start_port"], flags["num_servers"]
    ways = [
        way
        for way, given in (
            ("-grpc-addr", flags["grpc_addr"] is not None),
            ("-grpc-addrs", addrs is not None),
            ("-start-port/-num-servers", start is not None or count is not None),
        )
        if given
    ]
    if len(ways) > 1:
        problems.append(f"{' and '.join(ways)} name the same backends: give one of them")
        return None
    if addrs is not None:
        return addrs
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


def _whole(text: str | None, flag: str, default: int, problems: list[str]) -> int:
    try:
        return default if text is None else int(text)
    except ValueError:
        problems.append(f"{flag} {text!r}: not an integer")
        return default


def settings_from_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate the settings; raise SettingsError naming every invalid one."""
    env = os.environ if environ is None else environ
    flags = vars(build_parser().parse_args(list(argv)))
    types = typing.get_type_hints(Settings)
    problems: list[str] = []
    values: dict[str, Any] = {}
    for option in _options():
        flag, variable = _flag(option.name), _variable(option)
        if flags[option.name] is not None:
            source, text = flag, flags[option.name]
        elif env.get(variable, "").strip():
            source, text = variable, env[variable].strip()
        else:
            continue
        parse, problem = _PARSERS[types[option.name]]
        try:
            values[option.name] = parse(text)
        except ValueError:
            problems.append(f"{source} {text!r}: {problem}")
    backends = _backends_flags(flags, problems)
    if backends is not None:
        values["grpc_addr"] = backends
    for name in ("log_level", "log_format"):  # in any case
        if name in values:
            values[name] = values[name].lower()
    settings = Settings(**values, tracing=TracingConfig.from_environ(env))
    problems += settings.tracing.problems
    problems += settings.problems()
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return settings
