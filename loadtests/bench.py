"""`make bench`: every benchmark of SPEC §9 in one run, written to docs/performance.md and a JSON file.

    python -m loadtests.bench [--only proxy,idle,e2e,viewers,server] [--duration 5] [--quick]
        [--output docs/performance.md] [--json artifacts/bench.json] [--from-json FILE]

- proxy: the proxy (v1 and v2) as deployed (the `OTEL_*` settings compose ships, exporting to the
  project's OTLP sink, and no log line per frame), and v1 with tracing off and with every
  frame sampled, side by side with the direct unary and direct streaming callers, against the
  fixed-payload benchmark backend: C = 1, 8, 64 connections at 0 ms and 17 ms backend delay, and one
  connection pipelining 8 requests against the 17 ms backend;
- idle: the proxy's memory for 1,000 idle WebSocket connections;
- e2e: wss through nginx (TLS) and the proxy, against the proxy alone and direct unary calls;
- viewers: how many 25 FPS viewers one proxy and one lipsync-server hold at p99 < 100 ms;
- server: the sprite engine's full-frame and face-crop frames/s per core, and the JPEG splice.

Every process it measures is started here on free loopback ports and stopped afterwards. Only the
sections that ran are rewritten in docs/performance.md; the others (and the unet328 section of
`loadtests/bench_engine.py`) are kept.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import uvloop
from lipsync_otlp_sink.process import SinkProcess

from lipsync_server.settings import Settings
from loadtests import bench_report, bench_server, procstat
from loadtests.direct import direct_load
from loadtests.driver import Plan, Watched
from loadtests.idle import idle_connections
from loadtests.perfdoc import write_section
from loadtests.processes import REPO, BackendProcess, NginxProcess, ProxyProcess, ServerProcess, deployed_otel
from loadtests.progress import Progress
from loadtests.stats import LatencySummary, RunResult
from loadtests.turns import taking_turns
from loadtests.viewers import Ramp, StepResult, summary, viewers_direct, viewers_through_proxy
from loadtests.wsload import ws_load

SECTIONS = ("proxy", "idle", "e2e", "viewers", "server")
#: The proxy rows besides those as deployed: tracing off, and every frame sampled.
TRACING_OFF = " tracing off"
ALWAYS_ON = " always_on"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchSettings:
    duration_s: float = 5.0
    warmup_s: float = 1.0
    #: Each proxy row is the median (by frames/s) of this many runs, the four clients alternating: the
    #: proxy's CPU per frame differed by up to 1.5x between single runs on the shared 2-core machine.
    rounds: int = 3
    connections: tuple[int, ...] = (1, 8, 64)
    delays_ms: tuple[float, ...] = (0.0, 17.0)
    pipeline_depth: int = 8
    pipeline_delay_ms: float = 17.0
    #: Pairs of requests for the added latency at one connection, direct unary and the proxy taking turns.
    turn_pairs: int = 4000
    idle_connections: int = 1000
    server_duration_s: float = 3.0
    proxy_viewers: Ramp = field(default_factory=lambda: Ramp(start=10, step=10))
    server_viewers: Ramp = field(default_factory=lambda: Ramp(start=2, step=2))
    cache_dir: Path = field(default_factory=lambda: Settings().cache_dir)

    def quick(self) -> BenchSettings:
        """A short pass of everything, to see that it all runs (figures are rough)."""
        return replace(
            self,
            duration_s=1.0,
            warmup_s=0.3,
            rounds=1,
            turn_pairs=200,
            idle_connections=200,
            server_duration_s=0.5,
            proxy_viewers=replace(self.proxy_viewers, step_s=1.0, settle_s=0.3),
            server_viewers=replace(self.server_viewers, step_s=1.0, settle_s=0.3),
        )


class Bench:
    """Runs the sections and keeps their results in one JSON-ready document."""

    def __init__(self, settings: BenchSettings, work_dir: Path) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self.results: dict[str, Any] = {"settings": _json(asdict(settings))}
        self.progress = Progress(every_s=5.0)

    def plan(self, connections: int, depth: int = 1) -> Plan:
        s = self.settings
        return Plan(connections=connections, depth=depth, warmup_s=s.warmup_s, duration_s=s.duration_s)

    async def proxy(self) -> None:
        runs: list[dict[str, Any]] = []
        pipelined: list[dict[str, Any]] = []
        turns: dict[str, Any] = {}
        sink = SinkProcess().start()
        try:
            sink.wait_ready(30.0)
            deployed = deployed_otel(sink.endpoint)
            tracing = {
                "": deployed,
                TRACING_OFF: {},
                ALWAYS_ON: deployed | {"OTEL_TRACES_SAMPLER": "always_on"},
            }
            for delay in self.settings.delays_ms:
                with (
                    BackendProcess(self.work_dir, delay_ms=delay) as backend,
                    contextlib.ExitStack() as stack,
                ):
                    proxies = {
                        suffix: stack.enter_context(
                            ProxyProcess(self.work_dir, grpc_addr=backend.address, otel=otel)
                        )
                        for suffix, otel in tracing.items()
                    }
                    labels = {"delay_ms": delay}
                    for connections in self.settings.connections:
                        runs += await self._side_by_side(backend, proxies, self.plan(connections), labels)
                    if delay == self.settings.pipeline_delay_ms:
                        plan = self.plan(1, self.settings.pipeline_depth)
                        pipelined += await self._side_by_side(backend, proxies, plan, labels)
                    if delay == 0.0:
                        logger.info("running direct unary and proxy v1 taking turns, delay=0.0ms")
                        pairs = self.settings.turn_pairs
                        turns = await taking_turns(backend.address, proxies[""].ws_url, pairs, pairs // 10)
            self.results["proxy_spans_exported"] = len(sink.spans(service="lipsync-proxy"))
        finally:
            sink.stop()
        self.results["proxy"] = runs
        self.results["pipelining"] = pipelined
        self.results["turns"] = turns
        self.results["proxy_tracing"] = {name: dict(otel) for name, otel in tracing.items()}

    async def _side_by_side(
        self,
        backend: BackendProcess,
        proxies: Mapping[str, ProxyProcess],
        plan: Plan,
        labels: Mapping[str, object],
    ) -> list[dict[str, Any]]:
        """The clients one after the other with the same plan (direct unary and stream; through the proxy
        as deployed v1 and v2, and v1 with tracing off and with every frame sampled), `rounds` times;
        for each client its median run by frames/s."""
        tag = f"C={plan.connections} D={plan.depth} delay={labels['delay_ms']}ms"
        runs: dict[str, list[RunResult]] = {}
        for _ in range(self.settings.rounds):
            for mode in ("unary", "stream"):
                name = f"direct {mode}"
                result = await direct_load(
                    backend.address,
                    mode,
                    plan,
                    watch=[Watched(backend.pid, "backend")],
                    labels=labels,
                    progress=self._progress(name, tag),
                )
                runs.setdefault(name, []).append(result)
            for protocol, suffix in (("v1", ""), ("v2", ""), ("v1", TRACING_OFF), ("v1", ALWAYS_ON)):
                name = f"proxy {protocol}{suffix}"
                proxy = proxies[suffix]
                result = await ws_load(
                    proxy.ws_url,
                    protocol,
                    plan,
                    watch=[Watched(proxy.pid, "proxy"), Watched(backend.pid, "backend")],
                    labels=labels,
                    progress=self._progress(name, tag),
                    name=name,
                )
                runs.setdefault(name, []).append(result)
        chosen = [median_run(results) for results in runs.values()]
        for result in chosen:
            _log_run(result, tag)
        return [result.summary() for result in chosen]

    def _progress(self, name: str, tag: str) -> Progress | None:
        logger.info("running %s %s", name, tag)
        return self.progress if self.settings.duration_s >= 10 else None

    async def idle(self) -> None:
        rows = []
        for frames_each in (0, 1):
            with (
                BackendProcess(self.work_dir) as backend,
                ProxyProcess(self.work_dir, grpc_addr=backend.address) as proxy,
            ):
                # Warm the proxy (imports, gRPC channel, first frames) so the baseline is a serving proxy.
                await ws_load(proxy.ws_url, "v1", Plan(connections=4, warmup_s=0.0, count=200))
                result = await idle_connections(
                    proxy.ws_url, proxy.pid, self.settings.idle_connections, frames_each=frames_each
                )
                logger.info(
                    "idle: %.1f KiB per connection (%d frames each)", result.kib_per_connection, frames_each
                )
                rows.append(asdict(result) | {"kib_per_connection": result.kib_per_connection})
        self.results["idle"] = rows

    async def e2e(self) -> None:
        nginx, openssl = shutil.which("nginx") or _sbin("nginx"), shutil.which("openssl")
        if nginx is None or openssl is None:
            self.results["e2e"] = []
            self.results["e2e_skipped"] = "Not measured: nginx or openssl is not installed on this machine."
            logger.warning("e2e skipped: nginx or openssl missing")
            return
        plan = self.plan(1)
        with (
            BackendProcess(self.work_dir) as backend,
            ProxyProcess(self.work_dir, grpc_addr=backend.address) as proxy,
        ):
            edge = NginxProcess(self.work_dir, proxy_port=proxy.port, nginx=nginx, openssl=openssl)
            with edge:
                watch = [Watched(proxy.pid, "proxy"), Watched(backend.pid, "backend")]
                runs = [
                    await direct_load(backend.address, "unary", plan, watch=watch),
                    await ws_load(proxy.ws_url, "v1", plan, watch=watch),
                    await ws_load(
                        edge.wss_url, "v1", plan, watch=watch, tls=edge.client_tls(), name="nginx+proxy v1"
                    ),
                ]
        for run in runs:
            _log_run(run, "e2e")
        self.results["e2e"] = [run.summary() for run in runs]
        self.results["e2e_skipped"] = None

    async def viewers(self) -> None:
        entries: dict[str, Any] = {}
        delay = self.settings.pipeline_delay_ms
        with (
            BackendProcess(self.work_dir, delay_ms=delay) as backend,
            ProxyProcess(self.work_dir, grpc_addr=backend.address) as proxy,
        ):
            ramp = self.settings.proxy_viewers
            steps = await viewers_through_proxy(proxy.ws_url, ramp, Progress(every_s=0.0))
            entries["proxy"] = self._viewers_entry(
                f"one proxy (v1) in front of the benchmark backend ({delay:g} ms per frame)",
                steps,
                ramp,
                f"python -m loadtests.viewers --url ws://…/ws --start {ramp.start} --step {ramp.step}",
            )
        with ServerProcess(self.work_dir, cache_dir=self.settings.cache_dir) as server:
            ramp = self.settings.server_viewers
            steps = await viewers_direct(server.address, ramp, Progress(every_s=0.0))
            entries["server"] = self._viewers_entry(
                "one lipsync-server, demo avatar, full frames (gRPC Infer, no proxy)",
                steps,
                ramp,
                f"python -m loadtests.viewers --addr 127.0.0.1:50051 --start {ramp.start} --step {ramp.step}",
            )
        self.results["viewers"] = entries

    def _viewers_entry(self, what: str, steps: list[StepResult], ramp: Ramp, command: str) -> dict[str, Any]:
        entry = summary(steps, ramp) | {"what": what, "command": f"`{command}`"}
        logger.info("viewers: %s holds %s", what, entry["capacity_viewers"])
        return entry

    def server(self) -> None:
        engine, package = bench_server.demo_package(self.settings.cache_dir)
        duration = self.settings.server_duration_s
        throughput = bench_server.server_benchmarks(engine, package, duration)
        self.results["server"] = [
            asdict(row) | {"per_core": row.per_core, "per_wall_s": row.per_wall_s} for row in throughput
        ]
        splice = bench_server.splice_table(np.array(package.frames.frame(0)), duration)
        self.results["splice"] = [asdict(row) for row in splice]
        for row in throughput:
            logger.info("server: %s %.0f frames/s per core", row.name, row.per_core)


def _sbin(name: str) -> str | None:
    """Debian installs nginx in /usr/sbin, which is not on every user's PATH."""
    path = Path("/usr/sbin") / name
    return str(path) if path.exists() else None


