from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from doubles import PaintEngineDouble, tiny_package

from lipsync_server.core import ServerCore, audio_input
from lipsync_server.errors import FailedPreconditionError, InvalidArgumentError, PermissionDeniedError
from lipsync_server.inference import InferenceRunner
from lipsync_server.metrics import ServerMetrics
from lipsync_server.registry import ModelEntry, ModelRegistry, ModelState
from lipsync_server.settings import Settings
from lipsync_server.speak import template_walk


def core_with(settings: Settings) -> ServerCore:
    def no_loader(path: Path, name: str | None) -> object:
        raise AssertionError("not loading in this test")

    return ServerCore(
        settings,
        ModelRegistry(),
        InferenceRunner(1, 4),
        ServerMetrics(),
        no_loader,
        {"paint": PaintEngineDouble()},
    )  # type: ignore[arg-type]


def test_an_audio_window_is_validated_and_centred_by_default() -> None:
    window = audio_input(np.arange(100, dtype="<i2").tobytes(), 0, None)
    assert (window.sample_rate, window.center_sample, len(window.pcm)) == (16_000, 50, 100)
    with pytest.raises(InvalidArgumentError, match="center_sample 100"):
        audio_input(bytes(200), 16_000, 100)
    with pytest.raises(InvalidArgumentError, match="empty"):
        audio_input(b"", 16_000, None)


@pytest.mark.parametrize("path", ["/etc", "..", "a/../../b", "a\\..\\b", ""])
def test_admin_paths_cannot_leave_the_models_root(tmp_path: Path, path: str) -> None:
    core = core_with(replace(Settings(), models_dir=tmp_path, admin=True))
    with pytest.raises(PermissionDeniedError):
        core.admin_path(path)


def test_admin_calls_are_refused_when_admin_is_off(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    core = core_with(replace(Settings(), models_dir=tmp_path))
    with pytest.raises(PermissionDeniedError, match="needs --admin"):
        core.admin_path("pkg")
    assert (
        core_with(replace(Settings(), models_dir=tmp_path, admin=True)).admin_path("pkg")
        == (tmp_path / "pkg").resolve()
    )


def test_the_template_walks_forward_then_back_at_the_ends() -> None:
    walk = template_walk(2, 4)
    assert [walk() for _ in range(9)] == [2, 3, 2, 1, 0, 1, 2, 3, 2]
    single = template_walk(0, 1)
    assert [single() for _ in range(3)] == [0, 0, 0]


async def test_audio_of_a_package_without_audio_is_a_failed_precondition() -> None:
    core = core_with(Settings())
    core.registry.set(ModelEntry("tiny", ModelState.READY, Path("t"), tiny_package(), PaintEngineDouble()))
    with pytest.raises(FailedPreconditionError, match="no audio"):
        await core.audio("tiny")


@pytest.mark.parametrize("path", ["pkg\x00/x", "a" * 300])
def test_an_admin_path_the_file_system_cannot_take_is_refused_cleanly(tmp_path: Path, path: str) -> None:
    # Both crashed LoadModel with an unexpected exception (UNKNOWN) until fuzzing found them.
    core = core_with(replace(Settings(), models_dir=tmp_path, admin=True))
    with pytest.raises((PermissionDeniedError, InvalidArgumentError)):
        core.admin_path(path)


def test_a_call_asking_for_more_frames_than_the_queue_holds_is_refused() -> None:
    core = core_with(replace(Settings(), max_queue=4))
    core.check_batch(4, "InferBatch")
    with pytest.raises(InvalidArgumentError, match=r"InferBatch asks for 5 frames; .* at most 4"):
        core.check_batch(5, "InferBatch")


def test_an_audio_window_may_be_24_khz_as_the_seeds_browser_captured_it() -> None:
    window = audio_input(bytes(2 * 960), 24_000, None)
    assert (window.sample_rate, window.center_sample) == (24_000, 480)
    with pytest.raises(InvalidArgumentError, match="44100"):
        audio_input(bytes(100), 44_100, None)
