"""CPU time and memory of another process, from /proc (Linux).

`/proc/<pid>/stat` gives the user and system time of all the process's threads in clock ticks
(usually 10 ms): enough for per-frame CPU over a window of a few seconds and thousands of frames.
`/proc/<pid>/status` gives the resident set size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    user_s: float
    system_s: float

    @property
    def total_s(self) -> float:
        return self.user_s + self.system_s


def parse_stat(text: str, ticks_per_s: int = CLOCK_TICKS_PER_S) -> CpuTimes:
    """The CPU times in a `/proc/<pid>/stat` line.

    The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so the
    fields are counted from the last ')'. utime and stime are fields 14 and 15 (man 5 proc)."""
    end = text.rfind(")")
    if end < 0:
        raise ValueError("not a /proc/<pid>/stat line: no command name")
    fields = text[end + 2 :].split()
    # fields[0] is field 3 (state), so field n is fields[n - 3].
    if len(fields) < 13:
        raise ValueError("not a /proc/<pid>/stat line: too few fields")
    return CpuTimes(int(fields[11]) / ticks_per_s, int(fields[12]) / ticks_per_s)


def parse_rss_kib(status_text: str) -> int:
    """VmRSS of a `/proc/<pid>/status` text, in KiB."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value)
    raise ValueError("no VmRSS line (a kernel thread, or a process that has exited)")


def cpu_times(pid: int) -> CpuTimes:
    """The CPU times process `pid` has used so far."""
    return parse_stat(Path(f"/proc/{pid}/stat").read_text())


def rss_kib(pid: int) -> int:
    """The resident memory of process `pid` now, in KiB."""
    return parse_rss_kib(Path(f"/proc/{pid}/status").read_text())


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was while measuring."""
    return os.getloadavg()