def median_run(results: Sequence[RunResult]) -> RunResult:
    """The run whose frames/s is the median of `results` (the lower middle one of an even count)."""
    ordered = sorted(results, key=lambda result: result.frames_per_s)
    return ordered[(len(ordered) - 1) // 2]


def _log_run(result: RunResult, tag: str) -> None:
    latency = LatencySummary.of(result.latencies_ms)
    logger.info(
        "%s %s: %.0f frames/s, p50 %.3f ms, p99 %.3f ms, proxy %.0f µs/frame, errors %s",
        result.name,
        tag,
        result.frames_per_s,
        latency.p50,
        latency.p99,
        result.cpu_us_per_frame("proxy"),
        dict(result.errors),
    )


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def machine() -> dict[str, str]:
    """The machine and the software versions the figures were measured with."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as info:
        memory_kib = int(info.readline().split()[1])
    packages = ("grpcio", "protobuf", "websockets", "uvloop", "opencv-python-headless", "numpy")
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in packages)
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{memory_kib / 1024 / 1024:.0f} GiB",
        "system": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "packages": versions,
    }


def git_commit() -> str:
    """The checkout's commit (abbreviated), with `+` when the working tree has changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+" if dirty else "")


def raise_open_files_limit() -> None:
    """1,000 idle connections need more sockets than the usual soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_sections(bench: Bench, sections: Sequence[str]) -> None:
    """Run `sections` in order, noting when, at which commit and under which load each ran."""
    commit = git_commit()
    for section in sections:
        started, load = time.perf_counter(), procstat.load_average()
        logger.info("section %s", section)
        if section == "server":
            bench.server()
        else:
            await getattr(bench, section)()
        bench.results.setdefault("measured", {})[section] = {
            "at": time.strftime("%Y-%m-%d %H:%M %Z"),
            "commit": commit,
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "load_average_start": load,
            "load_average_end": procstat.load_average(),
        }
        logger.info("section %s done in %.0f s", section, time.perf_counter() - started)


def merged(previous: dict[str, Any], latest: dict[str, Any]) -> dict[str, Any]:
    """The results of an earlier run updated with those of this run, section by section, so a run of
    a few sections keeps the others' figures (and the targets see them all)."""
    return previous | latest | {"measured": previous.get("measured", {}) | latest.get("measured", {})}


def write_document(results: dict[str, Any], sections: Sequence[str], output: Path) -> None:
    """Write the machine and targets sections and those that ran."""
    for key in ("machine", "targets", *sections):
        write_section(output, key, bench_report.RENDERERS[key](results))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the benchmarks and write docs/performance.md.")
    add = parser.add_argument
    add(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma list of sections (default all: {','.join(SECTIONS)})",
    )
    add(
        "--duration",
        type=float,
        default=BenchSettings.duration_s,
        help="seconds measured per run (default 5)",
    )
    add("--quick", action="store_true", help="a short pass of everything: checks the tooling, rough figures")
    add("--output", type=Path, default=REPO / "docs" / "performance.md")
    add("--json", type=Path, default=REPO / "artifacts" / "bench.json", help="all results, machine-readable")
    add("--from-json", type=Path, default=None, help="re-render docs from a saved results file; run nothing")
    add("--cache-dir", type=Path, default=Settings().cache_dir, help="lipsync-server's demo avatar cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.from_json is not None:
        write_document(json.loads(args.from_json.read_text()), sections, args.output)
        return
    settings = BenchSettings(duration_s=args.duration, cache_dir=args.cache_dir)
    if args.quick:
        settings = settings.quick()
    raise_open_files_limit()
    with tempfile.TemporaryDirectory(prefix="lipsync-bench-") as work:
        bench = Bench(settings, Path(work))
        bench.results["machine"] = machine()
        uvloop.run(run_sections(bench, sections))
    previous = json.loads(args.json.read_text()) if args.json.exists() else {}
    results = merged(previous, _json(bench.results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    write_document(results, sections, args.output)
    logger.info("wrote %s and %s", args.output, args.json)


if __name__ == "__main__":
    main()
