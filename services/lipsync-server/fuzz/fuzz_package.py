"""Coverage-guided fuzzing (atheris, libFuzzer) of the model package loader.

    python services/lipsync-server/fuzz/fuzz_package.py [CORPUS_DIR ...] [libFuzzer flags]

Each input replaces one file of a small valid package (native or SyncTalk_2D layout) that the loader
parses itself; package_targets.py says what is checked. `make fuzz` runs it for a share of its time
budget with the seed corpus in `corpus/package/`; a crash is saved to `regressions/package/` and
replayed by the server's tests.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import atheris  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(
    include=["lipsync_server.packages", "lipsync_server.engines.sprite", "package_targets"]
):
    from package_targets import PackageFuzzer


def main() -> None:
    # Refused inputs are the point: their warnings would drown libFuzzer's own output.
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="fuzz-package-") as workdir:
        fuzzer = PackageFuzzer(Path(workdir))
        atheris.Setup(sys.argv, fuzzer.check)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
