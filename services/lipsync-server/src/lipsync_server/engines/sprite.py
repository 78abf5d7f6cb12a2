"""The `sprite` engine: a weight-free mouth, drawn from audio features into the face box.

Features per frame are `[openness, roundness]` (see `lipsync_server.audio`). The mouth is a set of
antialiased polygons (upper lip, lower lip, the dark opening, a hint of upper teeth and tongue) drawn
into a copy of the frame's face box, so the cost grows with the mouth, not the frame.

Manifest options (the package's `"sprite"` block), all optional:

- `mouth_center`: `[x, y]`, the lip line's centre relative to the face box (default `[0.5, 0.75]`);
- `mouth_width`: width of a closed mouth relative to the box width (default `0.36`);
- `smile`: how far the mouth's corners are lifted, relative to its width (default `0`, in ±0.2);
- `lip_color`, `inner_color`, `teeth_color`: RGB `[r, g, b]` in 0…255.

A closed mouth (openness 0) is always drawn at `mouth_width` whatever the roundness, and an open one is
never narrower, so a closed mouth painted into the base frames is covered by every mouth drawn over it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from lipsync_server.audio import NEUTRAL_ROUNDNESS, features_at, frame_features, read_wav
from lipsync_server.engines.base import FrameJob, FrameMap, serial_map
from lipsync_server.errors import InvalidArgumentError, PackageError
from lipsync_server.packages.model import ModelPackage

logger = logging.getLogger(__name__)

FEATURE_COUNT = 2
NEUTRAL_FEATURES = np.array([0.0, NEUTRAL_ROUNDNESS], dtype=np.float32)

Rgb = tuple[int, int, int]
Bgr = tuple[float, float, float]

# cv2 draws with 4 fractional bits, so the lips move smoothly by fractions of a pixel.
_SHIFT = 4
_SCALE = float(1 << _SHIFT)
_POINTS = 17
_U = np.linspace(-1.0, 1.0, _POINTS)
# Vertical profiles across the mouth (u = -1 … 1 from corner to corner); every curve of the mouth is a
# linear combination of them, so one matrix product gives the whole mouth.
_PROFILES = np.stack(
    [
        np.ones(_POINTS),
        np.sqrt(np.clip(1.0 - (_U / 0.92) ** 2, 0.0, 1.0)),  # the opening stops short of the corners
        (1.0 - _U**2) ** 0.7 * (1.0 - 0.3 * np.exp(-((_U / 0.14) ** 2))),  # upper lip, with a cupid's bow
        (1.0 - _U**2) ** 0.6,  # lower lip
        np.sqrt(np.clip(1.0 - (_U / 0.6) ** 2, 0.0, 1.0)),  # tongue
        _U**2,  # corners lifted by a smile
    ]
)
# Rows of the curve matrix.
_INNER_TOP, _INNER_BOTTOM, _OUTER_TOP, _OUTER_BOTTOM, _TONGUE_TOP, _TEETH_BOTTOM = range(6)


def _band(top: int, bottom: int, columns: NDArray[np.bool_] | None = None) -> NDArray[np.intp]:
    """Indexes into the flattened [curve, point] grid of the outline between two curves."""
    points = np.arange(_POINTS) if columns is None else np.flatnonzero(columns)
    return np.concatenate([top * _POINTS + points, bottom * _POINTS + points[::-1]])


_UPPER_LIP = _band(_OUTER_TOP, _INNER_TOP)
_LOWER_LIP = _band(_INNER_BOTTOM, _OUTER_BOTTOM)
_OPENING = _band(_INNER_TOP, _INNER_BOTTOM)
_TEETH = _band(_INNER_TOP, _TEETH_BOTTOM, np.abs(_U) <= 0.55)
_TONGUE = _band(_TONGUE_TOP, _INNER_BOTTOM, np.abs(_U) <= 0.6)
_SEAM = np.arange(_POINTS) + _INNER_TOP * _POINTS


@dataclass(frozen=True)
class SpriteStyle:
    """Where the mouth sits in the face box and its colours (RGB), from the manifest's sprite options."""

    mouth_center: tuple[float, float] = (0.5, 0.75)
    mouth_width: float = 0.36
    smile: float = 0.0
    lip_color: Rgb = (190, 92, 98)
    inner_color: Rgb = (74, 22, 34)
    teeth_color: Rgb = (246, 242, 234)

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> SpriteStyle:
        """Parse the manifest's sprite options; raises ValueError naming the bad option. Keys it does not
        know are ignored (see `unknown_options`)."""
        style = cls()
        center = options.get("mouth_center", style.mouth_center)
        pair = _numbers(center, "mouth_center", 2)
        if not all(0.0 <= v <= 1.0 for v in pair):
            raise ValueError(f"sprite option mouth_center must lie in [0, 1], got {center!r}")
        return cls(
            mouth_center=(pair[0], pair[1]),
            mouth_width=_number(options, "mouth_width", style.mouth_width, 0.05, 1.0),
            smile=_number(options, "smile", style.smile, -0.2, 0.2),
            lip_color=_color(options, "lip_color", style.lip_color),
            inner_color=_color(options, "inner_color", style.inner_color),
            teeth_color=_color(options, "teeth_color", style.teeth_color),
        )

    @classmethod
    def unknown_options(cls, options: Mapping[str, object]) -> list[str]:
        """The keys of `options` that are no sprite option (a typo, or a newer writer's), sorted."""
        return sorted(set(options) - {f.name for f in dataclasses.fields(cls)})

    def options(self) -> dict[str, object]:
        """The manifest's sprite options block that parses back to this style."""
        return {
            "mouth_center": list(self.mouth_center),
            "mouth_width": self.mouth_width,
            "smile": self.smile,
            "lip_color": list(self.lip_color),
            "inner_color": list(self.inner_color),
            "teeth_color": list(self.teeth_color),
        }


