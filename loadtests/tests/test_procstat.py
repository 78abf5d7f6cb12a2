from __future__ import annotations

import os

import pytest

from loadtests.procstat import cpu_times, load_average, parse_rss_kib, parse_stat, rss_kib


def test_cpu_times_are_read_after_a_command_name_with_spaces_and_parentheses() -> None:
    line = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 3 0 100 1000 50"
    times = parse_stat(line, ticks_per_s=100)
    assert (times.user_s, times.system_s, times.total_s) == (2.5, 0.75, 3.25)


def test_a_line_that_is_not_proc_stat_is_refused() -> None:
    with pytest.raises(ValueError, match="no command name"):
        parse_stat("garbage")
    with pytest.raises(ValueError, match="too few fields"):
        parse_stat("1 (x) S 1 2")


def test_rss_is_read_from_vmrss_in_kib() -> None:
    assert parse_rss_kib("Name:\tx\nVmPeak:\t 900 kB\nVmRSS:\t  12345 kB\nThreads:\t3\n") == 12345
    with pytest.raises(ValueError, match="no VmRSS"):
        parse_rss_kib("Name:\tkthreadd\n")


def test_this_process_can_be_measured() -> None:
    before = cpu_times(os.getpid()).total_s
    sum(i * i for i in range(200_000))
    assert cpu_times(os.getpid()).total_s >= before
    assert rss_kib(os.getpid()) > 1000
    assert len(load_average()) == 3
