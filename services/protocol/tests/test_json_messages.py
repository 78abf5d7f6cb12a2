from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipsync_protocol import json_messages as jm
from lipsync_protocol.errors import ProtocolError
from lipsync_protocol.fields import MAX_FRAME_ID, Bounds, OutputMode, Timings

FUZZ = settings(max_examples=400, derandomize=True, database=None, deadline=None)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _refusal(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        jm.parse(text)
    assert caught.value.code == "INVALID_ARGUMENT"
    return caught.value


# --- parsing ---------------------------------------------------------------------------------------


def test_the_seed_inference_message_parses_with_defaults() -> None:
    request = jm.parse('{"type":"inference","model_name":"sanders","frame_id":50}')

    assert request == jm.InferenceRequest(None, "sanders", 50, False, OutputMode.FULL_FRAME, None)


def test_a_message_without_type_is_an_inference() -> None:
    assert jm.parse('{"model_name":"sanders","frame_id":0}') == jm.InferenceRequest(None, "sanders", 0)


def test_every_inference_option_is_read() -> None:
    text = json.dumps(
        {
            "type": "inference",
            "id": "r-7",
            "model_name": "sanders",
            "frame_id": 12,
            "include_image": True,
            "output_mode": "face_crop",
            "traceparent": TRACEPARENT,
        }
    )

    assert jm.parse(text) == jm.InferenceRequest(
        "r-7", "sanders", 12, True, OutputMode.FACE_CROP, TRACEPARENT
    )


def test_the_output_mode_compares_equal_to_its_json_spelling() -> None:
    request = jm.parse('{"model_name":"m","frame_id":1,"output_mode":"face_crop"}')

    assert isinstance(request, jm.InferenceRequest)
    assert request.output_mode == "face_crop"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"list_models"}', jm.ListModelsRequest(None)),
        ('{"type":"list_models","id":3}', jm.ListModelsRequest(3)),
        ('{"type":"get_metadata","model_name":"sanders","id":"m"}', jm.GetMetadataRequest("m", "sanders")),
        (
            '{"type":"get_video_frame","model_name":"sanders","frame_id":522}',
            jm.GetVideoFrameRequest(None, "sanders", 522),
        ),
        ('{"type":"ping","id":null}', jm.PingRequest(None)),
        (b'{"type":"ping","id":"\xc3\xa9"}', jm.PingRequest("é")),
    ],
)
def test_each_control_message_parses(text: str | bytes, expected: jm.JsonRequest) -> None:
    assert jm.parse(text) == expected


def test_fields_the_proxy_does_not_read_are_ignored() -> None:
    assert jm.parse('{"type":"ping","timestamp":1712345678,"extra":{"a":[1]}}') == jm.PingRequest()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("[1,2]", "must be an object"),
        ('"ping"', "must be an object"),
        ("[" * 100_000, "not valid JSON"),
        ('{"frame_id":' + "9" * 5000 + "}", "not valid JSON"),
        ('{"type":7}', "unknown message type 7"),
        ('{"type":"bogus"}', "unknown message type 'bogus'; expected one of: inference, list_models"),
        ('{"id":true}', '"id" must be a string or a 64-bit integer'),
        ('{"id":1.5}', '"id" must be a string or a 64-bit integer'),
        ('{"id":9223372036854775808}', '"id" must be a string or a 64-bit integer'),
        ('{"id":"' + "x" * 257 + '"}', '"id" must be Unicode text'),
        ('{"id":"\\ud800"}', '"id" must be Unicode text'),
    ],
)
def test_a_malformed_message_is_refused_without_an_id(text: str, problem: str) -> None:
    error = _refusal(text)

    assert problem in error.message
    assert error.request_id is None


def test_bytes_that_are_not_utf8_are_refused() -> None:
    assert "UTF-8" in _refusal(b'{"type":"ping","id":"\xff"}').message


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"frame_id": 1}, '"model_name" must be a string'),
        ({"model_name": 5, "frame_id": 1}, '"model_name" must be a string'),
        ({"model_name": "", "frame_id": 1}, "1-255 UTF-8 bytes, got 0"),
        ({"model_name": "é" * 128, "frame_id": 1}, "1-255 UTF-8 bytes, got 256"),
        ({"model_name": "\ud800", "frame_id": 1}, "not valid Unicode"),
        ({"model_name": "m"}, '"frame_id" must be an integer'),
        ({"model_name": "m", "frame_id": True}, '"frame_id" must be an integer'),
        ({"model_name": "m", "frame_id": 1.0}, '"frame_id" must be an integer'),
        ({"model_name": "m", "frame_id": "1"}, '"frame_id" must be an integer'),
        ({"model_name": "m", "frame_id": -1}, f"[0, {MAX_FRAME_ID}], got -1"),
        ({"model_name": "m", "frame_id": MAX_FRAME_ID + 1}, "frame_id must be in"),
        ({"model_name": "m", "frame_id": 1, "include_image": 1}, '"include_image" must be true or false'),
        ({"model_name": "m", "frame_id": 1, "output_mode": "crop"}, '"output_mode" must be "full_frame"'),
        ({"model_name": "m", "frame_id": 1, "output_mode": 2}, '"output_mode" must be'),
        ({"model_name": "m", "frame_id": 1, "traceparent": 5}, '"traceparent" must be a string'),
        ({"model_name": "m", "frame_id": 1, "traceparent": "00-1-2-01"}, "W3C Trace Context"),
    ],
)
def test_a_bad_inference_field_is_refused_and_the_error_echoes_the_id(
    fields: dict[str, Any], problem: str
) -> None:
    error = _refusal(json.dumps({"type": "inference", "id": "req-1", **fields}))

    assert problem in error.message
    assert error.request_id == "req-1"


