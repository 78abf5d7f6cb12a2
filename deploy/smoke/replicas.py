"""The replica check (`make replicas`): three lipsync-server replicas behind one compose service name,
end to end through nginx TLS, while one of them is stopped and started again.

1. Build the images as the smoke test does (smoke.py) and start the stack with compose.ci.yaml and
   `--scale lipsync-server=3`, under its own project name, on free ports of 127.0.0.1.
2. Wait until every container is healthy and the proxy's /health (through nginx) lists three SERVING
   backends: the proxy finds the replicas through the name `lipsync-server` alone.
3. Keep a steady load for the whole check: WebSocket connections over wss:// through nginx, each with a
   few v1 frame requests in flight. Every request sent must be answered with a valid JPEG: one that is
   not (an error reply, a lost connection) is a failure.
4. Spread: every replica's own /metrics (read inside its container) counts frames.
5. Under that load, stop one replica with SIGTERM (`docker stop`, its grace period honoured), then,
   separately, another with SIGKILL (`docker kill`). Each time: the time until /health no longer lists
   it as SERVING and shows the two others SERVING; then `docker start` it again and the time until
   /health shows three SERVING and the replica's own frame count grows (it is used again), the proxy
   untouched throughout.
6. Print one JSON summary line (also artifacts/replicas/summary.json) with the requests sent, served
   and failed, the frames each replica counted (before the stops, just before its own stop, and at the
   end since its process started) and the times of step 5; always tear the stack down
   (compose logs kept in artifacts/replicas/compose.log on failure); exit 0 only when it passed.

Progress goes to stderr. Run from the repository root: .venv/bin/python deploy/smoke/replicas.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import websockets
from smoke import (
    REPO,
    TIME_UNIT_S,
    TLS_CERT_IN_NGINX,
    SmokeError,
    Stack,
    build_and_start,
    container_state,
    guarded,
    jpeg_problem,
    report,
    run,
    v1_request,
)

logger = logging.getLogger("replicas")

PROJECT = "lipsync-replicas"
SERVER = "lipsync-server"
SERVER_METRICS_URL = "http://127.0.0.1:9464/metrics"
FRAMES_METRIC = "lipsync_server_frames_total"
# Reads a replica's metrics inside its container: the server image has Python, and the metrics port is
# not published (nothing of a scaled service may be).
READ_METRICS = (
    f"import urllib.request; print(urllib.request.urlopen({SERVER_METRICS_URL!r}, timeout=5).read().decode())"
)


# ---- pure helpers -------------------------------------------------------------------------------------


def frames_counted(metrics_text: str) -> int:
    """The sum of the server's frame counter over its labels in a Prometheus text exposition."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(FRAMES_METRIC + "{") or line.startswith(FRAMES_METRIC + " "):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def serving_addresses(health: dict[str, object]) -> set[str]:
    """The addresses of the backends the proxy's /health reply lists as SERVING. A name the proxy
    resolves is listed per address as `host:port (address)`; other entries count by their name."""
    found = set()
    backends = health.get("backends")
    for backend in backends if isinstance(backends, list) else []:
        if isinstance(backend, dict) and backend.get("status") == "SERVING":
            name = str(backend.get("name", ""))
            found.add(name.rsplit("(", 1)[1].rstrip(")") if name.endswith(")") else name)
    return found


def listed_addresses(health: dict[str, object]) -> int:
    """How many backends /health lists, whatever their status."""
    backends = health.get("backends")
    return len(backends) if isinstance(backends, list) else 0


@dataclass
class Load:
    """What the clients sent and got back."""

    sent: int = 0
    served: int = 0
    failed: int = 0
    samples: list[str] = field(default_factory=list)

    def fail(self, what: str, count: int = 1) -> None:
        self.failed += count
        if len(self.samples) < 5:
            self.samples.append(what)


