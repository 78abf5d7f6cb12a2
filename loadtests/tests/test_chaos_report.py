"""The figures section of docs/reliability.md, rendered from the fault suite's and the fuzzer's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtests.chaos.report import END, ROWS, START, render, replace_section

VANISHED = "test_clients_that_vanish_mid_request_have_their_backend_calls_cancelled"
CHAOS: dict[str, Any] = {
    "machine": "x86_64, 2 cores",
    "load_average": [1.0, 1.5, 2.0],
    "faults": {
        VANISHED: {
            "passed": True,
            "figures": {
                "clients": 20,
                "requests_in_flight_when_they_vanished": 160,
                "backend_calls_cancelled": 160,
                "all_cancelled_within_s": 0.03,
                "backend_calls_completed": 0,
                "proxy_inflight_after": 0.0,
            },
        },
        "test_something_new": {"passed": False, "figures": {"requests": 10, "lost": 2}},
    },
}
FUZZ: dict[str, Any] = {
    "seconds_per_target": 10,
    "total_runs": 12345,
    "passed": True,
    "targets": [{"name": "v1", "runs": 12345, "coverage": 62, "corpus": 9, "findings": []}],
}


def test_each_fault_gets_a_row_and_the_totals_count_faults_lost_requests_and_bad_inputs() -> None:
    section = render(CHAOS, FUZZ)

    assert section.startswith(START)
    assert section.endswith(END)
    assert "160 backend calls cancelled within 0.03 s" in section
    assert "| `test_something_new` |" in section
    assert "| **no** |" in section
    assert "Faults survived: **1 of 2**" in section
    assert "requests lost: **2**" in section
    assert "| v1 | 12,345 | 62 | 9 | none |" in section
    assert "Bad inputs tried in all: **12,345**" in section


def test_without_a_fuzz_summary_the_section_says_nothing_of_fuzzing() -> None:
    assert "Fuzzing" not in render(CHAOS, None)


def test_only_the_marked_section_is_replaced() -> None:
    document = f"intro\n{START}\nold figures\n{END}\nafter\n"

    assert replace_section(document, f"{START}\nnew\n{END}") == f"intro\n{START}\nnew\n{END}\nafter\n"
    with pytest.raises(ValueError, match="no <!-- reliability:figures -->"):
        replace_section("no markers here", "x")


def test_every_fault_test_of_the_suite_has_a_row() -> None:
    tests = Path(__file__).resolve().parents[1] / "chaos" / "tests"
    names = {
        line.split("def ", 1)[1].split("(", 1)[0]
        for path in tests.glob("test_*.py")
        for line in path.read_text().splitlines()
        if line.startswith("async def test_") or line.startswith("def test_")
    }

    assert names == set(ROWS)
