"""`lipsync-otlp-sink [--host H] [--otlp-port 4317] [--http-port 16686] [--max-spans N]`.

The default ports are those of the Jaeger it stands in for: OTLP/gRPC on 4317, queries on 16686.
Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from lipsync_otlp_sink.sink import Settings, create_sink

logger = logging.getLogger(__name__)


def parse_settings(argv: Sequence[str]) -> Settings:
    """Settings from the command line; argparse reports bad values and exits 2."""
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="lipsync-otlp-sink", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=defaults.host, help="address to listen on (default %(default)s)")
    parser.add_argument("--otlp-port", type=int, default=defaults.otlp_port, help="OTLP/gRPC port")
    parser.add_argument("--http-port", type=int, default=defaults.http_port, help="query API port")
    parser.add_argument("--max-spans", type=int, default=defaults.max_spans, help="spans kept, newest first")
    args = parser.parse_args(argv)
    if args.max_spans < 1:
        parser.error("--max-spans must be at least 1")
    return Settings(
        host=args.host, otlp_port=args.otlp_port, http_port=args.http_port, max_spans=args.max_spans
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sink until SIGTERM or SIGINT; exit 2 when a port cannot be bound."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    try:
        sink = create_sink(settings)
    except OSError as exc:
        logger.error("cannot start: %s", exc)
        return 2
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    sink.start()
    stopping.wait()
    logger.info("stopping")
    sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
