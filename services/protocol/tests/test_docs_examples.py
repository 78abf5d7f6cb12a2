"""Every worked example in docs/protocol.md, checked against the codecs in both directions."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from lipsync_protocol import json_messages as jm
from lipsync_protocol import v1, v2
from lipsync_protocol.fields import Bounds, OutputMode, Timings

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
_EXAMPLE = re.compile(r"<!-- example: ([a-z0-9-]+) -->\n```(hex|json)\n(.*?)```", re.DOTALL)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PCM = bytes.fromhex("0000 e803 d007 e803")
JPEG = bytes.fromhex("ffd8ffd9")
BOUNDS = Bounds(540, 180, 720, 360)
TIMINGS = Timings(0.5, 1.0, 9.5, 1.25, 3.0, 15.25, 4)
CROP_WINDOW = Bounds(528, 168, 720, 376)
H264_START = bytes.fromhex("00000001 6742")


def _examples() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, kind, body in _EXAMPLE.findall(DOC.read_text(encoding="utf-8")):
        assert name not in found, f"example {name} appears twice"
        if kind == "hex":
            found[name] = "".join(line.split("#", 1)[0] for line in body.splitlines())
        else:
            found[name] = body.strip()
    return found


EXAMPLES = _examples()


def _client(message: v2.ClientMessage) -> Callable[[str], None]:
    def check(text: str) -> None:
        data = bytes.fromhex(text)
        assert v2.encode_client(message) == data
        assert v2.decode_client(data) == message

    return check


def _server(message: v2.ServerMessage, encoded: bytes) -> Callable[[str], None]:
    def check(text: str) -> None:
        data = bytes.fromhex(text)
        assert encoded == data
        assert v2.decode_server(data) == message

    return check


def _request(expected: jm.JsonRequest) -> Callable[[str], None]:
    def check(text: str) -> None:
        assert jm.parse(text) == expected

    return check


def _reply(built: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        assert built == text

    return check


def _v1_request(text: str) -> None:
    data = bytes.fromhex(text)
    assert v1.encode_request(v1.FrameRequest("sanders", 50)) == data
    assert v1.decode_request(data) == v1.FrameRequest("sanders", 50)


def _v1_code_request(text: str) -> None:
    data = bytes.fromhex(text)
    request = v1.CropRequest("sanders", 50, b"\0\0")
    assert v1.encode_request(request) == data
    assert v1.decode_request(data) == request


def _v1_code_reply(text: str) -> None:
    data = bytes.fromhex(text)
    assert v1.encode_crop_reply(50, 16.2, JPEG, (540.0, 180.0, 720.0, 360.0)) == data
    assert v1.decode_crop_reply(data) == v1.CropReply(50, 16, JPEG, (540.0, 180.0, 720.0, 360.0))


def _v1_video_frame(text: str) -> None:
    data = bytes.fromhex(text)
    assert v1.encode_video_frame(0, "full_body", JPEG) == data
    assert v1.decode_video_frame(data) == v1.VideoFrame(0, "full_body", JPEG)


CHECKS: dict[str, Callable[[str], None]] = {
    "v1-request": _v1_request,
    "v1-code-request": _v1_code_request,
    "v1-code-reply": _v1_code_reply,
    "v1-video-frame": _v1_video_frame,
    "json-switch-to-binary": _request(jm.BinaryProbe(5, switch=True)),
    "json-protocol-ack": _reply(jm.protocol_ack(5)),
    "v1-error": _reply(
        jm.error_reply(
            "NOT_FOUND", "model 'bob' not found; available models: sanders", model_name="bob", frame_id=50
        )
    ),
    "json-error": _reply(jm.error_reply("INVALID_ARGUMENT", "message is not valid JSON")),
    "json-inference-request": _request(jm.InferenceRequest("a1", "sanders", 50)),
    "json-inference-reply": _reply(
        jm.inference_reply("a1", 50, "sanders", 17.8, None, BOUNDS, TIMINGS, OutputMode.FULL_FRAME, 98432)
    ),
    "json-inference-image-request": _request(
        jm.InferenceRequest("a2", "sanders", 50, include_image=True, output_mode=OutputMode.FACE_CROP)
    ),
    "json-inference-image-reply": _reply(
        jm.inference_reply("a2", 50, "sanders", 16.2, JPEG, BOUNDS, TIMINGS, OutputMode.FACE_CROP, len(JPEG))
    ),
    "json-inference-error": _reply(
        jm.inference_error(
            "a3", "sanders", 600, "OUT_OF_RANGE", "frame_id 600 is outside [0, 523) for model 'sanders'"
        )
    ),
    "json-list-models-request": _request(jm.ListModelsRequest(1)),
    "json-model-list": _reply(
        jm.model_list_reply(
            1,
            [
                {
                    "name": "sanders",
                    "frame_count": 523,
                    "fps": 25.0,
                    "width": 1280,
                    "height": 720,
                    "engine": "unet328",
                }
            ],
        )
    ),
    "json-get-metadata-request": _request(jm.GetMetadataRequest(2, "sanders")),
    "json-metadata": _reply(
        jm.metadata_reply(
            2,
            "sanders",
            523,
            25.0,
            1280,
            720,
            engine="unet328",
            has_audio=True,
            audio_duration_s=20.92,
            success=True,
            available_videos=["full_body"],
            audio_path="aud.wav",
            bounds=[540, 180, 720, 360],
        )
    ),
    "json-get-video-frame-request": _request(jm.GetVideoFrameRequest(3, "sanders", 0)),
    "json-video-frame": _reply(jm.video_frame_reply(3, "sanders", 0, JPEG, 1280, 720)),
    "json-get-audio-request": _request(jm.GetAudioRequest(4, "sanders")),
    "json-audio": _reply(jm.audio_reply(4, "sanders", b"RIFF", 16000, 20.92)),
    "json-ping": _request(jm.PingRequest("p")),
    "json-pong": _reply(jm.pong("p")),
    "v2-infer": _client(v2.InferRequest(1, "sanders", 50)),
    "v2-infer-audio": _client(
        v2.InferRequest(2, "sanders", 50, OutputMode.FACE_CROP, 90, v2.AudioWindow(PCM, 2), TRACEPARENT)
    ),
    "v2-frame": _server(
        v2.FrameReply(2, 50, OutputMode.FACE_CROP, 180, 180, BOUNDS, TIMINGS, JPEG),
        v2.encode_frame(2, 50, OutputMode.FACE_CROP, BOUNDS, 180, 180, TIMINGS, JPEG),
    ),
    "v2-error": _server(
        v2.ErrorReply(3, "NOT_FOUND", "model 'bob' not found"),
        v2.encode_error(3, "NOT_FOUND", "model 'bob' not found"),
    ),
    "v2-cancel": _client(v2.Cancel(7)),
    "v2-session-start": _client(v2.SessionStart(7, "sanders", 0, OutputMode.FULL_FRAME, 0, 2)),
    "v2-session-audio": _client(v2.SessionAudio(7, PCM)),
    "v2-session-control": _client(v2.SessionControl(7, v2.SessionAction.END)),
    "v2-credit": _client(v2.Credit(7, 1)),
    "v2-session-frame": _server(
        v2.SessionFrame(
            7,
            1,
            40.0,
            False,
            1,
            OutputMode.FULL_FRAME,
            1280,
            720,
            BOUNDS,
            Timings(0.0, 0.5, 9.5, 1.25, 3.0, 14.25, 1),
            JPEG,
        ),
        v2.encode_session_frame(
            7,
            1,
            40.0,
            False,
            1,
            OutputMode.FULL_FRAME,
            BOUNDS,
            1280,
            720,
            Timings(0.0, 0.5, 9.5, 1.25, 3.0, 14.25, 1),
            JPEG,
        ),
    ),
    "v2-session-end": _server(v2.SessionEnd(7, "OK", ""), v2.encode_session_end(7)),
    "v2-session-start-video": _client(
        v2.SessionStart(8, "sanders", 0, credits=12, video_codecs=(v2.VideoCodec.H264, v2.VideoCodec.VP8))
    ),
    "v2-session-start-play": _client(
        v2.SessionStart(9, "sanders", 0, credits=12, video_codecs=(v2.VideoCodec.H264,), play=True)
    ),
    "v2-video-config": _server(
        v2.VideoConfig(8, v2.VideoCodec.H264, "avc1.42e01f", 192, 208, b""),
        v2.encode_video_config(8, v2.VideoCodec.H264, "avc1.42e01f", 192, 208, b""),
    ),
    "v2-video-chunk": _server(
        v2.VideoChunk(8, 0, 0.0, True, False, 0, CROP_WINDOW, H264_START),
        v2.encode_video_chunk(8, 0, 0.0, True, False, 0, CROP_WINDOW, H264_START),
    ),
    "v2-key-frame": _client(v2.KeyFrameRequest(8)),
}


def test_every_example_in_the_document_is_checked_and_every_check_has_its_example() -> None:
    assert sorted(EXAMPLES) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_documented_example_matches_the_codec(name: str) -> None:
    CHECKS[name](EXAMPLES[name])
