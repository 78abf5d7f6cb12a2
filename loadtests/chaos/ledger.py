"""Every request a fault test sent and what became of it, and the figures drawn from that. Pure.

A request is one logical frame asked for: when its connection is closed under it with 1001 (a proxy
shutting down, which answers every request it has read) the client sends it again on another
connection, and it stays the same entry with `resent` counted. Times are `time.monotonic()` seconds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

OK = "OK"
#: A request still unanswered when the test stopped waiting for it: lost.
LOST = "LOST"
#: A reply that was no FRAME or ERROR for the request, or a FRAME for another frame.
WRONG = "WRONG_REPLY"


@dataclass
class Outcome:
    """One request: when it was sent, when and how it was answered."""

    frame_id: int
    sent: float
    done: float | None = None
    code: str | None = None
    resent: int = 0

    @property
    def latency_s(self) -> float:
        return math.nan if self.done is None else self.done - self.sent


@dataclass
class Ledger:
    """The requests of one fault test."""

    outcomes: list[Outcome] = field(default_factory=list)

    def start(self, frame_id: int, now: float) -> Outcome:
        outcome = Outcome(frame_id, now)
        self.outcomes.append(outcome)
        return outcome

    def between(self, start: float = -math.inf, end: float = math.inf) -> list[Outcome]:
        """The requests sent in [start, end)."""
        return [o for o in self.outcomes if start <= o.sent < end]

    def finish_lost(self) -> None:
        """Mark what never got an answer as lost."""
        for outcome in self.outcomes:
            if outcome.code is None:
                outcome.code = LOST


def codes(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """How many requests ended with each code."""
    return dict(Counter(o.code or LOST for o in outcomes))


def errors(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """The requests that did not end OK."""
    return [o for o in outcomes if o.code != OK]


def percentile_ms(values_s: Sequence[float], share: float) -> float:
    """The nearest-rank `share` percentile of `values_s`, in milliseconds (NaN when empty)."""
    ordered = sorted(v for v in values_s if not math.isnan(v))
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(share / 100.0 * len(ordered)))
    return round(ordered[rank - 1] * 1000.0, 2)


def latency_summary(outcomes: Iterable[Outcome]) -> dict[str, float | int]:
    """count, p50, p99 and max latency (ms) of answered requests."""
    latencies = [o.latency_s for o in outcomes if o.done is not None]
    return {
        "count": len(latencies),
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "max_ms": percentile_ms(latencies, 100),
    }


def last_error_after(outcomes: Iterable[Outcome], moment: float) -> float | None:
    """Seconds from `moment` to the answer of the last request that failed after it; None if none did."""
    late = [o.done for o in outcomes if o.code != OK and o.done is not None and o.done >= moment]
    return None if not late else round(max(late) - moment, 3)


def first_ok_after(outcomes: Iterable[Outcome], moment: float) -> float | None:
    """Seconds from `moment` to the first request answered OK after it; None if none was."""
    done = [o.done for o in outcomes if o.code == OK and o.done is not None and o.done >= moment]
    return None if not done else round(min(done) - moment, 3)


def rate(outcomes: Iterable[Outcome], code: str, seconds: float) -> float:
    """Requests a second that ended with `code`, over `seconds`."""
    return round(sum(1 for o in outcomes if o.code == code) / seconds, 1) if seconds > 0 else math.nan
