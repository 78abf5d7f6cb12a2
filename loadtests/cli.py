"""Command-line pieces every load generator shares: the plan's flags, watched processes, the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loadtests.driver import Plan, Watched
from loadtests.stats import RunResult


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every load generator shares: connections, depth, warm-up, duration or count."""
    add = parser.add_argument
    add("-c", "--connections", type=int, default=1, help="concurrent connections (default 1)")
    add("-d", "--depth", type=int, default=1, help="requests outstanding per connection (default 1)")
    add("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    add("--duration", type=float, default=10.0, help="seconds measured (default 10)")
    add("--count", type=int, default=None, help="measure this many replies instead of a duration")
    add("--model", default="demo")
    add("--frames", type=int, default=300, help="frame ids cycle through 0..frames-1 (default 300)")
    add("--proxy-pid", type=int, action="append", default=[], help="measure this process's CPU as the proxy")
    add("--backend-pid", type=int, action="append", default=[], help="and this one's as the backend")
    add("--json", type=Path, default=None, help="write the result here as JSON ('-' for stdout)")
    add("--no-progress", dest="progress", action="store_false", help="no progress display")


def plan_from(args: argparse.Namespace) -> Plan:
    return Plan(
        connections=args.connections,
        depth=args.depth,
        warmup_s=args.warmup,
        duration_s=args.duration,
        count=args.count,
        frames=args.frames,
        model=args.model,
    )


def watched_from(args: argparse.Namespace) -> list[Watched]:
    return [Watched(pid, "proxy") for pid in args.proxy_pid] + [
        Watched(pid, "backend") for pid in args.backend_pid
    ]


def report(result: RunResult, destination: Path | None) -> None:
    """Write the result's summary as JSON to `destination` ('-' is stdout), and a short line to stderr."""
    summary = result.summary()
    text = json.dumps(summary, indent=2) + "\n"
    if destination is None or str(destination) == "-":
        sys.stdout.write(text)
    else:
        destination.write_text(text)
    sys.stderr.write(
        f"{result.name}: {result.frames} frames, {result.frames_per_s:,.0f} frames/s, "
        f"{result.megabytes_per_s:.1f} MB/s, latency ms {summary['latency_ms']}, errors {summary['errors']}\n"
    )
