"""The proxy's logging: the text or JSON lines both services write (`lipsync_common.logs`), without the
websockets library's record of every request."""

from __future__ import annotations

import logging

from lipsync_common.logs import setup_logging


def configure(level: str, log_format: str) -> None:
    """Send the root logger's records to stderr at `level` in `log_format` (text or json)."""
    setup_logging(level, log_format)
    # websockets logs every refused handshake and HTTP request at INFO; the proxy logs what matters.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLogger().level))
