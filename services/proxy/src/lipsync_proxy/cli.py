"""`lipsync-proxy`: settings, logging, tracing, uvloop, the heap's policy and signals around `create_app`.

Logging writes the text or JSON lines both services write (`lipsync_common.logs`); tracing follows the
standard `OTEL_*` variables by the rules both services share (`lipsync_common.tracing`), the service named
lipsync-proxy unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names it.

Exit status: 0 after a SIGTERM/SIGINT shutdown; 2 when the proxy cannot start (invalid settings, port
in use, an unresolvable backend), with one line on stderr saying why.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import sys
from collections.abc import Sequence

import uvloop
from opentelemetry.sdk.trace import TracerProvider

from lipsync_common import tracing
from lipsync_common.logs import setup_logging
from lipsync_common.tracing import TracingConfig
from lipsync_proxy.app import Dependencies, create_app
from lipsync_proxy.errors import StartupError
from lipsync_proxy.memory import keep_freed_memory
from lipsync_proxy.settings import Settings, SettingsError, settings_from_args

EXIT_STARTUP = 2

logger = logging.getLogger(__name__)


def _fail(message: str) -> int:
    sys.stderr.write(f"lipsync-proxy: {message}\n")
    return EXIT_STARTUP


async def serve(settings: Settings, provider: TracerProvider | None = None) -> int:
    """Run the proxy until SIGTERM or SIGINT, its spans going to `provider`; the process's exit status."""
    try:
        app = await create_app(settings, Dependencies(tracer_provider=provider))
    except StartupError as exc:
        return _fail(str(exc))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info("tracing: %s", settings.tracing.summary)
    await stop.wait()
    await app.shutdown()
    return 0


def configure_logging(level: str, log_format: str) -> None:
    """Send the root logger's records to stderr at `level` in `log_format` (text or json)."""
    setup_logging(level, log_format)
    # websockets logs every refused handshake and HTTP request at INFO; the proxy logs what matters.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLogger().level))


def tracer_provider(config: TracingConfig) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/gRPC as `config` says, or None when tracing is off."""
    return tracing.tracer_provider(config, "lipsync-proxy")


def raise_open_files_limit() -> None:
    """Let the process hold as many sockets as its hard limit allows: every WebSocket is one, and the
    usual soft limit of 1024 would refuse connections long before memory or CPU run out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Sequence[str] | None = None) -> None:
    """The `lipsync-proxy` entry point."""
    try:
        settings = settings_from_args(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:
        sys.exit(_fail(str(exc)))
    configure_logging(settings.log_level, settings.log_format)
    raise_open_files_limit()
    if not keep_freed_memory():
        logger.debug("not glibc: the heap keeps the C library's defaults")
    provider = tracer_provider(settings.tracing)
    try:
        status = uvloop.run(serve(settings, provider))
    finally:
        if provider is not None:
            provider.shutdown()  # exports what is left, within the export timeout
    sys.exit(status)
