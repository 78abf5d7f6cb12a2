"""`lipsync-server make-package`: a native `lipsync-package/1` package from a user's own footage.

Inputs: the video of the avatar, its crop boxes (a JSON box list, SyncTalk_2D's `crop_rectangles.json`,
or a directory of SyncTalk_2D `.lms` landmark files), optionally the audio that drives its mouth, and
the trained models: a UNet-328 and optionally an AVE audio encoder, as ONNX or as PyTorch checkpoints
(converted on the way, which needs the `convert` extra). With no UNet the package is for the weight-free
`sprite` engine.

The video is copied as it is, never re-encoded; it must decode with OpenCV's FFmpeg, and its frame count
must equal the number of boxes. The audio must be a 16 kHz PCM16 WAV file; several channels are mixed
down to mono. The package is written into a temporary directory beside the target, moved into place and
loaded as the server would load it; a run that fails at any step leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from lipsync_server.audio import write_wav
from lipsync_server.errors import PackageError
from lipsync_server.packages.crops import (
    boxes_from_landmarks,
    check_boxes_inside,
    landmark_files,
    parse_crop_rectangles,
)
from lipsync_server.packages.loader import describe, load_package
from lipsync_server.packages.model import NATIVE_FORMAT, ModelPackage
from lipsync_server.packages.native import AUDIO_SAMPLE_RATE, check_name, is_dir, read_json
from lipsync_server.packages.video import video_fps

# Suffixes of PyTorch checkpoints, converted to ONNX on the way in.
TORCH_SUFFIXES = frozenset({".pth", ".pt", ".tar"})
EXIT_FAILED = 1


@dataclass(frozen=True)
class VideoFacts:
    frame_count: int
    width: int
    height: int
    fps: float | None


def probe_video(path: Path) -> VideoFacts:
    """Frame count and size of video `path`, counted by decoding every frame, and its declared fps."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise PackageError(path, "cannot be opened as a video (FFmpeg cannot decode it)")
        count, size = 0, None
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                raise PackageError(
                    path, f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, unlike frame 0"
                )
            count += 1
    finally:
        capture.release()
    if size is None:
        raise PackageError(path, "holds no decodable video frames")
    return VideoFacts(count, int(size[1]), int(size[0]), video_fps(path))


def read_boxes(path: Path) -> NDArray[np.int32]:
    """Crop boxes from a JSON box list or `crop_rectangles.json`, or from a directory of `.lms` files."""
    if is_dir(path):
        return boxes_from_landmarks(landmark_files(path))
    return parse_crop_rectangles(read_json(path), path)


