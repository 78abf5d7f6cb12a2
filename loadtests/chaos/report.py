"""The figures of the last `make chaos` and `make fuzz`, written into docs/reliability.md.

    python -m loadtests.chaos.report [--chaos artifacts/chaos/results.json]
        [--fuzz artifacts/fuzz/summary.json] [--doc docs/reliability.md]

Only the part between `<!-- reliability:figures -->` and `<!-- /reliability:figures -->` is replaced;
the rest of the document is written by hand. Rendering is pure (`render`); `main` reads and writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START = "<!-- reliability:figures -->"
END = "<!-- /reliability:figures -->"

Figures = Mapping[str, Any]


def _codes(codes: Mapping[str, int]) -> str:
    return ", ".join(f"{count:,} {code}" for code, count in sorted(codes.items(), key=lambda kv: -kv[1]))


def _ms(latency: Figures) -> str:
    return f"p50 {latency['p50_ms']} ms / p99 {latency['p99_ms']} ms"


def _backend_killed(f: Figures) -> tuple[str, str, str]:
    errors, restarted = f["error_reply_latency"], "yes" if f["proxy_restarted"] else "no"
    return (
        "lipsync-server killed (SIGKILL) under load, restarted on its port",
        f"4 v2 connections × 2 outstanding; {f['requests']:,} requests",
        f"outage {f['outage_s']} s: {_codes(f['outage_codes'])}; errors answered in {_ms(errors)}; "
        f"`/readyz` 503 after {f['readyz_false_after_s']} s; served again "
        f"{f['first_ok_after_serving_s']} s after the server was SERVING (its restart took "
        f"{f['server_restart_s']} s), then {_codes(f['codes_after_recovery'])}; proxy restarted: "
        f"{restarted}; lost {f['lost']}",
    )


def _one_of_two(f: Figures) -> tuple[str, str, str]:
    if f["failed_after_kill"]:
        noticed = f"{f['failed_after_kill']} failed, the last {f['balancer_noticed_within_s']} s after it"
    else:
        noticed = "none failed: the calls in flight on the dead one were retried on the survivor"
    return (
        "one of two backends killed (SIGKILL) under load",
        f"4 v2 connections × 4 outstanding; {f['requests']:,} requests",
        f"after the kill: {_codes(f['codes_after_kill'])}; {noticed}; the survivor served "
        f"{f['served_by_survivor']:,}, latency {_ms(f['latency_after_kill'])}; lost {f['lost']}",
    )


def _rolling(f: Figures) -> tuple[str, str, str]:
    stops = "; ".join(f"{e['process']} exit {e['exit_code']} in {e['stop_s']} s" for e in f["exits"])
    return (
        "rolling restart: SIGTERM to each of 2 servers, then each of 2 proxies, each restarted",
        f"6 v2 connections × 3 outstanding over both proxies; {f['requests']:,} requests",
        f"{_codes(f['codes'])}; {f['resent_after_1001']} unread requests sent again after a 1001 "
        f"close ({f['reconnects']} reconnects); {stops}; lost {f['lost']}",
    )


def _slow(f: Figures) -> tuple[str, str, str]:
    before, during = f["other_client_before"], f["other_client_during"]
    return (
        f"{f['slow_clients']} clients that stop reading (4 KiB receive buffer)",
        f"{f['requests_sent_by_slow_clients']:,} requests asking for "
        f"{f['replies_they_asked_for_mib']} MiB of frames, and one normal client",
        f"proxy RSS +{f['proxy_rss_growth_mib']} MiB (bound {f['proxy_rss_bound_mib']} MiB; after they "
        f"were dropped {f['proxy_rss_after_drop_mib']} MiB, and a second wave "
        f"+{f['proxy_rss_second_wave_over_start_mib']} MiB over the start); the slow clients dropped "
        f"{f['slow_clients_dropped_after_s']} s after they stalled (ping interval 2 s); the normal "
        f"client {_ms(before)} before, {_ms(during)} during, {_codes(f['other_client_codes'])}",
    )


def _vanished(f: Figures) -> tuple[str, str, str]:
    return (
        f"{f['clients']} clients (v1 and v2) vanish (TCP reset) with requests in flight",
        f"{f['requests_in_flight_when_they_vanished']} requests of 3 s each at the backend",
        f"{f['backend_calls_cancelled']} backend calls cancelled within {f['all_cancelled_within_s']} s, "
        f"{f['backend_calls_completed']} completed; proxy requests in flight afterwards: "
        f"{f['proxy_inflight_after']:g}",
    )


def _flood(f: Figures) -> tuple[str, str, str]:
    return (
        "a client flooding from 2 connections of one address",
        f"{f['flood_offered_per_s']} requests/s offered for 1 s ({f['flood_requests']} requests); "
        f"limits {f['connection_rate_limit_per_s']}/s a connection, {f['address_rate_limit_per_s']}/s "
        "an address",
        f"flood served at {f['flood_steady_rate_per_s']}/s, {_codes(f['flood_codes'])} "
        f"({f['messages_throttled']:g} reads held back); another client at 20 frames/s: "
        f"{_ms(f['other_client'])}, {_codes(f['other_client_codes'])}",
    )


def _malformed(f: Figures) -> tuple[str, str, str]:
    kinds = ", ".join(f"{count} {name}" for name, count in f["kinds"].items())
    by = f["by_protocol"]
    return (
        "malformed messages of every kind, each followed by a valid request",
        f"{f['malformed_sent']:,} malformed ({by['v1']['malformed']} v1/JSON, "
        f"{by['v2']['malformed']} v2/JSON, {by['grpc']['malformed']} gRPC; kinds: {kinds})",
        f"all {f['valid_answered']:,} valid requests answered with their frame and every malformed one "
        "with its error code, on the same connection; a message over 1 MiB closed with "
        f"{f['oversize_close_code']} and the next connection was served; processes alive: "
        f"{'yes' if f['processes_alive'] else 'no'}",
    )


def _overload(f: Figures) -> tuple[str, str, str]:
    accepted = f["accepted_latency"]
    return (
        "3× the capacity offered, then 0.5×",
        f"{f['offered_per_s']:g} requests/s for 5 s against a capacity of {f['capacity_per_s']:g}/s",
        f"{_codes(f['overload_codes'])}: served {f['served_per_s']}/s, RESOURCE_EXHAUSTED in "
        f"{_ms(f['refusal_latency'])}; accepted {_ms(accepted)}, max {accepted['max_ms']} ms "
        f"(deadline {f['deadline_ms']:g} ms); afterwards {_codes(f['after_codes'])}",
    )


#: Each fault test's row: what was done, the load held, what happened.
ROWS: Mapping[str, Callable[[Figures], tuple[str, str, str]]] = {
    "test_a_killed_backend_gives_unavailable_and_is_used_again_once_restarted": _backend_killed,
    "test_when_one_of_two_backends_dies_no_request_fails_once_the_balancer_noticed": _one_of_two,
    "test_a_rolling_restart_of_every_server_and_proxy_loses_no_accepted_request": _rolling,
    "test_clients_that_stop_reading_cost_bounded_memory_and_others_do_not_notice": _slow,
    "test_clients_that_vanish_mid_request_have_their_backend_calls_cancelled": _vanished,
    "test_a_flooding_client_is_held_to_its_rate_and_other_clients_do_not_notice": _flood,
    "test_a_thousand_malformed_messages_among_valid_ones_leave_every_valid_one_answered": _malformed,
    (
        "test_three_times_the_capacity_is_refused_quickly_and_the_accepted_requests_meet_their_deadline"
    ): _overload,
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(chaos: Mapping[str, Any], fuzz: Mapping[str, Any] | None) -> str:
    """The figures section: one row per fault, the fuzzing summary, and the totals."""
    faults: Mapping[str, Any] = chaos["faults"]
    lines = [
        START,
        f"Measured on {chaos['machine']} (load average {', '.join(map(str, chaos['load_average']))}) by "
        "`make chaos`, written here by `make reliability-doc`.",
        "",
        "| fault | load held | passed | what happened |",
        "|---|---|---|---|",
    ]
    requests = lost = 0
    for name, entry in faults.items():
        row = ROWS.get(name)
        figures = entry.get("figures", {})
        passed = "yes" if entry.get("passed") else "**no**"
        requests += int(figures.get("requests", 0))
        lost += int(figures.get("lost", 0))
        if row is None:
            lines.append(f"| `{name}` | | {passed} | {_cell(json.dumps(figures))} |")
            continue
        fault, load, outcome = row(figures)
        lines.append(f"| {_cell(fault)} | {_cell(load)} | {passed} | {_cell(outcome)} |")
    survived = sum(1 for entry in faults.values() if entry.get("passed"))
    malformed = sum(int(e.get("figures", {}).get("malformed_sent", 0)) for e in faults.values())
    lines += [
        "",
        f"Faults survived: **{survived} of {len(faults)}**. Requests sent under faults: **{requests:,}**; "
        f"requests lost: **{lost}**.",
    ]
    if fuzz is not None:
        verdict = "no failure" if fuzz["passed"] else "**failures**"
        lines += [
            "",
            f"Fuzzing (`make fuzz`, {fuzz['seconds_per_target']} s a target): "
            f"**{fuzz['total_runs']:,} inputs**, {verdict}.",
            "",
            "| target | inputs | coverage (edges) | corpus | findings |",
            "|---|---|---|---|---|",
        ]
        for target in fuzz["targets"]:
            findings = ", ".join(f"`{path}`" for path in target["findings"]) or "none"
            counts = f"{target['runs']:,} | {target['coverage']} | {target['corpus']}"
            lines.append(f"| {target['name']} | {counts} | {findings} |")
        malformed += int(fuzz["total_runs"])
    lines += ["", f"Bad inputs tried in all: **{malformed:,}**.", END]
    return "\n".join(lines)


def replace_section(document: str, section: str) -> str:
    """`document` with its figures section replaced by `section`."""
    start, end = document.find(START), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document has no {START} ... {END} section")
    return document[:start] + section + document[end + len(END) :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.chaos.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chaos", type=Path, default=REPO / "artifacts" / "chaos" / "results.json")
    parser.add_argument("--fuzz", type=Path, default=REPO / "artifacts" / "fuzz" / "summary.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "reliability.md")
    args = parser.parse_args(argv)
    if not args.chaos.is_file():
        sys.stderr.write(f"{args.chaos} is missing: run `make chaos` first\n")
        return 2
    chaos = json.loads(args.chaos.read_text())
    fuzz = json.loads(args.fuzz.read_text()) if args.fuzz.is_file() else None
    args.doc.write_text(replace_section(args.doc.read_text(), render(chaos, fuzz)))
    sys.stderr.write(f"wrote the figures into {args.doc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
