"""What the model package fuzzer checks: any bytes in any file the loader parses give a package or a
PackageError, never another exception, and a package that loads is whole and stays inside its folder.

`PackageFuzzer` writes two small valid packages once (the native `lipsync-package/1` layout with PNG
frames, and the SyncTalk_2D layout with an mp4 video), then for each input puts the input's bytes in
one of the files the loader itself parses (the first byte picks which: manifest, boxes, features,
WAV, package_info.json, crop rectangles, a landmark file), loads the package with the real loader,
prepares and warms it with the real sprite engine where it is a sprite package, and restores the
file. Video and image decoding are OpenCV's and are not fuzzed here: the frames stay valid.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# package_factory (the tests' writer of synthetic packages) lives in the tests folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from package_factory import (  # type: ignore[import-not-found]
    write_native_package,
    write_synctalk_package,
)

from lipsync_server.engines.sprite import SpriteEngine
from lipsync_server.errors import PackageError
from lipsync_server.packages.loader import load_package
from lipsync_server.packages.model import ModelPackage
from lipsync_server.packages.native import SAFE_NAME

# Tiny packages: each input costs a load, so frames are few and small.
FRAMES, WIDTH, HEIGHT = 4, 48, 36


@dataclass(frozen=True)
class Slot:
    """One file an input may replace: in the `layout` package, at `relative`, with `hide` moved away
    so that the loader reads this file instead (crop rectangles win over landmarks)."""

    layout: str
    relative: str
    hide: tuple[str, ...] = ()


SLOTS: Sequence[Slot] = (
    Slot("native", "manifest.json"),
    Slot("native", "boxes.json"),
    Slot("native", "features.npy"),
    Slot("native", "audio.wav"),
    Slot("synctalk", "package_info.json"),
    Slot("synctalk", "cache/crop_rectangles.json"),
    Slot("synctalk", "landmarks/0.lms", hide=("cache/crop_rectangles.json",)),
    Slot("synctalk", "aud_ave.npy"),
    Slot("synctalk", "aud.wav"),
)


class PackageFuzzer:
    """The package loader under fuzzing, with its two template packages in `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.roots = {"native": workdir / "native", "synctalk": workdir / "synctalk"}
        write_native_package(
            self.roots["native"], frames="png", frame_count=FRAMES, width=WIDTH, height=HEIGHT
        )
        write_synctalk_package(
            self.roots["synctalk"],
            frame_count=FRAMES,
            width=WIDTH,
            height=HEIGHT,
            boxes_from="both",
            checkpoint=False,
            engine_videos=False,
        )
        self.engine = SpriteEngine()
        # The untouched bytes of every slot, to put back after each input.
        self._originals = {slot: (self.roots[slot.layout] / slot.relative).read_bytes() for slot in SLOTS}

    def check(self, data: bytes) -> None:
        """Load the package whose slot `data[0]` holds `data[1:]`; fail unless the outcome is sound."""
        if not data:
            return
        slot = SLOTS[data[0] % len(SLOTS)]
        root = self.roots[slot.layout]
        hidden = [(root / name, root / (name + ".hidden")) for name in slot.hide]
        for path, away in hidden:
            path.rename(away)
        (root / slot.relative).write_bytes(data[1:])
        try:
            package = self._load(root)
        finally:
            (root / slot.relative).write_bytes(self._originals[slot])
            for path, away in hidden:
                away.rename(path)
        if package is not None:
            check_package(package, root.resolve())

    def _load(self, root: Path) -> ModelPackage | None:
        try:
            package = load_package(root)
            if package.engine == "sprite":
                package = self.engine.prepare(package)
                self.engine.warm_up(package)
        except PackageError as error:
            refusal = str(error)
        else:
            return package
        assert refusal, "a PackageError must say what is wrong"
        return None

    def close(self) -> None:
        for root in self.roots.values():
            shutil.rmtree(root, ignore_errors=True)


def check_package(package: ModelPackage, root: Path) -> None:
    """A loaded package is consistent and names no file outside its folder."""
    count = package.frame_count
    assert count >= 1, count
    assert SAFE_NAME.fullmatch(package.name), package.name
    assert math.isfinite(package.fps), package.fps
    assert package.fps > 0, package.fps
    assert package.boxes.shape == (count, 4), package.boxes.shape
    x1, y1, x2, y2 = package.boxes.T
    assert bool(np.all((x1 >= 0) & (y1 >= 0) & (x1 < x2) & (y1 < y2))), package.boxes
    assert bool(np.all((x2 <= package.width) & (y2 <= package.height))), package.boxes
    features = package.audio_features
    if features is not None:
        assert features.shape[0] == count, features.shape
        assert bool(np.isfinite(features).all()), "features must be finite"
    for path in (package.audio_path, *package.model_files.values()):
        assert path is None or path.resolve().is_relative_to(root), path
