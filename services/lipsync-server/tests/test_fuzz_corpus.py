"""The fuzzers' checks over their seed corpus and every crash they ever found (lipsync-server/fuzz/).

`make fuzz` saves each input that fails a check to `fuzz/regressions/TARGET/`; from then on it is a
test case here, so a fixed crash stays fixed without atheris installed. The request target runs the
real server in this process, as the fuzzer does.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
TARGETS = ("package", "requests")
CASES = sorted(
    path for kind in ("corpus", "regressions") for path in (FUZZ / kind).glob("*/*") if path.is_file()
)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def checks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Callable[[bytes], None]]]:
    packages = _load("package_targets").PackageFuzzer(tmp_path_factory.mktemp("fuzz-package"))
    requests = _load("request_targets").RequestFuzzer(tmp_path_factory.mktemp("fuzz-requests"))
    try:
        yield {"package": packages.check, "requests": requests.check}
    finally:
        requests.close()
        packages.close()


def test_every_fuzz_input_directory_names_a_target() -> None:
    assert {path.parent.name for path in CASES} <= set(TARGETS)
    assert {path.name for path in (FUZZ / "corpus").iterdir()} == set(TARGETS)


def test_the_request_corpus_has_a_valid_request_for_every_rpc() -> None:
    seeds = _load("request_targets").seed_inputs()

    assert {f"{name.replace('/', '.')}" for name in seeds} == {
        p.name for p in (FUZZ / "corpus" / "requests").iterdir()
    }
    for name, data in seeds.items():
        assert (FUZZ / "corpus" / "requests" / name.replace("/", ".")).read_bytes() == data


@pytest.mark.parametrize(
    "path", CASES, ids=lambda path: f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
)
def test_a_fuzz_input_passes_its_targets_checks(
    checks: dict[str, Callable[[bytes], None]], path: Path
) -> None:
    checks[path.parent.name](path.read_bytes())