def read_audio(path: Path) -> NDArray[np.int16]:
    """The samples of 16 kHz PCM16 WAV file `path`, channels mixed down to mono."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise PackageError(path, f"is not a PCM WAV file: {exc}") from exc
    except OSError as exc:
        raise PackageError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if width != 2 or rate != AUDIO_SAMPLE_RATE:
        raise PackageError(
            path,
            f"is {8 * width}-bit at {rate} Hz; convert it first: "
            f"ffmpeg -i {path.name} -ac 1 -ar {AUDIO_SAMPLE_RATE} -c:a pcm_s16le audio.wav",
        )
    samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels)
    if not samples.shape[0]:
        raise PackageError(path, "holds no audio samples")
    mono = samples[:, 0] if channels == 1 else np.rint(samples.mean(axis=1))
    return mono.astype(np.int16)


def _model_file(source: Path, target: Path, kind: str) -> None:
    """Copy ONNX model `source` to `target`, or convert it there when it is a PyTorch checkpoint."""
    if source.suffix.lower() in TORCH_SUFFIXES:
        from lipsync_server.convert_torch import convert

        convert(source, target, kind=kind)
        return
    if not source.is_file():
        raise PackageError(source, "file is missing")
    shutil.copyfile(source, target)


def make_package(
    output: Path,
    *,
    video: Path,
    boxes: Path,
    name: str | None = None,
    audio: Path | None = None,
    unet: Path | None = None,
    audio_encoder: Path | None = None,
    fps: float | None = None,
) -> ModelPackage:
    """Write the package into directory `output` (which must not exist yet) and return it, loaded.
    Raises PackageError naming the input file and the problem."""
    from lipsync_server.convert_torch import AUDIO_ENCODER, UNET

    if output.exists():
        raise PackageError(output, "already exists; choose a new directory")
    package_name = check_name(name or output.name, output, "package name")
    if audio_encoder is not None and unet is None:
        raise PackageError(audio_encoder, "an audio encoder belongs to a UNet model: pass --unet too")
    facts = probe_video(video)
    rate = fps or facts.fps
    if rate is None:
        raise PackageError(video, "declares no frame rate; pass --fps")
    frame_boxes = read_boxes(boxes)
    if len(frame_boxes) != facts.frame_count:
        raise PackageError(
            boxes, f"holds {len(frame_boxes)} boxes for the {facts.frame_count} frames of {video.name}"
        )
    check_boxes_inside(frame_boxes, facts.width, facts.height, boxes)

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        frames_file = "frames" + video.suffix.lower()
        shutil.copyfile(video, staging / frames_file)
        (staging / "boxes.json").write_text(json.dumps(frame_boxes.tolist()))
        manifest: dict[str, object] = {
            "format": NATIVE_FORMAT,
            "name": package_name,
            "engine": "sprite" if unet is None else "unet328",
            "fps": rate,
            "frame_count": facts.frame_count,
            "width": facts.width,
            "height": facts.height,
            "frames": frames_file,
            "boxes": "boxes.json",
        }
        if audio is not None:
            write_wav(staging / "audio.wav", read_audio(audio), AUDIO_SAMPLE_RATE)
            manifest["audio"] = "audio.wav"
        models = {}
        if unet is not None:
            _model_file(unet, staging / "unet.onnx", UNET)
            models["unet"] = "unet.onnx"
        if audio_encoder is not None:
            _model_file(audio_encoder, staging / "audio_encoder.onnx", AUDIO_ENCODER)
            models["audio_encoder"] = "audio_encoder.onnx"
        if models:
            manifest["models"] = models
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        staging.rename(output)
        staging = output
        return load_package(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def main(argv: Sequence[str]) -> int:
    """`lipsync-server make-package OUTPUT --video V --boxes B [--audio A] [--unet U] ...`."""
    parser = argparse.ArgumentParser(
        prog="lipsync-server make-package",
        description="Build a native model package from a video, its crop boxes, audio and trained models.",
    )
    parser.add_argument("output", type=Path, help="package directory to create")
    parser.add_argument("--video", type=Path, required=True, help="the avatar's video (copied as is)")
    parser.add_argument(
        "--boxes",
        type=Path,
        required=True,
        help="face boxes: a JSON list, a crop_rectangles.json, or a directory of .lms landmarks",
    )
    parser.add_argument("--audio", type=Path, help="16 kHz PCM16 WAV that drives the mouth")
    parser.add_argument("--unet", type=Path, help="UNet-328 model (.onnx, or a .pth checkpoint to convert)")
    parser.add_argument("--audio-encoder", type=Path, help="AVE audio encoder (.onnx or .pth)")
    parser.add_argument("--name", help="model name (default: the directory's name)")
    parser.add_argument("--fps", type=float, help="frame rate, when the video declares none")
    args = parser.parse_args(argv)
    from lipsync_server.convert_torch import TorchMissingError

    try:
        package = make_package(
            args.output,
            video=args.video,
            boxes=args.boxes,
            name=args.name,
            audio=args.audio,
            unet=args.unet,
            audio_encoder=args.audio_encoder,
            fps=args.fps,
        )
    except (PackageError, TorchMissingError) as error:
        print(f"lipsync-server make-package: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(describe(package))
    return 0
