"""The compose smoke test (`make smoke`): the real containers of this commit, end to end through nginx TLS.

1. Choose a base image: the Dockerfiles' official defaults when a registry answers, otherwise one
   bootstrapped from Debian's packages (deploy/scripts/bootstrap-base-image.sh, cached by content hash).
2. Build the project's images from the working tree and start the stack with compose.ci.yaml, which
   swaps Jaeger for the project's OTLP sink. Host ports are free ones on 127.0.0.1.
3. Wait until every long-running service is healthy and the one-shot services exited 0.
4. Over wss:// to nginx, verifying the stack's own certificate: JSON list_models, get_metadata and one
   inference, then pipelined v1 binary requests; every reply must be a valid JPEG, with zero errors.
   Then one lipsync.v1 ListModels call through nginx's TLS gRPC pass-through.
5. Ask the sink for the complete proxy → server trace of the JSON inference, which carries a sampled
   client trace context: the stack samples 1% of the other requests, as deployed, and must still trace
   a request its client asks to trace. It fails the run only with --require-trace (SMOKE_REQUIRE_TRACE=1,
   the default in deploy.mk); without it the summary only reports it.
6. Print one JSON summary line on stdout (also written to artifacts/smoke/summary.json), always tear the
   stack down (compose logs are kept in artifacts/smoke/compose.log), and exit 0 only when it passed.

Progress goes to stderr. Run from the repository root: .venv/bin/python deploy/smoke/smoke.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import secrets
import shutil
import ssl
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import grpc
import numpy as np
import websockets

from lipsync_common.ports import free_port
from lipsync_protos.lipsync.v1 import lipsync_pb2, lipsync_pb2_grpc

logger = logging.getLogger("smoke")

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = (REPO / "deploy/compose/compose.yaml", REPO / "deploy/compose/compose.ci.yaml")
BOOTSTRAP_SCRIPT = REPO / "deploy/scripts/bootstrap-base-image.sh"
OFFICIAL_BASE_IMAGES = ("python:3.12-slim", "debian:bookworm-slim")
PROJECT = "lipsync-smoke"
IMAGE_TAG = "smoke"
# One image per service group: model-init shares lipsync-server's image and cert-init nginx's, so
# building these four builds each image once.
BUILD_SERVICES = ("model-init", "proxy", "cert-init", "jaeger")
LONG_RUNNING = ("lipsync-server", "proxy", "nginx", "jaeger")
ONE_SHOT = ("cert-init", "model-init")
TLS_CERT_IN_NGINX = "/etc/nginx/tls/tls.crt"
# Every wait below is a multiple of this, so a slow machine scales them all at once.
TIME_UNIT_S = float(os.environ.get("SMOKE_TIME_UNIT_S", "1"))


class SmokeError(Exception):
    """A step of the smoke test failed; the message says which and why."""


# ---- pure helpers -------------------------------------------------------------------------------------


def v1_request(model_name: str, frame_id: int) -> bytes:
    """A binary v1 request: `[u8 name_len][name UTF-8][u32 frame_id little-endian]`."""
    name = model_name.encode()
    if not 0 < len(name) < 256:
        raise ValueError(f"model name must be 1..255 bytes of UTF-8, got {len(name)}")
    return bytes([len(name)]) + name + struct.pack("<I", frame_id)


def jpeg_problem(data: bytes) -> str | None:
    """None when `data` is a JPEG that decodes to a colour image, else what is wrong with it."""
    if not data.startswith(b"\xff\xd8"):
        return "does not start with the JPEG SOI marker FF D8"
    if not data.endswith(b"\xff\xd9"):
        return "does not end with the JPEG EOI marker FF D9"
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return "does not decode as a JPEG"
    return None


# A frame's whole journey: the proxy's request span, the server's span and its audio_features,
# inference, composite and encode spans.
TRACED_SERVICES = {"lipsync-proxy", "lipsync-server"}
MIN_TRACE_SPANS = 6


def complete_trace(traces_reply: Mapping[str, object], trace_id: str) -> dict[str, object] | None:
    """Trace `trace_id` of the sink's `/api/traces` reply when it is complete (both services, every
    span), else None."""
    traces = traces_reply.get("traces")
    for trace in traces if isinstance(traces, list) else []:
        if not isinstance(trace, dict) or trace.get("trace_id") != trace_id:
            continue
        services, spans = trace.get("services"), trace.get("span_count")
        complete = isinstance(services, list) and set(services) >= TRACED_SERVICES
        if complete and isinstance(spans, int) and spans >= MIN_TRACE_SPANS:
            return trace
    return None


@dataclass
class Summary:
    """The machine-readable result. `passed` is the verdict; the rest says how it got there."""

    passed: bool = False
    failure: str | None = None
    base_image: str | None = None
    base_image_s: float | None = None
    build_s: float | None = None
    time_to_healthy_s: float | None = None
    model_name: str | None = None
    frames_requested: int = 0
    frames_ok: int = 0
    errors: int = 0
    bytes_received: int = 0
    json_inference_ok: bool = False
    grpc_passthrough_ok: bool = False
    trace_found: bool = False
    trace_required: bool = False
    trace: dict[str, object] | None = None
    total_s: float | None = None
    error_samples: list[str] = field(default_factory=list)

    def verdict(self) -> str | None:
        """None when every assertion holds, else the first that does not."""
        if self.frames_ok < self.frames_requested or self.errors:
            return f"{self.errors} errors, {self.frames_ok}/{self.frames_requested} valid JPEG frames"
        if not self.json_inference_ok:
            return "the JSON inference request did not succeed"
        if not self.grpc_passthrough_ok:
            return "lipsync.v1 ListModels through nginx's gRPC pass-through did not list the model"
        if self.trace_required and not self.trace_found:
            return "no complete proxy → server trace reached the OTLP sink"
        return None


# ---- docker and compose -------------------------------------------------------------------------------


def run(command: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 600) -> str:
    """Run a command, return its stdout; raise SmokeError with its output when it fails."""
    logger.debug("$ %s", " ".join(command))
    try:
        done = subprocess.run(
            command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SmokeError(f"{command[0]} did not finish within {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-3000:]
        raise SmokeError(f"`{' '.join(command)}` exited {done.returncode}:\n{tail}")
    return done.stdout


def compose_command() -> list[str]:
    """`docker compose` (v2) when the plugin is there, else `docker-compose` (v1)."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise SmokeError("neither `docker compose` nor `docker-compose` is installed")


