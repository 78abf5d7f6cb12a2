"""The fault suite's ledger: what became of each request, and the figures drawn from it."""

from __future__ import annotations

import math

from loadtests.chaos.ledger import (
    LOST,
    OK,
    Ledger,
    codes,
    errors,
    first_ok_after,
    last_error_after,
    latency_summary,
    percentile_ms,
    rate,
)


def ledger_of(*entries: tuple[float, float | None, str | None]) -> Ledger:
    ledger = Ledger()
    for sent, done, code in entries:
        outcome = ledger.start(0, sent)
        outcome.done, outcome.code = done, code
    return ledger


def test_unanswered_requests_are_counted_as_lost() -> None:
    ledger = ledger_of((0.0, 0.1, OK), (0.0, None, None))

    ledger.finish_lost()

    assert codes(ledger.outcomes) == {OK: 1, LOST: 1}
    assert [o.code for o in errors(ledger.outcomes)] == [LOST]


def test_percentiles_are_nearest_rank_in_milliseconds_and_skip_unanswered() -> None:
    assert percentile_ms([0.001, 0.002, 0.003, 0.004], 50) == 2.0
    assert percentile_ms([0.001, 0.002, 0.003, 0.004], 100) == 4.0
    assert math.isnan(percentile_ms([], 50))
    ledger = ledger_of((0.0, 0.010, OK), (0.0, 0.030, OK), (0.0, None, None))
    assert latency_summary(ledger.outcomes) == {"count": 2, "p50_ms": 10.0, "p99_ms": 30.0, "max_ms": 30.0}


def test_the_time_a_fault_took_to_clear_is_read_from_the_answers() -> None:
    ledger = ledger_of(
        (1.0, 1.2, "UNAVAILABLE"), (1.5, 1.6, "UNAVAILABLE"), (1.7, 2.5, OK), (0.5, 0.6, "UNAVAILABLE")
    )

    assert last_error_after(ledger.outcomes, 1.0) == 0.6
    assert first_ok_after(ledger.outcomes, 1.0) == 1.5
    assert last_error_after(ledger_of((0.0, 0.1, OK)).outcomes, 0.0) is None
    assert [o.sent for o in ledger.between(1.0, 1.7)] == [1.0, 1.5]


def test_a_rate_counts_one_code_over_a_window() -> None:
    ledger = ledger_of((0, 1, OK), (0, 1, OK), (0, 1, "RESOURCE_EXHAUSTED"))

    assert rate(ledger.outcomes, OK, 2.0) == 1.0
    assert math.isnan(rate(ledger.outcomes, OK, 0.0))