@dataclass(frozen=True)
class _Palette:
    """A style's colours as cv2 wants them (BGR), with the shades derived from them."""

    upper_lip: Bgr
    lower_lip: Bgr
    inner: Bgr
    teeth: Bgr
    tongue: Bgr

    @classmethod
    def of(cls, style: SpriteStyle) -> _Palette:
        lip = _bgr(style.lip_color)
        inner = _bgr(style.inner_color)
        return cls(
            upper_lip=_mix(lip, (0.0, 0.0, 0.0), 0.15),
            lower_lip=lip,
            inner=inner,
            teeth=_bgr(style.teeth_color),
            tongue=_mix(lip, inner, 0.35),
        )


def draw_mouth(region: NDArray[np.uint8], openness: float, roundness: float, style: SpriteStyle) -> None:
    """Draw a mouth into `region` (a face box, H×W×3 BGR, written in place).

    Opening height grows with `openness`; an open mouth is wider when `roundness` is low ("ee") and
    taller when it is high ("oo"). Values outside [0, 1] (NaN included) are clamped.
    """
    _draw(region, _unit(openness), _unit(roundness), style, _Palette.of(style))


def _draw(
    region: NDArray[np.uint8], openness: float, roundness: float, style: SpriteStyle, palette: _Palette
) -> None:
    height, width = region.shape[:2]
    mouth = style.mouth_width * width
    cx = style.mouth_center[0] * width
    cy = style.mouth_center[1] * height
    # Roundness only shapes an opening mouth, so every closed mouth is the same closed mouth.
    shaping = min(1.0, 2.0 * openness)
    half = 0.5 * mouth * (1.0 + 0.3 * (1.0 - roundness) * shaping)
    opening = openness * mouth * (0.3 + 0.25 * roundness)
    rise, drop = 0.35 * opening, 0.65 * opening
    teeth = min(0.3 * opening, 0.08 * mouth)
    lift = -style.smile * mouth

    weights = np.array(
        [
            [cy, -rise, 0.0, 0.0, 0.0, lift],  # inner edge of the upper lip
            [cy, drop, 0.0, 0.0, 0.0, lift],  # inner edge of the lower lip
            [cy, -rise, -0.075 * mouth, 0.0, 0.0, lift],  # outer edge of the upper lip
            [cy, drop, 0.0, 0.11 * mouth, 0.0, lift],  # outer edge of the lower lip
            [cy, drop, 0.0, 0.0, -0.5 * drop, lift],  # top of the tongue
            [cy + teeth, -rise, 0.0, 0.0, 0.0, lift],  # bottom of the upper teeth, clipped below
        ]
    )
    grid = np.empty((6, _POINTS, 2))
    grid[:, :, 0] = cx + half * _U
    curves = grid[:, :, 1]
    np.matmul(weights, _PROFILES, out=curves)
    np.minimum(curves[_TEETH_BOTTOM], curves[_INNER_BOTTOM], out=curves[_TEETH_BOTTOM])
    points = np.rint(grid.reshape(-1, 2) * _SCALE).astype(np.int32)

    if opening >= 0.5:
        _fill(region, points[_OPENING], palette.inner)
        if opening >= 4.0:
            _fill(region, points[_TONGUE], palette.tongue)
        if opening >= 2.0:
            _fill(region, points[_TEETH], palette.teeth)
    _fill(region, points[_UPPER_LIP], palette.upper_lip)
    _fill(region, points[_LOWER_LIP], palette.lower_lip)
    if opening < 1.5:
        cv2.polylines(region, [points[_SEAM]], False, palette.inner, 1, cv2.LINE_AA, _SHIFT)


def _fill(region: NDArray[np.uint8], outline: NDArray[np.int32], color: Bgr) -> None:
    cv2.fillPoly(region, [outline], color, cv2.LINE_AA, _SHIFT)