@dataclass
class StopFigures:
    """One replica stopped under load and started again; times in seconds from the stop command."""

    signal: str
    replica: str
    address: str
    frames_before_stop: int
    stop_command_s: float | None = None
    left_out_s: float | None = None
    listed_two_s: float | None = None
    serving_again_s: float | None = None
    used_again_s: float | None = None
    frames_after_restart: int = 0


@dataclass
class Summary:
    """The machine-readable result. `passed` is the verdict; the rest says how it got there."""

    passed: bool = False
    failure: str | None = None
    replicas: int = 0
    base_image: str | None = None
    base_image_s: float | None = None
    build_s: float | None = None
    time_to_healthy_s: float | None = None
    connections: int = 0
    depth: int = 0
    requests_sent: int = 0
    requests_served: int = 0
    requests_failed: int = 0
    failure_samples: list[str] = field(default_factory=list)
    frames_per_replica: dict[str, int] = field(default_factory=dict)
    stops: list[StopFigures] = field(default_factory=list)
    #: Each replica's count at the end, since its process started (a restarted one counts anew).
    frames_per_replica_at_end: dict[str, int] = field(default_factory=dict)
    load_s: float | None = None
    total_s: float | None = None

    def verdict(self) -> str | None:
        """None when every assertion holds, else the first that does not."""
        if self.requests_failed or self.requests_served < self.requests_sent:
            served = self.requests_served
            return f"{self.requests_failed} of {self.requests_sent} requests failed ({served} served)"
        if len(self.frames_per_replica) != self.replicas or min(self.frames_per_replica.values()) < 1:
            return f"not every replica counted frames: {self.frames_per_replica}"
        for stop in self.stops:
            if stop.left_out_s is None or stop.used_again_s is None or stop.serving_again_s is None:
                return f"the replica stopped with {stop.signal} was not left out and used again: {stop}"
        return None


# ---- the stack ----------------------------------------------------------------------------------------


class Replicas:
    """The scaled stack's server containers and the proxy's /health through nginx."""

    def __init__(self, stack: Stack, cafile: Path) -> None:
        self.stack = stack
        self.context = ssl.create_default_context(cafile=str(cafile))

    def containers(self) -> list[str]:
        """The ids of the server's containers, running or not."""
        return sorted(self.stack.run("ps", "-q", SERVER).split())

    @staticmethod
    def name(container: str) -> str:
        return run(["docker", "inspect", "--format", "{{.Name}}", container]).strip().lstrip("/")

    @staticmethod
    def address(container: str) -> str:
        template = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        return run(["docker", "inspect", "--format", template, container]).split()[0]

    @staticmethod
    def frames(container: str) -> int:
        """The frames the replica's server process has counted since it started."""
        return frames_counted(run(["docker", "exec", container, "python3", "-c", READ_METRICS], timeout_s=30))

    def health(self) -> dict[str, object]:
        """The proxy's /health reply through nginx (its body also when it is 503)."""
        request = urllib.request.Request(f"https://127.0.0.1:{self.stack.https_port}/health")
        try:
            with urllib.request.urlopen(request, timeout=5, context=self.context) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        reply = json.loads(body)
        if not isinstance(reply, dict):
            raise SmokeError(f"unexpected /health reply: {reply!r}")
        return reply


