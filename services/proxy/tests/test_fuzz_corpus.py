"""The fuzzers' checks over their seed corpus and every crash they ever found (services/proxy/fuzz/).

`make fuzz` saves each input that fails a check to `fuzz/regressions/TARGET/`; from then on it is a
test case here, so a fixed crash stays fixed without atheris installed.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

import pytest

from lipsync_protocol.errors import ProtocolError

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"


def _load_targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protocol_targets", FUZZ / "protocol_targets.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CHECKS = _load_targets()
TARGETS: Mapping[str, Callable[[bytes], None]] = CHECKS.TARGETS
CASES = sorted(
    path for kind in ("corpus", "regressions") for path in (FUZZ / kind).glob("*/*") if path.is_file()
)


def test_every_fuzz_input_directory_names_a_target() -> None:
    directories = {path.parent.name for path in CASES}

    assert directories <= set(TARGETS)
    assert {path.name for path in (FUZZ / "corpus").iterdir()} == set(TARGETS)


@pytest.mark.parametrize(
    "path", CASES, ids=lambda path: f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
)
def test_a_fuzz_input_passes_its_targets_checks(path: Path) -> None:
    TARGETS[path.parent.name](path.read_bytes())


@pytest.mark.parametrize(
    ("target", "data"),
    [
        # A JSON error's id is the client's (any 64-bit integer or a string), never a v2 request id.
        ("json", b'{"type":"inference","id":-17,"model_name":"sanders"}'),
        ("json", b'{"id":"\\ud800"}'),
        ("v2_client", bytes.fromhex("02 01 0000 07000000") + b"\x00" * 12),
        ("v1", b"\x01"),
    ],
)
def test_refusals_are_answerable_in_every_protocol(target: str, data: bytes) -> None:
    TARGETS[target](data)


def test_a_refusal_too_long_for_a_v2_error_fails_the_check() -> None:
    with pytest.raises(AssertionError):
        CHECKS.check_error(ProtocolError("x" * 1025))


def test_a_binary_refusal_naming_a_json_id_fails_the_check() -> None:
    with pytest.raises(AssertionError):
        CHECKS.check_error(ProtocolError("bad", request_id="a1"))