def choose_base_image() -> str | None:
    """None when the official base images can be pulled (the Dockerfiles' defaults), else the name
    of an image bootstrapped from Debian's packages."""
    for image in OFFICIAL_BASE_IMAGES:
        try:
            pulled = subprocess.run(
                ["docker", "pull", "-q", image], capture_output=True, check=False, timeout=120
            )
        except subprocess.TimeoutExpired:
            pulled = None
        if pulled is None or pulled.returncode != 0:
            logger.info("cannot pull %s; bootstrapping a base image from Debian's packages", image)
            return run([str(BOOTSTRAP_SCRIPT)], timeout_s=1200).strip().splitlines()[-1]
    return None


class Stack:
    """The compose project under test, published on free ports of 127.0.0.1 only."""

    def __init__(self, project: str = PROJECT) -> None:
        self.project = project
        self.https_port = free_port()
        self.sink_port = free_port()
        # The environment of every compose command: the image tag and the host address and ports.
        self.env = {
            **os.environ,
            "LIPSYNC_IMAGE_TAG": IMAGE_TAG,
            "LIPSYNC_BIND_ADDRESS": "127.0.0.1",
            "LIPSYNC_HTTPS_PORT": str(self.https_port),
            "LIPSYNC_HTTP_PORT": str(free_port()),
            "JAEGER_UI_PORT": str(self.sink_port),
            "OTLP_GRPC_PORT": str(free_port()),
            "OTLP_HTTP_PORT": str(free_port()),
        }

    @functools.cached_property
    def compose(self) -> list[str]:
        """The compose command, found on first use so that a missing one fails inside the test."""
        return compose_command()

    def command(self, *args: str) -> list[str]:
        """A compose command line for this project and the stack's two compose files."""
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        return [*self.compose, "-p", self.project, *files, *args]

    def parallel_build_flag(self) -> list[str]:
        """docker-compose 1.29 builds one image at a time unless told; compose v2 builds in parallel."""
        return ["--parallel"] if self.compose == ["docker-compose"] else []

    def run(self, *args: str, timeout_s: float = 600) -> str:
        """Run a compose command of this project; raise SmokeError when it fails."""
        return run(self.command(*args), env=self.env, timeout_s=timeout_s)

    def container(self, service: str) -> str | None:
        """The id of the service's container, None before it exists."""
        ids = self.run("ps", "-q", service).split()
        return ids[0] if ids else None


def container_state(container: str) -> dict[str, object]:
    """`docker inspect`'s State of one container."""
    state = json.loads(run(["docker", "inspect", "--format", "{{json .State}}", container]))
    if not isinstance(state, dict):
        raise SmokeError(f"unexpected docker inspect output for {container}")
    return state


