"""Loading a model package directory, whatever its layout, and summarising a loaded one."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lipsync_server.errors import PackageError
from lipsync_server.packages.model import NATIVE_FORMAT, SYNCTALK_FORMAT, ModelPackage
from lipsync_server.packages.native import MANIFEST, is_dir, is_file, load_native
from lipsync_server.packages.synctalk import MARKERS, is_synctalk, load_synctalk

logger = logging.getLogger(__name__)


def detect_layout(root: Path) -> str:
    """The layout of package directory `root`: NATIVE_FORMAT or SYNCTALK_FORMAT.

    `manifest.json` makes a native package; otherwise any SyncTalk_2D marker file makes a SyncTalk_2D one.
    """
    if is_file(root / MANIFEST):
        return NATIVE_FORMAT
    if is_synctalk(root):
        return SYNCTALK_FORMAT
    raise PackageError(
        root,
        f"is not a model package: it has no {MANIFEST} ({NATIVE_FORMAT}) "
        f"and none of the SyncTalk_2D files {', '.join(MARKERS)}",
    )


def load_package(path: Path, *, name: str | None = None) -> ModelPackage:
    """Validate and load the package in directory `path`, its frames decoded into memory.

    `name` replaces the name the package gives itself. Anything wrong with the package raises
    PackageError naming the file and the problem; whether the named engine can run the package is
    left to that engine's `prepare`.
    """
    started = time.monotonic()
    try:
        root = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise PackageError(path, f"cannot be resolved: {exc}") from exc
    if not is_dir(root):
        raise PackageError(root, "is not a directory" if is_file(root) else "does not exist")
    layout = detect_layout(root)
    package = load_native(root, name=name) if layout == NATIVE_FORMAT else load_synctalk(root, name=name)
    logger.info(
        "loaded model %r (%s, engine %s, %d frames of %dx%d) from %s in %.2f s",
        package.name,
        package.format,
        package.engine,
        package.frame_count,
        package.width,
        package.height,
        root,
        time.monotonic() - started,
    )
    return package


def describe(package: ModelPackage) -> str:
    """A human summary of `package`, one `label: value` line per fact, for `lipsync-server inspect`."""
    box_widths = package.boxes[:, 2] - package.boxes[:, 0]
    box_heights = package.boxes[:, 3] - package.boxes[:, 1]
    features = package.audio_features
    lines = [
        ("name", package.name),
        ("format", package.format),
        ("engine", package.engine),
        ("directory", str(package.root)),
        ("frames", f"{package.frame_count} at {package.fps:g} fps"),
        ("duration", f"{package.frame_count / package.fps:.2f} s"),
        ("size", f"{package.width}x{package.height}"),
        ("boxes", f"{_span(box_widths)} px wide, {_span(box_heights)} px high"),
        ("audio", _relative(package, package.audio_path) if package.audio_path is not None else "none"),
        (
            "features",
            f"{features.shape[0]} x {features.shape[1]} {features.dtype}" if features is not None else "none",
        ),
        ("videos", ", ".join(package.videos) or "none"),
        (
            "model files",
            ", ".join(
                f"{role}={_relative(package, path)}" for role, path in sorted(package.model_files.items())
            )
            or "none",
        ),
        (
            "options",
            ", ".join(
                f"{key}={json.dumps(value, default=str)}"
                for key, value in sorted(package.engine_options.items())
            )
            or "none",
        ),
    ]
    width = max(len(label) for label, _ in lines) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in lines)


def _span(values: NDArray[np.int32]) -> str:
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}-{high}"


def _relative(package: ModelPackage, path: Path) -> str:
    return str(path.relative_to(package.root)) if path.is_relative_to(package.root) else str(path)