def wait_until_every_replica_is_healthy(stack: Stack, timeout_s: float) -> None:
    """Return once every server container is healthy (smoke's wait looks at one per service)."""
    deadline = time.monotonic() + timeout_s
    while True:
        healthy = 0
        containers = stack.run("ps", "-q", SERVER).split()
        for container in containers:
            health = container_state(container).get("Health")
            healthy += isinstance(health, dict) and health.get("Status") == "healthy"
        if containers and healthy == len(containers):
            return
        if time.monotonic() > deadline:
            raise SmokeError(
                f"{len(containers) - healthy} server replicas not healthy within {timeout_s:.0f}s"
            )
        time.sleep(TIME_UNIT_S)


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float, started: float) -> float:
    """Seconds from `started` (a time.monotonic()) until `condition()` holds (asked in a thread, every
    0.2 s); raise SmokeError when it does not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s * TIME_UNIT_S
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise SmokeError(f"{what}: not within {timeout_s * TIME_UNIT_S:.0f}s")
        await asyncio.sleep(0.2)
    return round(time.monotonic() - started, 2)


# ---- the load -----------------------------------------------------------------------------------------


async def client(
    url: str, context: ssl.SSLContext, model: str, frames: int, depth: int, load: Load, stop: asyncio.Event
) -> None:
    """One connection: `depth` pipelined v1 requests, then their replies (in order), until `stop`."""
    origin = websockets.Origin("https://" + url.split("/")[2])
    async with websockets.connect(url, ssl=context, origin=origin, compression=None, max_size=8 << 20) as ws:
        frame = 0
        while not stop.is_set():
            for _ in range(depth):
                await ws.send(v1_request(model, frame % frames))
                load.sent += 1
                frame += 1
            for index in range(depth):
                try:
                    reply = await asyncio.wait_for(ws.recv(), 30 * TIME_UNIT_S)
                except (TimeoutError, websockets.ConnectionClosed) as exc:
                    load.fail(f"no reply: {type(exc).__name__} {exc}", depth - index)
                    raise
                problem = f"error reply {reply}" if isinstance(reply, str) else jpeg_problem(reply)
                if problem is None:
                    load.served += 1
                else:
                    load.fail(problem)


async def model_and_frames(url: str, context: ssl.SSLContext) -> tuple[str, int]:
    """The first model the stack lists and its frame count, asked over JSON."""
    origin = websockets.Origin("https://" + url.split("/")[2])
    async with websockets.connect(url, ssl=context, origin=origin) as ws:
        await ws.send(json.dumps({"type": "list_models", "id": "models"}))
        models = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT_S)).get("models") or []
        if not models:
            raise SmokeError("list_models returned no models")
        await ws.send(json.dumps({"type": "get_metadata", "model_name": models[0], "id": "meta"}))
        metadata = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT_S))
    return str(models[0]), int(metadata["frame_count"])


# ---- the check ----------------------------------------------------------------------------------------


async def stop_and_restart(replicas: Replicas, container: str, signal: str, expected: int) -> StopFigures:
    """Stop `container` with `signal` under load, see it left out, start it again, see it used."""
    address = replicas.address(container)
    figures = StopFigures(
        signal, replicas.name(container), address, await asyncio.to_thread(replicas.frames, container)
    )
    others = expected - 1
    logger.info("stopping %s (%s) with %s", figures.replica, address, signal)
    started = time.monotonic()
    command = ["docker", "stop", container] if signal == "SIGTERM" else ["docker", "kill", container]
    stopping = asyncio.create_task(asyncio.to_thread(run, command, timeout_s=120))

    def left_out() -> bool:
        serving = serving_addresses(replicas.health())
        return address not in serving and len(serving) == others

    figures.left_out_s = await wait_for(left_out, f"{figures.replica} left out", 60, started)
    await stopping
    figures.stop_command_s = round(time.monotonic() - started, 2)
    figures.listed_two_s = await wait_for(
        lambda: listed_addresses(replicas.health()) == others, "/health listing two backends", 60, started
    )
    state = container_state(container)
    if state.get("Running"):
        raise SmokeError(f"{figures.replica} was started again by its restart policy after {signal}")

    logger.info("starting %s again", figures.replica)
    run(["docker", "start", container])
    figures.serving_again_s = await wait_for(
        lambda: len(serving_addresses(replicas.health())) == expected, "three SERVING again", 180, started
    )
    figures.used_again_s = await wait_for(
        lambda: replicas.frames(container) > 0, f"{figures.replica} counting frames again", 120, started
    )
    figures.frames_after_restart = await asyncio.to_thread(replicas.frames, container)
    return figures


async def exercise(args: argparse.Namespace, stack: Stack, cafile: Path, summary: Summary) -> None:
    """Steps 2 to 5 of the module docstring, under the load of step 3."""
    replicas = Replicas(stack, cafile)
    await wait_for(
        lambda: len(serving_addresses(replicas.health())) == args.replicas,
        f"/health listing {args.replicas} SERVING backends",
        120,
        time.monotonic(),
    )
    url = f"wss://127.0.0.1:{stack.https_port}/ws"
    model, frames = await model_and_frames(url, replicas.context)
    load = Load()
    stop = asyncio.Event()
    summary.connections, summary.depth = args.connections, args.depth
    clients = [
        asyncio.create_task(client(url, replicas.context, model, frames, args.depth, load, stop))
        for _ in range(args.connections)
    ]
    load_started = time.monotonic()
    try:
        containers = replicas.containers()
        if len(containers) != args.replicas:
            raise SmokeError(f"{len(containers)} server containers, expected {args.replicas}")
        await wait_for(
            lambda: all(replicas.frames(c) > 0 for c in containers),
            "frames on every replica",
            60,
            load_started,
        )
        await asyncio.sleep(args.spread_s * TIME_UNIT_S)
        summary.frames_per_replica = {
            replicas.name(c): await asyncio.to_thread(replicas.frames, c) for c in containers
        }
        logger.info("frames per replica under load: %s", summary.frames_per_replica)
        for container, signal in zip(containers, ("SIGTERM", "SIGKILL"), strict=False):
            summary.stops.append(await stop_and_restart(replicas, container, signal, args.replicas))
            if any(task.done() for task in clients):
                break
        # The load goes on for a while with the restarted replicas in use.
        await asyncio.sleep(args.spread_s * TIME_UNIT_S)
        summary.frames_per_replica_at_end = {
            replicas.name(c): await asyncio.to_thread(replicas.frames, c) for c in containers
        }
    finally:
        stop.set()
        done = await asyncio.gather(*clients, return_exceptions=True)
        summary.load_s = round(time.monotonic() - load_started, 1)
        summary.requests_sent, summary.requests_served = load.sent, load.served
        summary.requests_failed, summary.failure_samples = load.failed, load.samples
    for result in done:
        if isinstance(result, BaseException):
            raise SmokeError(f"a client connection ended: {type(result).__name__} {result}")


def check(args: argparse.Namespace, summary: Summary) -> None:
    """Build, start scaled, exercise, always tear down."""
    stack = Stack(PROJECT)
    summary.replicas = args.replicas

    def stages() -> None:
        logger.info("starting the stack with %d server replicas", args.replicas)
        build_and_start(args, stack, summary, "--scale", f"{SERVER}={args.replicas}")
        started = time.monotonic()
        wait_until_every_replica_is_healthy(stack, timeout_s=300 * TIME_UNIT_S)
        healthy_s = (summary.time_to_healthy_s or 0.0) + time.monotonic() - started
        summary.time_to_healthy_s = round(healthy_s, 1)
        cafile: Path = args.artifacts / "tls.crt"
        cafile.write_text(stack.run("exec", "-T", "nginx", "cat", TLS_CERT_IN_NGINX))
        asyncio.run(exercise(args, stack, cafile, summary))

    guarded(args, stack, summary, stages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3, help="server replicas (default 3)")
    parser.add_argument("--connections", type=int, default=4, help="WebSocket connections of the load")
    parser.add_argument("--depth", type=int, default=4, help="requests each connection has in flight")
    parser.add_argument(
        "--spread-s", type=float, default=5, help="load before the first stop and after the last"
    )
    parser.add_argument("--base-image", help="build on this base image instead of choosing one")
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    parser.add_argument(
        "--artifacts", type=Path, default=REPO / "artifacts" / "replicas", help="output folder"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="replicas: %(message)s", stream=sys.stderr)
    logging.getLogger("smoke").setLevel(logging.INFO)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    (args.artifacts / "compose.log").unlink(missing_ok=True)

    summary = Summary()
    check(args, summary)
    return report(asdict(summary), args.artifacts)


if __name__ == "__main__":
    sys.exit(main())
