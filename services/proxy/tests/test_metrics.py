"""The proxy's metrics are the ones docs/observability.md lists."""

from __future__ import annotations

import re
from pathlib import Path

from lipsync_proxy.metrics import Metrics

OBSERVABILITY_DOC = Path(__file__).resolve().parents[3] / "docs" / "observability.md"


def test_the_documented_proxy_metrics_are_exactly_those_exposed() -> None:
    section = OBSERVABILITY_DOC.read_text().split("### Proxy metrics")[1].split("\n### ")[0]
    documented = set(re.findall(r"^\| `(lipsync_proxy_\w+)`", section, re.MULTILINE))
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    assert documented == exposed


def test_a_session_counts_its_frames_and_its_delivered_share() -> None:
    metrics = Metrics()
    metrics.count_session(requested=10, delivered=9)
    metrics.count_session(requested=0, delivered=0)
    registry = metrics.registry
    assert registry.get_sample_value("lipsync_proxy_session_frames_requested_total") == 10
    assert registry.get_sample_value("lipsync_proxy_session_frames_delivered_total") == 9
    assert registry.get_sample_value("lipsync_proxy_session_delivered_ratio_count") == 1, (
        "one asked for frames"
    )
    assert registry.get_sample_value("lipsync_proxy_session_delivered_ratio_bucket", {"le": "0.9"}) == 1
    assert registry.get_sample_value("lipsync_proxy_session_delivered_ratio_bucket", {"le": "0.8"}) == 0