def test_an_unknown_type_echoes_the_id() -> None:
    assert _refusal('{"type":"infer","id":42}').request_id == 42


def test_a_bad_video_frame_request_echoes_the_id() -> None:
    error = _refusal('{"type":"get_video_frame","id":9,"model_name":"m","frame_id":-3}')

    assert error.request_id == 9


def test_a_hostile_type_is_not_echoed_raw() -> None:
    error = _refusal(json.dumps({"type": "\u202e" + "x" * 200}))

    assert error.message.isascii()
    assert len(error.message) < 200


# --- replies ---------------------------------------------------------------------------------------


def test_an_inference_reply_carries_the_seed_placeholder_without_an_image() -> None:
    reply = jm.inference_reply(
        "a",
        50,
        "sanders",
        17.8,
        None,
        Bounds(540, 180, 720, 360),
        Timings(0.1, 0.0, 9.5, 1.25, 3.0, 14.0, 2),
        OutputMode.FULL_FRAME,
        98432,
    )

    assert reply == (
        '{"type":"inference","id":"a","success":true,"model_name":"sanders","frame_id":50,'
        '"output_mode":"full_frame","processing_time_ms":17.8,"size":98432,"bounds":[540,180,720,360],'
        '"timings":{"queue_ms":0.1,"audio_features_ms":0.0,"inference_ms":9.5,"composite_ms":1.25,'
        '"encode_ms":3.0,"total_ms":14.0,"batch_size":2},'
        '"prediction_data":"use_binary_protocol_for_image_data"}'
    )


def test_an_inference_reply_with_an_image_carries_it_in_base64_instead_of_the_placeholder() -> None:
    image = b"\xff\xd8jpeg\xff\xd9"
    reply = json.loads(
        jm.inference_reply(None, 1, "m", 1.0, memoryview(image), None, None, OutputMode.FACE_CROP, len(image))
    )

    assert base64.b64decode(reply["image_base64"]) == image
    assert "prediction_data" not in reply
    assert "id" not in reply
    assert reply["bounds"] is None
    assert reply["timings"] is None


def test_times_are_rounded_to_microseconds_and_non_finite_ones_become_null() -> None:
    reply = json.loads(
        jm.inference_reply(
            1, 1, "m", 1 / 3, None, None, Timings(math.nan, math.inf, 1, 2, 3, 4, 1), OutputMode.FULL_FRAME, 9
        )
    )

    assert reply["processing_time_ms"] == 0.333
    assert reply["timings"]["queue_ms"] is None
    assert reply["timings"]["audio_features_ms"] is None


def test_an_inference_error_reports_the_code_and_the_error_text() -> None:
    assert jm.inference_error(7, "sanders", 600, "OUT_OF_RANGE", "frame_id 600 is outside [0, 523)") == (
        '{"type":"inference","id":7,"success":false,"model_name":"sanders","frame_id":600,'
        '"code":"OUT_OF_RANGE","error":"frame_id 600 is outside [0, 523)"}'
    )


def test_a_model_list_names_the_models_and_details_them() -> None:
    details = [
        {
            "name": "sanders",
            "frame_count": 523,
            "fps": 25.0,
            "width": 1280,
            "height": 720,
            "engine": "unet328",
        },
        {"name": "demo", "frame_count": 250, "fps": 25.0, "width": 1280, "height": 720, "engine": "sprite"},
    ]
    reply = json.loads(jm.model_list_reply("l", details))

    assert reply == {
        "type": "model_list",
        "id": "l",
        "models": ["sanders", "demo"],
        "count": 2,
        "details": details,
    }


def test_metadata_carries_the_extra_fields() -> None:
    assert jm.metadata_reply(None, "sanders", 523, 25.0, 1280, 720, engine="unet328") == (
        '{"type":"metadata","model_name":"sanders","frame_count":523,"fps":25.0,"width":1280,"height":720,'
        '"engine":"unet328"}'
    )