def wait_until_healthy(stack: Stack, timeout_s: float) -> None:
    """Return once every one-shot service exited 0 and every long-running one is healthy."""
    deadline = time.monotonic() + timeout_s
    pending: set[str] = set(ONE_SHOT + LONG_RUNNING)
    while pending:
        for service in sorted(pending):
            container = stack.container(service)
            if container is None:
                continue
            state = container_state(container)
            health = state.get("Health")
            health_status = health.get("Status") if isinstance(health, dict) else None
            if service in ONE_SHOT and state.get("Status") == "exited":
                if state.get("ExitCode") != 0:
                    raise SmokeError(f"one-shot service {service} exited {state.get('ExitCode')}")
                pending.discard(service)
            elif service in LONG_RUNNING:
                if state.get("Status") in ("exited", "dead"):
                    raise SmokeError(f"{service} stopped (exit code {state.get('ExitCode')})")
                if health_status == "healthy":
                    pending.discard(service)
        if pending and time.monotonic() > deadline:
            raise SmokeError(f"not healthy within {timeout_s:.0f}s: {', '.join(sorted(pending))}")
        if pending:
            time.sleep(TIME_UNIT_S)


# ---- the client ---------------------------------------------------------------------------------------


async def exercise(https_port: int, cafile: Path, frames: int, trace_id: str, summary: Summary) -> None:
    """JSON requests (the inference traced as `trace_id`), then `frames` pipelined v1 requests, over
    wss:// through nginx."""
    context = ssl.create_default_context(cafile=str(cafile))
    authority = f"127.0.0.1:{https_port}"
    async with websockets.connect(
        f"wss://{authority}/ws",
        ssl=context,
        origin=websockets.Origin(f"https://{authority}"),
        compression=None,
        max_size=8 * 1024 * 1024,
        open_timeout=10 * TIME_UNIT_S,
    ) as ws:

        async def ask(request: dict[str, object]) -> dict[str, object]:
            await ws.send(json.dumps(request))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10 * TIME_UNIT_S))
            if not isinstance(reply, dict):
                raise SmokeError(f"non-object JSON reply to {request}: {reply!r}")
            return reply

        listing = await ask({"type": "list_models", "id": "smoke-list"})
        models = listing.get("models")
        if not isinstance(models, list) or not models:
            raise SmokeError(f"list_models returned no models: {listing}")
        summary.model_name = model = str(models[0])
        metadata = await ask({"type": "get_metadata", "model_name": model, "id": "smoke-meta"})
        frame_count = metadata.get("frame_count")
        if not isinstance(frame_count, int) or frame_count < 1:
            raise SmokeError(f"get_metadata gave no frame_count: {metadata}")
        inference = await ask(
            {
                "type": "inference",
                "model_name": model,
                "frame_id": 0,
                "id": "smoke-json",
                "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            }
        )
        summary.json_inference_ok = inference.get("success") is True and inference.get("id") == "smoke-json"
        if not summary.json_inference_ok:
            summary.error_samples.append(f"JSON inference: {inference}")

        # Pipelined: all requests first, then the replies, which come back in request order.
        summary.frames_requested = frames
        for index in range(frames):
            await ws.send(v1_request(model, index % frame_count))
        for index in range(frames):
            reply = await asyncio.wait_for(ws.recv(), 30 * TIME_UNIT_S)
            problem = f"error reply {reply}" if isinstance(reply, str) else jpeg_problem(reply)
            if problem is None:
                summary.frames_ok += 1
                summary.bytes_received += len(reply)
            else:
                summary.errors += 1
                if len(summary.error_samples) < 5:
                    summary.error_samples.append(f"frame request {index}: {problem}")


def grpc_passthrough_lists(https_port: int, cafile: Path, model_name: str) -> bool:
    """Whether lipsync.v1 ListModels over TLS through nginx lists `model_name`."""
    credentials = grpc.ssl_channel_credentials(root_certificates=cafile.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{https_port}", credentials) as channel:
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        reply = stub.ListModels(lipsync_pb2.ListModelsRequest(), timeout=10 * TIME_UNIT_S)
    return model_name in [model.name for model in reply.models]


def look_for_trace(sink_port: int, trace_id: str, wait_s: float) -> dict[str, object] | None:
    """Trace `trace_id` once the sink holds all of it, polling for up to `wait_s` (exporters batch
    every few seconds)."""
    deadline = time.monotonic() + wait_s
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/api/traces", timeout=5) as response:
            trace = complete_trace(json.loads(response.read()), trace_id)
        if trace is not None or time.monotonic() > deadline:
            return trace
        time.sleep(TIME_UNIT_S)


# ---- main ---------------------------------------------------------------------------------------------


class StackSummary(Protocol):
    """What every check of the stack records about building and starting it, and its verdict."""

    base_image: str | None
    base_image_s: float | None
    build_s: float | None
    time_to_healthy_s: float | None
    failure: str | None
    total_s: float | None
    passed: bool

    def verdict(self) -> str | None: ...


def build_and_start(args: argparse.Namespace, stack: Stack, summary: StackSummary, *up_args: str) -> None:
    """Build the images (on `--base-image` or one chosen here), start the stack with `up_args` and wait
    until it is healthy, recording each step's time in `summary`; raise SmokeError when one fails."""
    started = time.monotonic()
    logger.info("choosing the base image")
    summary.base_image = args.base_image or choose_base_image()
    summary.base_image_s = round(time.monotonic() - started, 1)

    logger.info("building the images on %s", summary.base_image or "the official base images")
    started = time.monotonic()
    build_args = ["--build-arg", f"BASE_IMAGE={summary.base_image}"] if summary.base_image else []
    stack.run("build", *stack.parallel_build_flag(), *build_args, *BUILD_SERVICES, timeout_s=1800)
    summary.build_s = round(time.monotonic() - started, 1)

    logger.info("starting the stack and waiting until it is healthy")
    started = time.monotonic()
    stack.run("up", "-d", "--no-build", *up_args)
    wait_until_healthy(stack, timeout_s=300 * TIME_UNIT_S)
    summary.time_to_healthy_s = round(time.monotonic() - started, 1)


def run_stages(args: argparse.Namespace, stack: Stack, summary: Summary) -> None:
    """Steps 1 to 5 of the module docstring, filling in `summary`; raise SmokeError when one fails."""
    build_and_start(args, stack, summary)

    logger.info("healthy after %.1fs; sending frames through nginx over wss", summary.time_to_healthy_s)
    cafile: Path = args.artifacts / "tls.crt"
    cafile.write_text(stack.run("exec", "-T", "nginx", "cat", TLS_CERT_IN_NGINX))
    trace_id = secrets.token_hex(16)
    asyncio.run(exercise(stack.https_port, cafile, args.frames, trace_id, summary))
    summary.grpc_passthrough_ok = grpc_passthrough_lists(stack.https_port, cafile, str(summary.model_name))

    logger.info("%d/%d valid frames; looking for a trace in the OTLP sink", summary.frames_ok, args.frames)
    wait_s = (20 if args.require_trace else 8) * TIME_UNIT_S
    summary.trace = look_for_trace(stack.sink_port, trace_id, wait_s)
    summary.trace_found = summary.trace is not None


def tear_down(stack: Stack, *, keep: bool, logs_to: Path | None) -> None:
    """Save the compose logs to `logs_to` when given, then remove the stack unless `keep`."""
    if logs_to is not None:
        try:
            logs_to.write_text(stack.run("logs", "--no-color"))
        except SmokeError as exc:
            logger.error("could not save the compose logs: %s", exc)
    if not keep:
        logger.info("tearing the stack down")
        try:
            stack.run("down", "--volumes", "--remove-orphans", timeout_s=300)
        except SmokeError as exc:
            logger.error("could not tear the stack down: %s", exc)


def guarded(
    args: argparse.Namespace, stack: Stack, summary: StackSummary, stages: Callable[[], None]
) -> None:
    """Run a check's `stages` into `summary` and give its verdict, always tearing down what it
    started (keeping the compose logs of a failure)."""
    started = time.monotonic()
    try:
        stages()
        summary.failure = summary.verdict()
    except SmokeError as exc:
        summary.failure = str(exc)
    except Exception as exc:  # whatever went wrong, the summary is printed and the stack removed
        logger.exception("unexpected error")
        summary.failure = f"{type(exc).__name__}: {exc}"
    finally:
        tear_down(stack, keep=args.keep, logs_to=args.artifacts / "compose.log" if summary.failure else None)
        summary.total_s = round(time.monotonic() - started, 1)
    summary.passed = summary.failure is None


def smoke(args: argparse.Namespace, summary: Summary) -> None:
    """Run the smoke test into `summary`, always tearing down what it started."""
    stack = Stack()
    guarded(args, stack, summary, lambda: run_stages(args, stack, summary))


def report(summary: Mapping[str, object], artifacts: Path) -> int:
    """Print a check's summary (its fields, `passed` and `failure` among them) as one JSON line, also
    written to `artifacts`/summary.json; log its failure; return its exit status."""
    line = json.dumps(summary, sort_keys=True)
    (artifacts / "summary.json").write_text(line + "\n")
    print(line)
    if summary["failure"]:
        logger.error("FAILED: %s (compose logs: %s)", summary["failure"], artifacts / "compose.log")
    return 0 if summary["passed"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="v1 frame requests to send (default 100)")
    parser.add_argument("--require-trace", action="store_true", help="fail when no trace reaches the sink")
    parser.add_argument("--base-image", help="build on this base image instead of choosing one")
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts" / "smoke", help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="smoke: %(message)s", stream=sys.stderr)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    # A log left by an earlier failed run would mislead; this run writes its own when it fails.
    (args.artifacts / "compose.log").unlink(missing_ok=True)

    summary = Summary(trace_required=args.require_trace)
    smoke(args, summary)
    return report(asdict(summary), args.artifacts)


if __name__ == "__main__":
    sys.exit(main())
