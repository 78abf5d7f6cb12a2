"""What one load run measured, and its summary: latency percentiles, frames/s, MB/s, errors, CPU.

Pure: numbers in, numbers out. Percentiles are nearest-rank (the value below which that share of the
samples lies, always one of the samples), so p99 of 100 samples is the 99th smallest and max is real.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

PERCENTILES = (50.0, 90.0, 99.0)


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """The nearest-rank `share` percentile (0 < share ≤ 100) of ascending `sorted_values`; NaN if empty."""
    if not 0.0 < share <= 100.0:
        raise ValueError(f"percentile {share} is outside (0, 100]")
    if not sorted_values:
        return math.nan
    rank = math.ceil(share / 100.0 * len(sorted_values))
    return float(sorted_values[max(rank, 1) - 1])


@dataclass(frozen=True)
class LatencySummary:
    """Latencies in milliseconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, latencies_ms: Sequence[float]) -> LatencySummary:
        ordered = sorted(latencies_ms)
        if not ordered:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        p50, p90, p99 = (percentile(ordered, p) for p in PERCENTILES)
        return cls(len(ordered), math.fsum(ordered) / len(ordered), p50, p90, p99, ordered[-1])


@dataclass(frozen=True)
class CpuUse:
    """CPU a process spent during the measured window (user + system, all its threads)."""

    pid: int
    role: str
    cpu_s: float


@dataclass(frozen=True)
class RunResult:
    """One measured run: a client against one target, after its warm-up."""

    name: str
    target: str
    connections: int
    depth: int
    wall_s: float
    latencies_ms: Sequence[float] = field(repr=False)
    errors: Mapping[str, int]
    bytes_received: int
    cpu: Sequence[CpuUse] = ()
    #: Free-form facts about the run (backend delay, protocol, load average...).
    labels: Mapping[str, object] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.latencies_ms)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def megabytes_per_s(self) -> float:
        return self.bytes_received / 1e6 / self.wall_s if self.wall_s > 0 else math.nan

    def cpu_us_per_frame(self, role: str) -> float:
        """Microseconds of CPU per frame of the process playing `role`; NaN when unmeasured."""
        for use in self.cpu:
            if use.role == role and self.frames:
                return use.cpu_s * 1e6 / self.frames
        return math.nan

    def summary(self) -> dict[str, object]:
        """The run as plain JSON-ready values (latencies summarised, NaN as None)."""
        latency = LatencySummary.of(self.latencies_ms)
        return cast(
            dict[str, object],
            _json_safe(
                {
                    "name": self.name,
                    "target": self.target,
                    "connections": self.connections,
                    "depth": self.depth,
                    "wall_s": self.wall_s,
                    "frames": self.frames,
                    "frames_per_s": self.frames_per_s,
                    "megabytes_per_s": self.megabytes_per_s,
                    "errors": dict(self.errors),
                    "error_count": sum(self.errors.values()),
                    "latency_ms": {
                        "mean": latency.mean,
                        "p50": latency.p50,
                        "p90": latency.p90,
                        "p99": latency.p99,
                        "max": latency.max,
                    },
                    "cpu_us_per_frame": {use.role: self.cpu_us_per_frame(use.role) for use in self.cpu},
                    "labels": dict(self.labels),
                }
            ),
        )


def _json_safe(value: object) -> object:
    """`value` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def count_errors(codes: Sequence[str]) -> dict[str, int]:
    """Error codes counted, most frequent first."""
    return dict(Counter(codes).most_common())
