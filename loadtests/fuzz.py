"""`make fuzz`: every atheris harness of the services, one after the other, within one time budget.

    python -m loadtests.fuzz [--seconds 60] [--only v1,json] [--out artifacts/fuzz]

The harnesses are the services' own (`services/proxy/fuzz/`, `services/lipsync-server/fuzz/`); this
runs each for an equal share of `--seconds`, starting from its checked-in seed corpus and every
regression input, and keeps what libFuzzer learns in `OUT/corpus/TARGET/` for the next run. An input
that fails a harness's checks (a crash, a hang past `-timeout`, memory past `-rss_limit_mb`) is copied
into that service's `fuzz/regressions/TARGET/`, where the service's tests replay it from then on, and
the run fails. `OUT/summary.json` records executions, coverage and findings per target.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROXY_FUZZ = REPO / "services" / "proxy" / "fuzz"
SERVER_FUZZ = REPO / "services" / "lipsync-server" / "fuzz"
#: libFuzzer's names for what it saves: a failed check, an input past -timeout, one past -rss_limit_mb.
FINDING_PREFIXES = ("crash-", "timeout-", "oom-", "leak-")
#: Seconds a target needs to start (imports, and the request target's server) on top of its share.
STARTUP_ALLOWANCE_S = 60

logger = logging.getLogger("loadtests.fuzz")


@dataclass(frozen=True)
class Target:
    """One harness run: `script` with `args` first (the protocol harness takes the target's name)."""

    name: str
    fuzz_dir: Path
    script: str
    args: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    @property
    def seeds(self) -> Path:
        return self.fuzz_dir / "corpus" / self.name

    @property
    def regressions(self) -> Path:
        return self.fuzz_dir / "regressions" / self.name


TARGETS: Sequence[Target] = (
    Target("v1", PROXY_FUZZ, "fuzz_protocol.py", ("v1",), ("-max_len=512",)),
    Target("v2_client", PROXY_FUZZ, "fuzz_protocol.py", ("v2_client",), ("-max_len=2048",)),
    Target("v2_server", PROXY_FUZZ, "fuzz_protocol.py", ("v2_server",), ("-max_len=2048",)),
    Target("json", PROXY_FUZZ, "fuzz_protocol.py", ("json",), (f"-dict={PROXY_FUZZ / 'json.dict'}",)),
    Target("http2", PROXY_FUZZ, "fuzz_protocol.py", ("http2",), ("-max_len=4096",)),
    Target("package", SERVER_FUZZ, "fuzz_package.py", (), ("-max_len=16384",)),
    Target("requests", SERVER_FUZZ, "fuzz_requests.py", (), ("-max_len=32768",)),
)


@dataclass
class TargetResult:
    """What one target's run did."""

    name: str
    seconds: float
    runs: int = 0
    coverage: int = 0
    features: int = 0
    corpus: int = 0
    findings: list[str] = field(default_factory=list)
    exit_code: int = 0


_STAT = re.compile(r"^stat::(\w+):\s*(\d+)\s*$", re.MULTILINE)
_DONE = re.compile(r"^#\d+\s+(?:DONE|INITED)\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.MULTILINE)


def parse_output(name: str, seconds: float, output: str, exit_code: int) -> TargetResult:
    """The result of one libFuzzer run from its output (run with -print_final_stats=1)."""
    stats = {key: int(value) for key, value in _STAT.findall(output)}
    result = TargetResult(name, round(seconds, 1), runs=stats.get("number_of_executed_units", 0))
    result.exit_code = exit_code
    done = _DONE.findall(output)
    if done:
        result.coverage, result.features, result.corpus = (int(v) for v in done[-1])
    return result


def share(total_s: float, count: int) -> int:
    """Each of `count` targets' whole seconds of a `total_s` budget, at least one."""
    return max(1, int(total_s // max(1, count)))


def keep_findings(found: Path, regressions: Path, root: Path = REPO) -> list[str]:
    """Move libFuzzer's saved inputs from `found` into `regressions`, named by kind and content hash;
    their paths relative to `root`."""
    kept = []
    for path in sorted(found.iterdir()) if found.is_dir() else []:
        kind = next((prefix for prefix in FINDING_PREFIXES if path.name.startswith(prefix)), None)
        if kind is None:
            continue
        data = path.read_bytes()
        regressions.mkdir(parents=True, exist_ok=True)
        destination = regressions / f"{kind}{hashlib.sha1(data).hexdigest()[:16]}"
        destination.write_bytes(data)
        path.unlink()
        kept.append(str(destination.relative_to(root)))
    return kept


def run_target(target: Target, seconds: int, out: Path) -> TargetResult:
    """Fuzz one target for `seconds`; its log is `out/TARGET.log`."""
    corpus = out / "corpus" / target.name
    found = out / "found" / target.name
    corpus.mkdir(parents=True, exist_ok=True)
    found.mkdir(parents=True, exist_ok=True)
    inputs = [str(corpus), str(target.seeds)] + (
        [str(target.regressions)] if target.regressions.is_dir() else []
    )
    command = [
        sys.executable,
        str(target.fuzz_dir / target.script),
        *target.args,
        *inputs,
        f"-max_total_time={seconds}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={found}/",
        *target.flags,
    ]
    log = out / f"{target.name}.log"
    started = time.monotonic()
    with log.open("wb") as output:
        try:
            completed = subprocess.run(
                command, stdout=output, stderr=subprocess.STDOUT, timeout=seconds + STARTUP_ALLOWANCE_S
            )
            exit_code = completed.returncode
        except subprocess.TimeoutExpired:
            exit_code = -1
    text = log.read_text(errors="replace")
    result = parse_output(target.name, time.monotonic() - started, text, exit_code)
    result.findings = keep_findings(found, target.regressions)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="time budget for all targets (default 60)"
    )
    parser.add_argument("--only", default="", help="comma list of targets (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "fuzz", help="corpus, logs, summary")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: F401  # the harnesses need it: say so once
    except ImportError:
        logger.error("atheris is not installed: make venv (requirements-dev.txt) or pip install atheris")
        return 2
    chosen = {name for name in args.only.split(",") if name}
    unknown = chosen - {target.name for target in TARGETS}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    targets = [target for target in TARGETS if not chosen or target.name in chosen]
    seconds = share(args.seconds, len(targets))
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for target in targets:
        logger.info("fuzzing %s for %d s", target.name, seconds)
        result = run_target(target, seconds, args.out)
        results.append(result)
        logger.info(
            "  %s: %d inputs in %.0f s, coverage %d, corpus %d%s",
            target.name,
            result.runs,
            result.seconds,
            result.coverage,
            result.corpus,
            f", FOUND {len(result.findings)}: {', '.join(result.findings)}" if result.findings else "",
        )
    failed = [r for r in results if r.findings or r.exit_code != 0]
    summary = {
        "seconds_per_target": seconds,
        "total_runs": sum(r.runs for r in results),
        "targets": [asdict(r) for r in results],
        "passed": not failed,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for result in failed:
        logger.error(
            "%s failed (exit %d); its log: %s%s",
            result.name,
            result.exit_code,
            args.out / f"{result.name}.log",
            "; the inputs are now regression tests: fix the code, then run the tests"
            if result.findings
            else "",
        )
    logger.info("%d inputs in all; %s", summary["total_runs"], "passed" if not failed else "FAILED")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
