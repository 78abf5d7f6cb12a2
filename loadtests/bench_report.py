"""The benchmark results as docs/performance.md sections, and SPEC §9's targets checked against them.

Pure: `loadtests.bench` collects a results document (plain JSON values: run summaries from
`RunResult.summary`, idle-memory, viewer and server figures, the machine), these functions turn it
into Markdown. `python -m loadtests.bench --from-json FILE` re-renders a saved document.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadtests.perfdoc import fmt, table

Results = Mapping[str, Any]
Run = Mapping[str, Any]

BENCH = ".venv/bin/python -m loadtests.bench"


def find_run(
    runs: Sequence[Run], name: str, connections: int, depth: int = 1, delay_ms: float = 0.0
) -> Run | None:
    """The run of client `name` with that many connections, depth and backend delay."""
    for run in runs:
        labels = run.get("labels", {})
        if (
            run["name"] == name
            and run["connections"] == connections
            and run["depth"] == depth
            and labels.get("delay_ms", 0.0) == delay_ms
        ):
            return run
    return None


def _latency(run: Run | None, key: str) -> float:
    if run is None:
        return math.nan
    value = run["latency_ms"].get(key)
    return math.nan if value is None else float(value)


def _turns_latency(turns: Mapping[str, Any], client: str, key: str) -> float:
    return float(turns[client][key]) if client in turns else math.nan


def _rate(run: Run | None) -> float:
    if run is None or run.get("frames_per_s") is None:
        return math.nan
    return float(run["frames_per_s"])


def _cpu(run: Run | None, role: str) -> float:
    if run is None:
        return math.nan
    value = run.get("cpu_us_per_frame", {}).get(role)
    return math.nan if value is None else float(value)


def _load(run: Mapping[str, Any] | None) -> str:
    if run is None:
        return "–"
    load = run.get("labels", {}).get("load_average") or run.get("load_average")
    return "–" if not load else f"{load[0]:.1f}"


@dataclass(frozen=True)
class Target:
    """One SPEC §9 target: what was measured and whether it is met (None: not measured)."""

    what: str
    target: str
    measured: str
    met: bool | None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**not met**", None: "not measured"}[self.met]


def _check(value: float, good: Callable[[float], bool]) -> bool | None:
    return None if math.isnan(value) else good(value)


def evaluate_targets(results: Results) -> list[Target]:
    """Every SPEC §9 target this benchmark covers, with its measured value."""
    proxy_runs = results.get("proxy", [])
    targets = []

    # Taken from the requests of direct unary and the proxy taking turns (`loadtests.turns`): whole runs
    # one after the other differ by the machine's drift between them more than by the proxy.
    turns = results.get("turns", {})
    added_p50 = _turns_latency(turns, "proxy v1", "p50") - _turns_latency(turns, "direct unary", "p50")
    added_p99 = _turns_latency(turns, "proxy v1", "p99") - _turns_latency(turns, "direct unary", "p99")
    targets += [
        Target("proxy: added latency at 1 connection, p50", "≤ 0.15 ms over direct unary",
               f"{fmt(added_p50)} ms", _check(added_p50, lambda v: v <= 0.15)),
        Target("proxy: added latency at 1 connection, p99", "≤ 0.3 ms over direct unary",
               f"{fmt(added_p99)} ms", _check(added_p99, lambda v: v <= 0.3)),
    ]  # fmt: skip

    proxy64 = find_run(proxy_runs, "proxy v1", 64)
    unary64 = find_run(proxy_runs, "direct unary", 64)
    cpu64 = _cpu(proxy64, "proxy")
    ratio64 = _rate(proxy64) / _rate(unary64)
    targets += [
        Target("proxy: CPU per frame at 64 connections", "≤ 150 µs", f"{fmt(cpu64)} µs",
               _check(cpu64, lambda v: v <= 150)),
        Target("proxy: throughput at 64 connections", "≥ 1.3× direct unary", f"×{fmt(ratio64)}",
               _check(ratio64, lambda v: v >= 1.3)),
    ]  # fmt: skip

    off64 = _cpu(find_run(proxy_runs, "proxy v1 tracing off", 64), "proxy")
    always64 = _cpu(find_run(proxy_runs, "proxy v1 always_on", 64), "proxy")
    traced = always64 / off64
    targets.append(
        Target("proxy: CPU per frame at 64 connections, every frame sampled", "≤ 2× tracing off",
               f"×{fmt(traced)} ({fmt(always64)} against {fmt(off64)} µs)", _check(traced, lambda v: v <= 2))
    )  # fmt: skip

    piped = find_run(results.get("pipelining", []), "proxy v1", 1, depth=8, delay_ms=17.0)
    piped_direct = find_run(results.get("pipelining", []), "direct unary", 1, depth=8, delay_ms=17.0)
    piped_ratio = _rate(piped) / _rate(piped_direct)
    targets.append(
        Target("proxy: 1 connection pipelining 8, 17 ms backend", "≥ 0.95× direct unary",
               f"×{fmt(piped_ratio)}", _check(piped_ratio, lambda v: v >= 0.95))
    )  # fmt: skip

    idle = results.get("idle", [])
    worst = max((row["kib_per_connection"] for row in idle), default=math.nan)
    targets.append(
        Target("proxy: 1,000 idle connections (worst of: never used, one frame each)", "≤ 20 KiB each",
               f"{fmt(worst)} KiB", _check(worst, lambda v: v <= 20))
    )  # fmt: skip

    server = {row["key"]: row for row in results.get("server", [])}
    full = server.get("full", {}).get("per_core", math.nan)
    crop = server.get("crop", {}).get("per_core", math.nan)
    targets += [
        Target("server: sprite full 1280×720 frames per core", "≥ 2,000 frames/s",
               f"{fmt(full)} frames/s", _check(full, lambda v: v >= 2000)),
        Target("server: face-crop frames per core", "≥ 4,000 frames/s", f"{fmt(crop)} frames/s",
               _check(crop, lambda v: v >= 4000)),
    ]  # fmt: skip

    e2e = results.get("e2e", [])
    added_e2e = _latency(find_run(e2e, "nginx+proxy v1", 1), "p50") - _latency(
        find_run(e2e, "direct unary", 1), "p50"
    )
    targets.append(
        Target("end to end: nginx TLS + proxy, p50", "≤ 1 ms over direct unary", f"{fmt(added_e2e)} ms",
               _check(added_e2e, lambda v: v <= 1.0))
    )  # fmt: skip
    return targets


def targets_section(results: Results) -> str:
    rows = [(t.what, t.target, t.measured, t.verdict) for t in evaluate_targets(results)]
    return "\n\n".join(
        [
            table(["target", "SPEC §9", "measured", ""], rows),
            "unet328 (per frame and per batch size on CPU, batch throughput on a GPU): see its section.",
            f"Command: `make bench` (`{BENCH}`); the figures come from the sections below.",
        ]
    )


def machine_section(results: Results) -> str:
    machine = results.get("machine", {})
    parts = [table(["", ""], [(key, str(value)) for key, value in machine.items()])] if machine else []
    measured = results.get("measured", {})
    if measured:
        rows = [
            (
                section,
                m["at"],
                m["commit"],
                m["minutes"],
                _loads(m["load_average_start"]),
                _loads(m["load_average_end"]),
            )
            for section, m in measured.items()
        ]
        parts += [
            "When each section was measured (commit `+` = with uncommitted changes; load average over 1, 5"
            " and 15 minutes at the start and the end):",
            table(["section", "measured", "commit", "minutes", "load at start", "load at end"], rows),
        ]
    return "\n\n".join(parts) or "Not measured."


def _loads(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


_CLIENTS = (
    "direct unary", "direct stream", "proxy v1", "proxy v2", "proxy v1 tracing off", "proxy v1 always_on",
)  # fmt: skip


def proxy_section(results: Results) -> str:
    runs = results.get("proxy", [])
    duration = results.get("settings", {}).get("duration_s", "D")
    parts = [
        "The proxy against the fixed-payload benchmark backend (`loadtests/backend.py`: 98,432-byte frames,"
        " a fixed delay per frame), side by side in one run with the two direct baselines: a client making"
        " one unary `Infer` per frame, and a client with one `StreamInfer` stream per connection."
        " C connections, one request outstanding on each. CPU is user + system time from /proc over the"
        " measured window, divided by the frames; × is frames/s relative to direct unary at the same C."
        f" Each row is the median run (by frames/s) of {results.get('settings', {}).get('rounds', 1)}, the"
        " six clients taking turns. `proxy v1` and `proxy v2` are the proxy as deployed: with the `OTEL_*`"
        f" settings compose ships ({_otel(results.get('proxy_tracing', {}).get('', {}))}), exporting to"
        " the project's OTLP sink (`deploy/otlp-sink`), and without the per-frame log line, as the"
        " deployments ship it (`PROXY_QUIET_FRAMES`); `proxy v1 tracing off` has no `OTEL_*` variable,"
        " `proxy v1 always_on` samples every frame"
        f" ({results.get('proxy_spans_exported', 'an unknown number of')} proxy spans reached the sink)."
        " The deployments' per-client rate limits are left out: every connection here comes from one"
        " address.",
    ]
    for delay in sorted({run.get("labels", {}).get("delay_ms", 0.0) for run in runs}):
        rows = []
        for connections in sorted({run["connections"] for run in runs}):
            base = _rate(find_run(runs, "direct unary", connections, delay_ms=delay))
            for name in _CLIENTS:
                run = find_run(runs, name, connections, delay_ms=delay)
                if run is None:
                    continue
                rows.append(_run_row(connections, run, base))
        parts += [f"### Backend delay {fmt(delay)} ms", table(_RUN_HEADERS, rows)]
    turns = results.get("turns", {})
    if turns:
        rows = [
            [client, *(turns[client][key] for key in ("p50", "p90", "p99"))]
            for client in ("direct unary", "proxy v1")
        ]
        parts += [
            "### One connection, taking turns",
            f"One client alternating request by request, {turns['pairs']:,} times, between a direct unary"
            " `Infer` and the same frame through the proxy as deployed (v1), 0 ms backend: both see the"
            " machine at the same moments, where whole runs one after the other also see its speed drift"
            " between them. The added latency at one connection is measured here.",
            table(["client", "p50 ms", "p90 ms", "p99 ms"], rows),
        ]
    pipelined = results.get("pipelining", [])
    if pipelined:
        base = _rate(find_run(pipelined, "direct unary", 1, depth=8, delay_ms=17.0))
        parts += [
            "### One connection pipelining 8 requests, 17 ms backend",
            "The direct unary client keeps 8 calls in flight; the direct stream client 8 requests on one"
            " stream (the backend works on 8 at once and answers in order, as lipsync-server does); the proxy"
            " clients 8 requests on one WebSocket.",
            table(_RUN_HEADERS, [_run_row(1, run, base) for run in pipelined]),
        ]
    parts += [
        f"Command: `make bench` runs all of this (`{BENCH} --only proxy --duration {duration}`)."
        " One row by hand, e.g. 64 connections through the proxy:",
        "```sh\n"
        ".venv/bin/python -m loadtests.backend --port 50061 --delay-ms 0 &\n"
        ".venv/bin/lipsync-proxy -ws-port 8086 -grpc-addr 127.0.0.1:50061 --quiet-frames &\n"
        ".venv/bin/python -m loadtests.wsload --url ws://127.0.0.1:8086/ws --protocol v1 -c 64 -d 1 \\\n"
        "    --duration 5 --proxy-pid $(pgrep -f lipsync-proxy) --backend-pid $(pgrep -f loadtests.backend)\n"
        ".venv/bin/python -m loadtests.direct --addr 127.0.0.1:50061 --mode unary -c 64 --duration 5\n"
        "```",
    ]
    return "\n\n".join(parts)


def _otel(otel: Mapping[str, str]) -> str:
    names = ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")
    return ", ".join(f"`{name}={otel[name]}`" for name in names if name in otel) or "unknown"


_RUN_HEADERS = [
    "C", "D", "client", "frames/s", "× direct unary", "MB/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
    "proxy µs/frame", "backend µs/frame", "client µs/frame", "errors", "load",
]  # fmt: skip


def _run_row(connections: int, run: Run, base_rate: float) -> list[object]:
    is_proxy = str(run["name"]).startswith(("proxy", "nginx"))
    return [
        connections,
        run["depth"],
        run["name"],
        _rate(run),
        _rate(run) / base_rate,
        run.get("megabytes_per_s"),
        _latency(run, "p50"),
        _latency(run, "p90"),
        _latency(run, "p99"),
        _latency(run, "max"),
        _cpu(run, "proxy") if is_proxy else None,
        _cpu(run, "backend"),
        _cpu(run, "client"),
        run.get("error_count", 0),
        _load(run),
    ]


def idle_section(results: Results) -> str:
    idle = results.get("idle", [])
    if not idle:
        return "Not measured."
    rows = [
        (
            row["connections"],
            "never used" if row["frames_each"] == 0 else f"{row['frames_each']} frame each",
            row["rss_before_kib"] / 1024,
            row["rss_after_kib"] / 1024,
            row["kib_per_connection"],
            _load(row),
        )
        for row in idle
    ]
    return "\n\n".join(
        [
            "The proxy's resident memory (VmRSS) before and after opening v1 WebSocket connections that then"
            " stay idle, in front of the benchmark backend.",
            table(["connections", "before", "RSS MiB before", "RSS MiB after", "KiB each", "load"], rows),
            f"Command: `{BENCH} --only idle`.",
        ]
    )  # fmt: skip


def e2e_section(results: Results) -> str:
    runs = results.get("e2e", [])
    if not runs:
        return str(results.get("e2e_skipped") or "Not measured.")
    base = _rate(find_run(runs, "direct unary", 1))
    return "\n\n".join(
        [
            "One connection, one request at a time, against the benchmark backend (no delay): the browser's"
            " path `wss://` → nginx (TLS, the project's /ws location) → proxy → backend, against the proxy"
            " alone and against direct unary calls.",
            table(_RUN_HEADERS, [_run_row(1, run, base) for run in runs]),
            f"Command: `{BENCH} --only e2e` (needs `nginx` and `openssl` on the PATH).",
        ]
    )


def viewers_section(results: Results) -> str:
    viewers = results.get("viewers", {})
    if not viewers:
        return "Not measured."
    parts = [
        "Viewers play at 25 FPS: each asks for the next frame every 40 ms whatever has arrived, with at most"
        " 8 requests outstanding (a tick that finds 8 is a late frame). Viewers are added step by step; a"
        " step holds when p99 < 100 ms, nothing failed and no frame was late; a step that does not hold is"
        " measured once more before the ramp stops (`measured` 2). The load generator runs on the same"
        " machine and takes its share of the CPU.",
    ]
    rows = []
    for entry in viewers.values():
        rows.append(
            (entry["what"], entry["capacity_viewers"], entry["capacity_viewers"] * 25, entry["command"])
        )
    parts.append(table(["target", "viewers held at p99 < 100 ms", "frames/s", "command"], rows))
    for entry in viewers.values():
        steps = [
            (s["viewers"], s["frames_per_s"], s["p50_ms"], s["p99_ms"], s["max_ms"], s["late"], s["errors"],
             s.get("attempt", 1), "yes" if s["holds"] else "no")
            for s in entry["steps"]
        ]  # fmt: skip
        headers = ["viewers", "frames/s", "p50 ms", "p99 ms", "max ms", "late", "errors", "measured", "holds"]
        parts += [f"#### {entry['what']}", table(headers, steps)]
    return "\n\n".join(parts)


def server_section(results: Results) -> str:
    server = results.get("server", [])
    splice = results.get("splice", [])
    if not server and not splice:
        return "Not measured."
    parts = [
        "The demo (sprite) avatar, 1280×720 frames with a ~180-px face box, JPEG quality 85, rendered on one"
        " thread in the benchmark's process: frames per CPU-second is frames per second per core.",
        table(
            ["path", "frames/s per core", "ms per frame", "frames/s wall", "bytes per frame", "load"],
            [
                (
                    row["name"],
                    row["per_core"],
                    1000 / row["per_core"],
                    row["per_wall_s"],
                    row["bytes_per_frame"],
                    _load(row),
                )
                for row in server
            ],
        ),
        "`as served` is `lipsync_server.render.render` as the server calls it: the sprite region spliced into"
        " the frame's cached restart-interval JPEG (`lipsync_server.full_frames`, restart interval 8)."
        " `whole-frame encode` is the same frame composited into a copy and encoded whole, the path before"
        " the splice.",
    ]
    if splice:
        parts += [
            "### JPEG splice micro-benchmark",
            "Demo frame 0 with a centred face box, one core: encoding the whole composited frame against"
            " re-encoding only the restart intervals the box touches. `extra bytes` is what the restart"
            " markers add to the frame's JPEG.",
            table(
                ["face box", "method", "R (MCUs)", "ms per frame", "speed-up", "extra bytes %"],
                [
                    (
                        f"{row['box_px']} px",
                        row["method"],
                        row["restart_interval"],
                        row["ms_per_frame"],
                        row["speedup"],
                        row["extra_bytes_pct"],
                    )
                    for row in splice
                ],
            ),
        ]
    parts.append(f"Command: `{BENCH} --only server` (or `.venv/bin/python -m loadtests.bench_server`).")
    return "\n\n".join(parts)


#: Section key → how it is rendered, in the order `loadtests.bench` writes them.
RENDERERS: dict[str, Callable[[Results], str]] = {
    "machine": machine_section,
    "targets": targets_section,
    "proxy": proxy_section,
    "idle": idle_section,
    "e2e": e2e_section,
    "viewers": viewers_section,
    "server": server_section,
}