class SpriteEngine:
    """Draws a mouth shaped by `[openness, roundness]` features into the face box of the base frame."""

    name = "sprite"
    # Drawing costs the same per frame alone or together: never wait to fill a batch.
    batches_frames = False

    def __init__(self) -> None:
        # Parsed styles of prepared packages; weak so an unloaded package is not kept alive.
        self._styles: weakref.WeakKeyDictionary[ModelPackage, tuple[SpriteStyle, _Palette]] = (
            weakref.WeakKeyDictionary()
        )

    def prepare(self, package: ModelPackage) -> ModelPackage:
        """Check the sprite options and features; compute features from the package's audio when it has
        no features. A package with neither gets neutral features (mouth closed on every frame)."""
        try:
            SpriteStyle.from_options(package.engine_options)
        except ValueError as exc:
            raise PackageError(package.root / "manifest.json", str(exc)) from exc
        # Like unknown manifest keys: not an error, but a typo should not pass silently.
        for key in SpriteStyle.unknown_options(package.engine_options):
            logger.warning("%s: ignoring unknown sprite option %r", package.name, key)
        features = package.audio_features
        if features is not None:
            if features.shape != (package.frame_count, FEATURE_COUNT):
                raise PackageError(
                    package.root,
                    f"audio features have shape {list(features.shape)}; the sprite engine needs "
                    f"[{package.frame_count}, {FEATURE_COUNT}] ([openness, roundness] per frame)",
                )
            if not np.isfinite(features).all():
                raise PackageError(package.root, "audio features contain NaN or infinite values")
            return package
        if package.audio_path is not None:
            try:
                pcm, rate = read_wav(package.audio_path)
            except (InvalidArgumentError, OSError) as exc:
                raise PackageError(package.audio_path, str(exc)) from exc
            features = frame_features(pcm, rate, package.fps, package.frame_count)
            logger.info("%s: sprite features computed from %s", package.name, package.audio_path.name)
        else:
            features = np.tile(NEUTRAL_FEATURES, (package.frame_count, 1))
            logger.info("%s: no audio or features; the sprite mouth stays closed", package.name)
        return dataclasses.replace(package, audio_features=features)

    def warm_up(self, package: ModelPackage) -> None:
        """Render frame 0 once."""
        self.infer(package, [FrameJob(0)])

    def features_from_audio(
        self, package: ModelPackage, pcm: NDArray[np.int16], sample_rate: int, center_sample: int
    ) -> NDArray[np.float32]:
        """`[openness, roundness]` of the frame whose instant is `center_sample` of `pcm`."""
        return features_at(pcm, sample_rate, center_sample, package.fps)

    def speech_stream(self, package: ModelPackage) -> None:
        """Each frame's own 1/fps of audio shapes its mouth: no stream needed."""
        return None

    def device(self, package: ModelPackage) -> str:
        """Sprites are composited with numpy and OpenCV."""
        return "cpu"

    def infer(
        self, package: ModelPackage, jobs: Sequence[FrameJob], map_frames: FrameMap = serial_map
    ) -> list[NDArray[np.uint8]]:
        """Each job's face box of its base frame (a copy) with the mouth of its features drawn in; frame
        after frame, whatever `map_frames`: drawing costs less than handing a frame to another thread."""
        style, palette = self._style(package)
        own = package.audio_features
        regions: list[NDArray[np.uint8]] = []
        for job in jobs:
            features = job.features
            if features is None:
                features = own[job.frame_id] if own is not None else NEUTRAL_FEATURES
            elif features.shape != (FEATURE_COUNT,):
                raise InvalidArgumentError(
                    f"sprite features must be [openness, roundness], got shape {list(features.shape)}"
                )
            x1, y1, x2, y2 = package.boxes[job.frame_id].tolist()
            region = package.frames.frame(job.frame_id)[y1:y2, x1:x2].copy()
            if region.size:
                _draw(region, _unit(float(features[0])), _unit(float(features[1])), style, palette)
            regions.append(region)
        return regions

    def _style(self, package: ModelPackage) -> tuple[SpriteStyle, _Palette]:
        cached = self._styles.get(package)
        if cached is None:
            style = SpriteStyle.from_options(package.engine_options)
            cached = self._styles[package] = (style, _Palette.of(style))
        return cached


def _unit(value: float) -> float:
    """`value` clamped to [0, 1], NaN read as 0."""
    if value >= 1.0:
        return 1.0
    return value if value > 0.0 else 0.0


def _numbers(value: object, name: str, count: int) -> list[float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != count
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise ValueError(f"sprite option {name} must be a list of {count} numbers, got {value!r}")
    return [float(v) for v in value]


def _number(options: Mapping[str, object], name: str, default: float, low: float, high: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"sprite option {name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _color(options: Mapping[str, object], name: str, default: Rgb) -> Rgb:
    value = options.get(name, default)
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        raise ValueError(
            f"sprite option {name} must be an RGB list of three integers in 0..255, got {value!r}"
        )
    return (value[0], value[1], value[2])


def _bgr(rgb: Rgb) -> Bgr:
    return (float(rgb[2]), float(rgb[1]), float(rgb[0]))


def _mix(a: Bgr, b: Bgr, weight: float) -> Bgr:
    """`a` moved `weight` of the way towards `b`."""
    return (
        a[0] + (b[0] - a[0]) * weight,
        a[1] + (b[1] - a[1]) * weight,
        a[2] + (b[2] - a[2]) * weight,
    )
