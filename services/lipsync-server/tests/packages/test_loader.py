"""Loading any package directory: layout detection, the summary, and fuzzed manifests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from package_factory import read_manifest, write_native_package, write_synctalk_package

from lipsync_server.errors import PackageError
from lipsync_server.packages.loader import describe, detect_layout, load_package
from lipsync_server.packages.model import NATIVE_FORMAT, SYNCTALK_FORMAT


def test_a_manifest_makes_a_native_package_even_beside_synctalk_files(tmp_path: Path) -> None:
    root = write_native_package(tmp_path / "pkg").root
    (root / "aud_ave.npy").write_bytes(b"")

    assert detect_layout(root) == NATIVE_FORMAT


@pytest.mark.parametrize("marker", ["package_info.json", "full_body_video.mp4", "aud_ave.npy"])
def test_any_seed_file_makes_a_synctalk_package(tmp_path: Path, marker: str) -> None:
    (tmp_path / marker).write_bytes(b"")

    assert detect_layout(tmp_path) == SYNCTALK_FORMAT


def test_a_directory_of_neither_layout_is_refused_saying_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "frames.mp4").write_bytes(b"")

    with pytest.raises(PackageError, match=r"is not a model package: it has no manifest\.json") as refused:
        load_package(tmp_path)

    assert refused.value.path == tmp_path.resolve()


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="does not exist"):
        load_package(tmp_path / "nowhere")


def test_a_file_is_not_a_package(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")

    with pytest.raises(PackageError, match="is not a directory"):
        load_package(tmp_path / "manifest.json")


def test_the_summary_of_a_native_package_names_every_fact(tmp_path: Path) -> None:
    root = write_native_package(tmp_path / "pkg", models={"unet": "model.onnx"}).root

    summary = describe(load_package(root))

    assert summary.splitlines() == [
        "name:        synthetic",
        "format:      lipsync-package/1",
        "engine:      sprite",
        f"directory:   {root.resolve()}",
        "frames:      12 at 25 fps",
        "duration:    0.48 s",
        "size:        160x120",
        "boxes:       40 px wide, 40 px high",
        "audio:       audio.wav",
        "features:    12 x 2 float32",
        "videos:      full_body",
        "model files: unet=model.onnx",
        "options:     mouth_center=[0.5, 0.75], mouth_width=0.36",
    ]


def test_the_summary_of_a_synctalk_package_lists_its_videos_and_checkpoint(tmp_path: Path) -> None:
    package = load_package(write_synctalk_package(tmp_path / "sanders", audio=False).root)
    lines = dict(line.split(":", 1) for line in describe(package).splitlines())

    assert lines["format"].strip() == "synctalk2d"
    assert lines["engine"].strip() == "unet328"
    assert lines["audio"].strip() == "none"
    assert lines["features"].strip() == "12 x 512 float32"
    assert lines["videos"].strip() == "full_body, crops_328, rois_320, model_inputs"
    assert lines["model files"].strip() == (
        "crops_328=crops_328_video.mp4, model_inputs=model_inputs_video.mp4, "
        "rois_320=rois_320_video.mp4, unet=checkpoint/model_best.onnx"
    )
    assert lines["options"].strip() == "none"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
MANIFEST_KEYS = "format name engine fps frame_count width height frames boxes audio features models sprite"
FIELDS = st.sampled_from(MANIFEST_KEYS.split())


@st.composite
def manifests(draw: st.DrawFn, valid: dict[str, object]) -> object:
    """Manifests from wholly random JSON to a valid one with a few fields replaced or removed."""
    if draw(st.integers(0, 4)) == 0:
        return draw(JSON_VALUES)
    manifest = dict(valid)
    for field in draw(st.lists(FIELDS, max_size=3)):
        if draw(st.booleans()):
            manifest.pop(field, None)
        else:
            manifest[field] = draw(
                JSON_VALUES | st.sampled_from(["../boxes.json", "/etc/passwd", "frames.mp4"])
            )
    return manifest


@pytest.fixture(scope="module")
def fuzzed_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = write_native_package(tmp_path_factory.mktemp("fuzz") / "pkg").root
    return root, read_manifest(root)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_manifest_loads_or_is_refused_with_a_package_error(
    fuzzed_package: tuple[Path, dict[str, object]], data: st.DataObject
) -> None:
    root, valid = fuzzed_package
    manifest = data.draw(manifests(valid))
    # allow_nan: Python's json writes NaN and Infinity, and reads them back, so the loader must cope.
    (root / "manifest.json").write_text(json.dumps(manifest, allow_nan=True))

    try:
        package = load_package(root)
    except PackageError:
        return
    assert package.frame_count == package.boxes.shape[0]
    assert math.isfinite(package.fps)
    assert package.fps > 0
