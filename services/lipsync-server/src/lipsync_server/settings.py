"""The server's one settings object, built from flags and the environment and validated at start."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9464
MODEL_NAME_HELP = "model names to load from --models-dir (default: every package there)"


class SettingsError(ValueError):
    """One or more settings are invalid; the message lists every problem."""


@dataclass(frozen=True)
class Settings:
    """How one lipsync-server process runs. Every field has a flag and a `LIPSYNC_*` variable."""

    port: int = DEFAULT_PORT
    host: str = "[::]"
    models_dir: Path | None = None
    models: tuple[str, ...] = ()
    cache_dir: Path = Path.home() / ".cache" / "lipsync"
    device: str = "auto"
    # auto: a model's float16 copy on CUDA when the package has one, float32 otherwise (engines/unet328).
    precision: str = "auto"
    jpeg_quality: int = 85
    max_batch: int = 8
    batch_wait_ms: float = 2.0
    workers: int = max(1, os.cpu_count() or 1)
    max_queue: int = 64
    metrics_port: int = DEFAULT_METRICS_PORT
    # LoadModel/UnloadModel: off unless asked for, since they reach the file system (below --models-dir).
    admin: bool = False
    grace_period_s: float = 10.0
    log_level: str = "info"
    log_format: str = "text"

    @property
    def metrics_host(self) -> str:
        """The address /metrics binds: `--host` itself, but every IPv4 interface for a wildcard, since
        an IPv6 wildcard fails in containers without IPv6 where grpc falls back to IPv4 itself."""
        host = self.host.strip("[]")
        return "0.0.0.0" if host in ("", "::", "0.0.0.0") else host

    def problems(self) -> list[str]:
        """Every invalid setting, described; empty when all is well."""
        found = []
        if not 0 <= self.port <= 65535:
            found.append(f"--port {self.port}: must be 0..65535")
        if not 0 <= self.metrics_port <= 65535:
            found.append(f"--metrics-port {self.metrics_port}: must be 0..65535 (0 disables)")
        if self.models_dir is not None and not self.models_dir.is_dir():
            found.append(f"--models-dir {self.models_dir}: not a directory")
        if self.device not in ("auto", "cpu", "cuda"):
            found.append(f"--device {self.device!r}: must be auto, cpu or cuda")
        if self.precision not in ("auto", "fp32", "fp16"):
            found.append(f"--precision {self.precision!r}: must be auto, fp32 or fp16")
        if not 1 <= self.jpeg_quality <= 100:
            found.append(f"--jpeg-quality {self.jpeg_quality}: must be 1..100")
        if not 1 <= self.max_batch <= 256:
            found.append(f"--max-batch {self.max_batch}: must be 1..256")
        if not 0 <= self.batch_wait_ms <= 1000:
            found.append(f"--batch-wait-ms {self.batch_wait_ms}: must be 0..1000")
        if self.workers < 1:
            found.append(f"--workers {self.workers}: must be at least 1")
        if self.max_queue < 1:
            found.append(f"--max-queue {self.max_queue}: must be at least 1")
        if self.grace_period_s < 0:
            found.append(f"--grace-period {self.grace_period_s}: must be >= 0")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            found.append(f"--log-level {self.log_level!r}: must be debug, info, warning or error")
        if self.log_format not in ("text", "json"):
            found.append(f"--log-format {self.log_format!r}: must be text or json")
        return found


def _env_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def build_parser(prog: str = "lipsync-server") -> argparse.ArgumentParser:
    """Flags of `lipsync-server [serve]`; defaults come from the environment, then from Settings."""
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve lip-synced video frames over gRPC (lipsync.v1 and the seed-compatible service).",
        epilog="Subcommands: `inspect DIR`, `make-demo DIR`, `probe`. Every flag also reads LIPSYNC_<FLAG>.",
    )
    add = parser.add_argument
    add("--port", type=int, default=defaults.port, help="gRPC port (0 picks a free one)")
    add("--host", default=defaults.host, help="address to bind, for gRPC and /metrics")
    add("--models-dir", type=Path, default=None, help="directory of model packages (default: demo avatar)")
    add("--model", dest="models", action="append", default=[], metavar="NAME", help=MODEL_NAME_HELP)
    add("--cache-dir", type=Path, default=defaults.cache_dir, help="where the demo avatar is generated")
    add("--device", default=defaults.device, help="auto, cpu or cuda (neural engines)")
    add(
        "--precision",
        default=defaults.precision,
        help="auto (float16 copies of models on CUDA when a package has them), fp32 or fp16",
    )
    add("--jpeg-quality", type=int, default=defaults.jpeg_quality)
    add("--max-batch", type=int, default=defaults.max_batch, help="largest micro-batch (neural engines)")
    add("--batch-wait-ms", type=float, default=defaults.batch_wait_ms, help="how long a batch may wait")
    add("--workers", type=int, default=defaults.workers, help="inference threads")
    add("--max-queue", type=int, default=defaults.max_queue, help="frames queued before RESOURCE_EXHAUSTED")
    add("--metrics-port", type=int, default=defaults.metrics_port, help="Prometheus /metrics port; 0 = off")
    add(
        "--admin",
        action=argparse.BooleanOptionalAction,
        default=defaults.admin,
        help="serve LoadModel/UnloadModel, for packages below --models-dir (default: off)",
    )
    add("--grace-period", dest="grace_period_s", type=float, default=defaults.grace_period_s, help="seconds")
    add("--log-level", default=defaults.log_level)
    add("--log-format", default=defaults.log_format, help="text or json")
    return parser


_ENV_FLAGS = {
    "LIPSYNC_PORT": "--port",
    "LIPSYNC_HOST": "--host",
    "LIPSYNC_MODELS_DIR": "--models-dir",
    "LIPSYNC_CACHE_DIR": "--cache-dir",
    "LIPSYNC_DEVICE": "--device",
    "LIPSYNC_PRECISION": "--precision",
    "LIPSYNC_JPEG_QUALITY": "--jpeg-quality",
    "LIPSYNC_MAX_BATCH": "--max-batch",
    "LIPSYNC_BATCH_WAIT_MS": "--batch-wait-ms",
    "LIPSYNC_WORKERS": "--workers",
    "LIPSYNC_MAX_QUEUE": "--max-queue",
    "LIPSYNC_METRICS_PORT": "--metrics-port",
    "LIPSYNC_GRACE_PERIOD": "--grace-period",
    "LIPSYNC_LOG_LEVEL": "--log-level",
    "LIPSYNC_LOG_FORMAT": "--log-format",
}


def settings_from_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Parse flags; each `LIPSYNC_*` variable acts as a flag written before them, so a flag beats it."""
    env = os.environ if environ is None else environ
    env_args: list[str] = []
    for variable, flag in _ENV_FLAGS.items():
        if env.get(variable):
            env_args += [flag, env[variable]]
    if env.get("LIPSYNC_ADMIN"):
        try:
            env_args.append("--admin" if _env_bool(env["LIPSYNC_ADMIN"]) else "--no-admin")
        except argparse.ArgumentTypeError as exc:
            raise SettingsError(f"LIPSYNC_ADMIN: {exc}") from exc
    parser = build_parser()
    namespace = parser.parse_args([*env_args, *argv])
    # --model repeats, so LIPSYNC_MODELS (a comma list) applies only when no --model flag is given.
    env_models = tuple(name.strip() for name in env.get("LIPSYNC_MODELS", "").split(",") if name.strip())
    models = tuple(namespace.models) or env_models
    settings = Settings(
        port=namespace.port,
        host=namespace.host,
        models_dir=namespace.models_dir,
        models=models,
        cache_dir=namespace.cache_dir,
        device=namespace.device,
        precision=namespace.precision,
        jpeg_quality=namespace.jpeg_quality,
        max_batch=namespace.max_batch,
        batch_wait_ms=namespace.batch_wait_ms,
        workers=namespace.workers,
        max_queue=namespace.max_queue,
        metrics_port=namespace.metrics_port,
        admin=namespace.admin,
        grace_period_s=namespace.grace_period_s,
        log_level=namespace.log_level,
        log_format=namespace.log_format,
    )
    problems = settings.problems()
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    return settings
