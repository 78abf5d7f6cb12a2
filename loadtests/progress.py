"""A one-line progress display for long runs: elapsed time, recent frames/s, recent p99, errors.

On a terminal the line is rewritten in place every second; into a file or a pipe a line is written
every `every_s` seconds, so CI logs show progress without a flood.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TextIO

from loadtests.stats import LatencySummary


def format_progress(
    name: str, elapsed_s: float, planned_s: float | None, frames_per_s: float, p99_ms: float, errors: int
) -> str:
    """The progress line, e.g. `proxy v1 C=8  4.0/10 s  1,234 frames/s  p99 3.21 ms  0 errors`."""
    of = f"/{planned_s:.0f}" if planned_s is not None else ""
    p99 = "-" if math.isnan(p99_ms) else f"{p99_ms:.2f} ms"
    return f"{name}  {elapsed_s:.1f}{of} s  {frames_per_s:,.0f} frames/s  p99 {p99}  {errors} errors"


@dataclass
class Progress:
    """Writes progress lines to `stream` (stderr by default)."""

    stream: TextIO = sys.stderr
    every_s: float = 10.0

    def __post_init__(self) -> None:
        self._interactive = self.stream.isatty()
        self._last_written = -math.inf

    def update(
        self,
        name: str,
        elapsed_s: float,
        planned_s: float | None,
        window_s: float,
        window_latencies_ms: list[float],
        errors: int,
    ) -> None:
        """Report the state after `elapsed_s` of measuring, from the latencies of the last `window_s`."""
        if not self._interactive and elapsed_s - self._last_written < self.every_s:
            return
        rate = len(window_latencies_ms) / window_s if window_s > 0 else math.nan
        line = format_progress(
            name, elapsed_s, planned_s, rate, LatencySummary.of(window_latencies_ms).p99, errors
        )
        self.stream.write(f"\r\x1b[K{line}" if self._interactive else f"{line}\n")
        self.stream.flush()
        self._last_written = elapsed_s

    def done(self) -> None:
        """End the line that was being rewritten."""
        if self._interactive and self._last_written > -math.inf:
            self.stream.write("\n")
            self.stream.flush()