def test_metadata_extra_fields_may_not_replace_the_type_or_id() -> None:
    with pytest.raises(ValueError, match="type"):
        jm.metadata_reply(None, "m", 1, 25.0, 2, 2, type="other")


def test_a_video_frame_reply_carries_the_base_frame() -> None:
    reply = json.loads(jm.video_frame_reply("v", "sanders", 3, b"\xff\xd8\xff\xd9", 1280, 720))

    assert reply == {
        "type": "video_frame",
        "id": "v",
        "model_name": "sanders",
        "frame_id": 3,
        "width": 1280,
        "height": 720,
        "size": 4,
        "image_base64": "/9j/2Q==",
    }


def test_a_pong_echoes_the_id_only_when_there_was_one() -> None:
    assert jm.pong(None) == '{"type":"pong"}'
    assert jm.pong("p1") == '{"type":"pong","id":"p1"}'


def test_an_error_reply_has_the_seed_shape() -> None:
    assert jm.error_reply("NOT_FOUND", "model 'x' not found", model_name="x", frame_id=1) == (
        '{"type":"error","code":"NOT_FOUND","message":"model \'x\' not found","model_name":"x","frame_id":1,'
        '"error":"model \'x\' not found"}'
    )
    assert jm.error_reply("INVALID_ARGUMENT", "bad", id=5) == (
        '{"type":"error","id":5,"code":"INVALID_ARGUMENT","message":"bad","model_name":null,"frame_id":null,'
        '"error":"bad"}'
    )


# --- properties ------------------------------------------------------------------------------------

ids = st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(st.characters(codec="utf-8"), max_size=256)
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
frame_ids = st.integers(0, MAX_FRAME_ID)
traceparents = st.none() | st.builds(
    "00-{}-{}-{}".format,
    st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda s: s != "0" * 32),
    st.text("0123456789abcdef", min_size=16, max_size=16).filter(lambda s: s != "0" * 16),
    st.sampled_from(["00", "01"]),
)
requests = st.one_of(
    st.builds(
        jm.InferenceRequest, ids, names, frame_ids, st.booleans(), st.sampled_from(OutputMode), traceparents
    ),
    st.builds(jm.ListModelsRequest, ids),
    st.builds(jm.GetMetadataRequest, ids, names),
    st.builds(jm.GetVideoFrameRequest, ids, names, frame_ids),
    st.builds(jm.GetAudioRequest, ids, names),
    st.builds(jm.PingRequest, ids),
)
_TYPES = {
    jm.InferenceRequest: "inference",
    jm.ListModelsRequest: "list_models",
    jm.GetMetadataRequest: "get_metadata",
    jm.GetVideoFrameRequest: "get_video_frame",
    jm.GetAudioRequest: "get_audio",
    jm.PingRequest: "ping",
}


def _as_json(request: jm.JsonRequest) -> str:
    fields = {name: getattr(request, name) for name in request.__slots__}
    fields = {name: str(value) if isinstance(value, OutputMode) else value for name, value in fields.items()}
    return json.dumps({"type": _TYPES[type(request)], **fields})


@FUZZ
@given(requests)
def test_any_valid_request_written_as_json_parses_to_itself(request: jm.JsonRequest) -> None:
    assert jm.parse(_as_json(request)) == request
    assert jm.parse(_as_json(request).encode()) == request


def _check_parse(text: str | bytes) -> None:
    try:
        outcome: jm.JsonRequest | ProtocolError = jm.parse(text)
    except ProtocolError as error:
        outcome = error
    if isinstance(outcome, ProtocolError):
        assert outcome.code == "INVALID_ARGUMENT"
        # The error reply must be sendable as a WebSocket text message.
        jm.error_reply(outcome.code, outcome.message, id=outcome.request_id).encode("utf-8")
    else:
        assert type(outcome) in _TYPES
        # Whatever id was accepted can be echoed in a sendable reply.
        jm.pong(outcome.id).encode("utf-8")


@FUZZ
@given(st.text())
def test_any_text_parses_to_a_request_or_a_protocol_error(text: str) -> None:
    _check_parse(text)


@FUZZ
@given(st.binary())
def test_any_bytes_parse_to_a_request_or_a_protocol_error(data: bytes) -> None:
    _check_parse(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_KEYS = ["type", "id", "model_name", "frame_id", "include_image", "output_mode", "traceparent"]
near_valid = st.dictionaries(
    st.sampled_from(_KEYS),
    json_values | st.sampled_from([*_TYPES.values(), "sanders", 0, 50, -1, 2**31, "face_crop", TRACEPARENT]),
)


@FUZZ
@given(near_valid)
def test_any_object_with_the_known_keys_parses_to_a_request_or_a_protocol_error(
    message: dict[str, Any],
) -> None:
    _check_parse(json.dumps(message))
