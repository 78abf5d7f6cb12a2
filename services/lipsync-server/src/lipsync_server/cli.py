"""`lipsync-server`: serve (default), `inspect DIR`, `make-demo DIR`, `probe`, `convert`, `make-package`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipsync_common.logs import setup_logging
from lipsync_common.tracing import TracingConfig
from lipsync_server.errors import PackageError
from lipsync_server.server import LIPSYNC_SERVICE, Deps, StartupError, create_server, default_deps
from lipsync_server.settings import DEFAULT_PORT, Settings, SettingsError, settings_from_args
from lipsync_server.telemetry import tracer_provider, tracing_config

logger = logging.getLogger("lipsync_server")

EXIT_USAGE = 2


async def serve(settings: Settings, deps: Deps, tracing: TracingConfig) -> None:
    server = create_server(settings, deps)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await server.start()
    logger.info("tracing: %s", tracing.summary)
    loader = asyncio.create_task(server.load_models())
    await stopping.wait()
    logger.info("shutting down: NOT_SERVING, grace period %.1f s", settings.grace_period_s)
    loader.cancel()
    await server.stop()
    logger.info("stopped")


def inspect_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="lipsync-server inspect", description="Validate a model package.")
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    from lipsync_server.packages.loader import describe, load_package
    from lipsync_server.registry import engine_for

    try:
        package = load_package(args.directory)
        engine = engine_for(package, default_deps().engines)
        package = engine.prepare(package)
    except PackageError as error:
        print(f"invalid package: {error}", file=sys.stderr)
        return 1
    print(describe(package))
    return 0


def make_demo_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lipsync-server make-demo", description="Write the built-in demo avatar package into DIR."
    )
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    from lipsync_server.demo import ensure_demo_package

    print(ensure_demo_package(args.directory))
    return 0


def probe_command(argv: Sequence[str]) -> int:
    """Exit 0 when grpc.health.v1 says SERVING: the container HEALTHCHECK."""
    parser = argparse.ArgumentParser(prog="lipsync-server probe", description="grpc.health.v1 check.")
    # The server's own port setting, so a HEALTHCHECK keeps working when LIPSYNC_PORT changes it.
    port = os.environ.get("LIPSYNC_PORT") or str(DEFAULT_PORT)
    parser.add_argument("--addr", default=f"127.0.0.1:{port}")
    parser.add_argument("--service", default=LIPSYNC_SERVICE)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    with grpc.insecure_channel(args.addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as error:
            print(f"{args.addr}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.addr} {args.service or '(overall)'}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def convert_command(argv: Sequence[str]) -> int:
    """PyTorch checkpoint to ONNX; imported only here, so serving never needs the torch extra."""
    from lipsync_server.convert_torch import main as convert_main

    return convert_main(argv)


def make_package_command(argv: Sequence[str]) -> int:
    from lipsync_server.make_package import main as make_package_main

    return make_package_main(argv)


COMMANDS = {
    "inspect": inspect_command,
    "make-demo": make_demo_command,
    "probe": probe_command,
    "convert": convert_command,
    "make-package": make_package_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    if args and args[0] == "serve":
        args = args[1:]
    problems: list[str] = []
    settings = Settings()
    tracing = TracingConfig()
    try:
        settings = settings_from_args(args)
    except SettingsError as error:
        problems.append(str(error))
    try:
        tracing = tracing_config(os.environ)
    except SettingsError as error:
        problems.append(str(error))
    if problems:
        print(f"lipsync-server: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings.log_level, settings.log_format)
    provider = tracer_provider(tracing)
    try:
        deps = dataclasses.replace(
            default_deps(settings.device, settings.precision), tracer_provider=provider
        )
        asyncio.run(serve(settings, deps, tracing))
    except StartupError as error:
        print(f"lipsync-server: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if provider is not None:
            provider.shutdown()  # exports what is left; bounded by the export timeout
    return 0


if __name__ == "__main__":
    sys.exit(main())
