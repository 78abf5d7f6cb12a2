from __future__ import annotations

import numpy as np
from doubles import PaintEngineDouble, tiny_package

from lipsync_server.full_frames import spliced_frames
from lipsync_server.jpeg import decode_jpeg
from lipsync_server.jpeg_splice import encode_with_restarts, restart_interval_for
from lipsync_server.render import AudioInput, OutputMode, RenderRequest, render


def test_a_full_frame_has_the_engine_region_pasted_into_the_base_frame() -> None:
    package = tiny_package()
    (frame,) = render(PaintEngineDouble(), package, [RenderRequest(frame_id=2, jpeg_quality=100)])
    image = decode_jpeg(frame.image).astype(int)
    assert (frame.width, frame.height, frame.bounds) == (64, 48, (8, 8, 24, 24))
    assert abs(image[16, 16].mean() - 255) < 3, "inside the box: the engine's region"
    assert abs(image[40, 50].mean() - 20) < 3, "outside the box: base frame 2"
    assert package.frames.frame(2)[16, 16, 0] == 20, "the package's frame is never modified"


def test_face_crop_mode_returns_only_the_region() -> None:
    request = RenderRequest(frame_id=1, output_mode=OutputMode.FACE_CROP, jpeg_quality=100)
    (frame,) = render(PaintEngineDouble(), tiny_package(), [request])
    assert decode_jpeg(frame.image).shape == (16, 16, 3)
    assert (frame.width, frame.height) == (16, 16)


def test_audio_is_turned_into_features_for_the_engine() -> None:
    pcm = np.full(640, 3000, np.int16)
    audio = AudioInput(pcm, 16_000, 320)
    request = RenderRequest(frame_id=0, output_mode=OutputMode.FACE_CROP, jpeg_quality=100, audio=audio)
    (frame,) = render(PaintEngineDouble(), tiny_package(), [request])
    assert abs(decode_jpeg(frame.image).mean() - 230) < 3


def test_timings_cover_every_stage_and_the_batch_size() -> None:
    requests = [RenderRequest(frame_id=i) for i in range(3)]
    frames = render(PaintEngineDouble(), tiny_package(), requests)
    for frame in frames:
        t = frame.timings
        assert t.batch_size == 3
        assert min(t.audio_features_ms, t.inference_ms, t.composite_ms, t.encode_ms) >= 0
        assert t.total_ms > 0


def test_a_full_frame_is_the_splice_of_the_face_into_the_cached_base_frame() -> None:
    package = tiny_package(width=96, height=64)
    (frame,) = render(PaintEngineDouble(), package, [RenderRequest(frame_id=3, jpeg_quality=90)])
    composited = package.frames.frame(3).copy()
    composited[8:24, 8:24] = 255
    expected = encode_with_restarts(composited, 90, restart_interval_for(96))
    assert frame.image == expected, "byte for byte the whole composited frame, encoded with restarts"


def test_a_package_caches_spliced_frames_for_two_qualities_at_most() -> None:
    package = tiny_package()
    assert spliced_frames(package, 85) is spliced_frames(package, 85)
    assert spliced_frames(package, 90) is not None
    assert spliced_frames(package, 70) is None, "a third quality is encoded whole"
    (frame,) = render(PaintEngineDouble(), package, [RenderRequest(frame_id=1, jpeg_quality=70)])
    assert abs(decode_jpeg(frame.image).astype(int)[16, 16].mean() - 255) < 3
