"""Coverage-guided fuzzing (atheris, libFuzzer) of the server's request validation, over gRPC.

    python services/lipsync-server/fuzz/fuzz_requests.py [CORPUS_DIR ...] [libFuzzer flags]

Every RPC of `lipsync.v1.LipSync` and of the seed-compatible service, against the real server running
in this process (request_targets.py says what is checked). `make fuzz` runs it for a share of its time
budget with the seed corpus in `corpus/requests/`; a crash is saved to `regressions/requests/` and
replayed by the server's tests.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import atheris  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Instrument the server's own code, the servicers and their validation above all.
with atheris.instrument_imports(include=["lipsync_server", "request_targets"]):
    from request_targets import RequestFuzzer


def main() -> None:
    # Refused inputs are the point: their warnings would drown libFuzzer's own output.
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="fuzz-requests-") as workdir:
        fuzzer = RequestFuzzer(Path(workdir))
        atheris.Setup(sys.argv, fuzzer.check)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
