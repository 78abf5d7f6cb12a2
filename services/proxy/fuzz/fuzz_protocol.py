"""Coverage-guided fuzzing (atheris, libFuzzer) of the proxy's protocol codecs.

    python services/proxy/fuzz/fuzz_protocol.py TARGET [CORPUS_DIR ...] [libFuzzer flags]

TARGET is one of `protocol_targets.TARGETS` (v1, v2_client, v2_server, json, http2); the checks are
there.
`make fuzz` runs every target for a share of its time budget (loadtests/fuzz.py) with the seed corpus
in `corpus/TARGET/`; a crash is saved to `regressions/TARGET/` and replayed by the proxy's tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Instrument the codecs (and the checks) so libFuzzer sees which branches an input reaches.
with atheris.instrument_imports(include=["lipsync_protocol", "lipsync_proxy.http2", "protocol_targets"]):
    from protocol_targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [corpus ...] [libFuzzer flags]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
