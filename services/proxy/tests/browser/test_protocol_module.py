"""The page's protocol module (static/js/protocol.js) against the proxy's Python codec, the oracle.

The module runs in Chromium, imported with ``import()`` in ``page.evaluate`` (see the ``modules_page``
fixture). What the JavaScript encodes
must be byte for byte what ``lipsync_protocol.v2.encode_client`` makes, and decode to the same
message; what the Python encoders make must decode in JavaScript to the same fields; and for any
mangled server message the JavaScript decoder must refuse exactly what the Python decoder refuses.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipsync_protocol import json_messages, v1, v2
from lipsync_protocol.errors import GRPC_STATUS_CODES, ProtocolError
from lipsync_protocol.fields import MAX_FRAME_ID, Bounds, OutputMode, Timings

from .harness import Page

CODEC = "const codec = await import('/js/protocol.js');"
PROPERTY = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TIMINGS = Timings(0.5, 1.0, 9.5, 1.25, 3.0, 15.25, 4)
BOUNDS = Bounds(540, 180, 720, 360)
JPEG = b"\xff\xd8\xff\xe0jpeg\xff\xd9"

pytestmark = pytest.mark.integration


def js_bytes(page: Page, expression: str, arg: object = None) -> bytes:
    """Run `expression` (which may use `codec` and `arg`) and return the Uint8Array it makes as bytes."""
    values: list[int] = page.evaluate(
        f"async (arg) => {{ {CODEC} return Array.from({expression}); }}",
        arg,
    )
    return bytes(values)


def js_decode(page: Page, data: bytes) -> dict[str, Any]:
    """decodeServerMessage in the page: the message as a dict, or {"refused": reason}."""
    result: dict[str, Any] = page.evaluate(
        f"""async (bytes) => {{
            {CODEC}
            try {{
                const message = codec.decodeServerMessage(new Uint8Array(bytes));
                return 'image' in message ? {{ ...message, image: Array.from(message.image) }} : message;
            }} catch (error) {{
                if (!(error instanceof codec.ProtocolError)) throw error;
                return {{ refused: error.message }};
            }}
        }}""",
        list(data),
    )
    return result


def js_infer(page: Page, message: v2.InferRequest) -> bytes:
    audio = message.audio
    return js_bytes(
        page,
        """codec.encodeInfer({ ...arg, audio: arg.audio && new Int16Array(arg.audio) })""",
        {
            "requestId": message.request_id,
            "modelName": message.model_name,
            "frameId": message.frame_id,
            "outputMode": str(message.output_mode),
            "jpegQuality": message.jpeg_quality,
            "audio": None if audio is None else _samples(audio.pcm16),
            "centerSample": None if audio is None else audio.center_sample,
            "traceparent": message.traceparent,
        },
    )


def _samples(pcm16: bytes) -> list[int]:
    return [int.from_bytes(pcm16[i : i + 2], "little", signed=True) for i in range(0, len(pcm16), 2)]


def python_view(message: v2.ServerMessage) -> dict[str, Any]:
    """A server message as the JavaScript decoder shapes it."""
    match message:
        case v2.ErrorReply() | v2.SessionEnd():
            kind = "error" if isinstance(message, v2.ErrorReply) else "session_end"
            return {
                "kind": kind,
                "requestId": message.request_id,
                "code": message.code,
                "message": message.message,
            }
        case v2.FrameReply() | v2.SessionFrame():
            view: dict[str, Any] = {
                "kind": "frame",
                "requestId": message.request_id,
                "frameId": message.frame_id,
                "width": message.width,
                "height": message.height,
                "bounds": message.bounds._asdict(),
                "timings": {
                    "queueMs": message.timings.queue_ms,
                    "audioFeaturesMs": message.timings.audio_features_ms,
                    "inferenceMs": message.timings.inference_ms,
                    "compositeMs": message.timings.composite_ms,
                    "encodeMs": message.timings.encode_ms,
                    "totalMs": message.timings.total_ms,
                    "batchSize": message.timings.batch_size,
                },
                "outputMode": str(message.output_mode),
                "image": list(message.image),
            }
            if isinstance(message, v2.SessionFrame):
                view.update(
                    kind="session_frame",
                    sequence=message.sequence,
                    audioTimeMs=message.audio_time_ms,
                    endOfUtterance=message.end_of_utterance,
                )
            return view


def same(a: object, b: object) -> bool:
    """Equality of the two views' values, as doubles: NaN equals NaN (a mangled timing may be one),
    and a whole number Playwright passed back as an int (through its shortest decimal form, which
    for a large double is not its exact value) equals the double it stands for."""
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        x, y = float(a), float(b)
        return (math.isnan(x) and math.isnan(y)) or x == y
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# --- client messages -------------------------------------------------------------------------------


def test_the_seed_request_is_what_the_v1_codec_reads(modules_page: Page) -> None:
    data = js_bytes(
        modules_page, "codec.encodeV1Request(arg.name, arg.frame)", {"name": "sanders", "frame": 50}
    )

    assert data == bytes.fromhex("07") + b"sanders" + bytes.fromhex("32000000")
    assert v1.decode_request(data) == v1.FrameRequest("sanders", 50)


def test_an_infer_with_every_option_is_byte_for_byte_the_python_encoding(modules_page: Page) -> None:
    message = v2.InferRequest(
        2,
        "sanders",
        50,
        OutputMode.FACE_CROP,
        90,
        v2.AudioWindow(b"\x00\x00\xe8\x03\xd0\x07\xe8\x03", 2),
        TRACEPARENT,
    )

    data = js_infer(modules_page, message)

    assert data == v2.encode_client(message)
    assert v2.decode_client(data) == message


@given(
    request_id=st.integers(1, v2.MAX_REQUEST_ID),
    model_name=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20),
    frame_id=st.integers(0, MAX_FRAME_ID),
    mode=st.sampled_from(OutputMode),
    quality=st.integers(0, 100),
    samples=st.none() | st.lists(st.integers(-32768, 32767), min_size=1, max_size=40),
    centered=st.booleans(),
    traced=st.booleans(),
)
@PROPERTY
def test_any_infer_the_page_makes_decodes_in_the_proxy_as_the_same_request(
    modules_page: Page,
    request_id: int,
    model_name: str,
    frame_id: int,
    mode: OutputMode,
    quality: int,
    samples: list[int] | None,
    centered: bool,
    traced: bool,
) -> None:
    audio = None
    if samples is not None:
        pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
        audio = v2.AudioWindow(pcm, len(samples) // 2 if centered else None)
    message = v2.InferRequest(
        request_id, model_name, frame_id, mode, quality, audio, TRACEPARENT if traced else None
    )

    data = js_infer(modules_page, message)

    assert data == v2.encode_client(message)
    assert v2.decode_client(data) == message


def test_session_messages_are_byte_for_byte_the_python_encoding(modules_page: Page) -> None:
    start = v2.SessionStart(7, "sanders", 12, OutputMode.FACE_CROP, 80, 13, TRACEPARENT)
    made = {
        "start": js_bytes(
            modules_page,
            "codec.encodeSessionStart(arg)",
            {
                "requestId": 7,
                "modelName": "sanders",
                "startFrameId": 12,
                "outputMode": "face_crop",
                "jpegQuality": 80,
                "credits": 13,
                "traceparent": TRACEPARENT,
            },
        ),
        "audio": js_bytes(
            modules_page, "codec.encodeSessionAudio(7, new Int16Array([0, 1000, -2000, 32767]))"
        ),
        "end": js_bytes(modules_page, "codec.encodeSessionControl(7, codec.SessionAction.END)"),
        "interrupt": js_bytes(modules_page, "codec.encodeSessionControl(7, codec.SessionAction.INTERRUPT)"),
        "credit": js_bytes(modules_page, "codec.encodeCredit(7, 4294967295)"),
        "cancel": js_bytes(modules_page, "codec.encodeCancel(7)"),
    }
    expected: dict[str, v2.ClientMessage] = {
        "start": start,
        "audio": v2.SessionAudio(7, b"\x00\x00\xe8\x03\x30\xf8\xff\x7f"),
        "end": v2.SessionControl(7, v2.SessionAction.END),
        "interrupt": v2.SessionControl(7, v2.SessionAction.INTERRUPT),
        "credit": v2.Credit(7, v2.MAX_REQUEST_ID),
        "cancel": v2.Cancel(7),
    }

    for name, message in expected.items():
        assert made[name] == v2.encode_client(message), name
        assert v2.decode_client(made[name]) == message, name


@pytest.mark.parametrize(
    "call",
    [
        "codec.encodeInfer({ requestId: 0, modelName: 'demo', frameId: 1 })",
        "codec.encodeInfer({ requestId: 2 ** 32, modelName: 'demo', frameId: 1 })",
        "codec.encodeInfer({ requestId: 1, modelName: '', frameId: 1 })",
        "codec.encodeInfer({ requestId: 1, modelName: 'x'.repeat(256), frameId: 1 })",
        "codec.encodeInfer({ requestId: 1, modelName: '\\ud800', frameId: 1 })",
        "codec.encodeInfer({ requestId: 1, modelName: 'demo', frameId: 2 ** 31 })",
        "codec.encodeInfer({ requestId: 1, modelName: 'demo', frameId: 1.5 })",
        "codec.encodeInfer({ requestId: 1, modelName: 'demo', frameId: 1, outputMode: 'toString' })",
        "codec.encodeInfer({ requestId: 1, modelName: 'demo', frameId: 1, jpegQuality: 101 })",
        "codec.encodeInfer({ requestId: 1, modelName: 'demo', frameId: 1, traceparent: 'nonsense' })",
        "codec.encodeInfer({ requestId: 1, modelName: 'demo', frameId: 1, audio: new Int16Array(32001) })",
        "codec.encodeInfer({ requestId: 1, modelName: 'm', frameId: 1, "
        "audio: new Int16Array(4), centerSample: 4 })",
        "codec.encodeSessionAudio(1, new Int16Array(0))",
        "codec.encodeCredit(1, 0)",
        "codec.encodeSessionControl(1, 3)",
        "codec.encodeV1Request('demo', -1)",
    ],
)
def test_the_encoders_refuse_what_the_proxy_would_refuse(modules_page: Page, call: str) -> None:
    refused = modules_page.evaluate(
        f"async () => {{ {CODEC} try {{ {call}; return null; }} catch (error) {{ return error.name; }} }}"
    )

    assert refused in {"RangeError", "TypeError"}


# --- server messages -------------------------------------------------------------------------------


def test_a_frame_from_the_proxy_decodes_to_its_fields(modules_page: Page) -> None:
    data = v2.encode_frame(2, 50, OutputMode.FACE_CROP, BOUNDS, 180, 180, TIMINGS, JPEG)

    decoded = js_decode(modules_page, data)

    assert decoded == python_view(v2.decode_server(data))
    assert decoded["bounds"] == {"x1": 540, "y1": 180, "x2": 720, "y2": 360}
    assert decoded["timings"]["totalMs"] == 15.25


def test_session_frames_errors_and_ends_decode_to_their_fields(modules_page: Page) -> None:
    messages = [
        v2.encode_session_frame(7, 1, 40.0, True, 1, OutputMode.FULL_FRAME, BOUNDS, 1280, 720, TIMINGS, JPEG),
        v2.encode_error(3, "NOT_FOUND", "model 'bob' not found"),
        v2.encode_error(0, "INVALID_ARGUMENT", "naïve ✓ text"),
        v2.encode_session_end(7),
        v2.encode_session_end(7, "CANCELLED", "cancelled by the client"),
    ]

    for data in messages:
        assert js_decode(modules_page, data) == python_view(v2.decode_server(data))


server_messages = st.one_of(
    st.builds(
        v2.encode_frame,
        st.integers(0, v2.MAX_REQUEST_ID),
        st.integers(0, MAX_FRAME_ID),
        st.sampled_from(OutputMode),
        st.tuples(*[st.integers(-(2**31), 2**31 - 1)] * 4),
        st.integers(0, 65535),
        st.integers(0, 65535),
        st.tuples(*[st.floats(width=32, allow_nan=False)] * 6, st.integers(0, 65535)),
        st.binary(min_size=1, max_size=16),
    ),
    st.builds(
        v2.encode_session_frame,
        st.integers(0, v2.MAX_REQUEST_ID),
        st.integers(0, 2**32 - 1),
        st.floats(allow_nan=False),
        st.booleans(),
        st.integers(0, MAX_FRAME_ID),
        st.sampled_from(OutputMode),
        st.tuples(*[st.integers(-(2**31), 2**31 - 1)] * 4),
        st.integers(0, 65535),
        st.integers(0, 65535),
        st.tuples(*[st.floats(width=32, allow_nan=False)] * 6, st.integers(0, 65535)),
        st.binary(min_size=1, max_size=16),
    ),
    st.builds(
        v2.encode_error,
        st.integers(0, v2.MAX_REQUEST_ID),
        st.sampled_from([code for code in GRPC_STATUS_CODES if code != "OK"]),
        st.text(max_size=30),
    ),
    st.builds(
        v2.encode_session_end,
        st.integers(0, v2.MAX_REQUEST_ID),
        st.sampled_from(list(GRPC_STATUS_CODES)),
        st.text(max_size=30),
    ),
)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A valid server message, then maybe cut, with a byte changed, or with bytes added."""
    data = bytearray(draw(server_messages))
    change = draw(st.sampled_from(["none", "cut", "byte", "append"]))
    if change == "cut":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif change == "byte":
        data[draw(st.integers(0, min(len(data), 80) - 1))] = draw(st.integers(0, 255))
    elif change == "append":
        data += draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@given(data=mangled())
@settings(PROPERTY, max_examples=300)
def test_the_page_refuses_exactly_the_server_messages_the_python_decoder_refuses(
    modules_page: Page, data: bytes
) -> None:
    decoded = js_decode(modules_page, data)
    try:
        expected: dict[str, Any] | str = python_view(v2.decode_server(data))
    except ProtocolError as error:
        expected = error.message

    if isinstance(expected, str):
        assert "refused" in decoded, f"the page accepted what Python refuses ({expected}): {decoded}"
    else:
        assert "refused" not in decoded, f"the page refused a valid message: {decoded['refused']}"
        assert same(decoded, expected)


def test_json_requests_are_what_the_proxy_parses(modules_page: Page) -> None:
    text = modules_page.evaluate(
        f"""async () => {{ {CODEC}
            return codec.jsonRequest('inference', 'a2', {{
                model_name: 'sanders', frame_id: 50, include_image: true, output_mode: 'face_crop' }});
        }}"""
    )

    assert json_messages.parse(text) == json_messages.InferenceRequest(
        "a2", "sanders", 50, include_image=True, output_mode=OutputMode.FACE_CROP
    )


def test_a_text_message_that_is_not_a_json_object_with_a_type_is_refused(modules_page: Page) -> None:
    verdicts = modules_page.evaluate(
        f"""async () => {{ {CODEC}
            return ['nope', '[]', 'null', '{{"id": 1}}', '{{"type": "pong"}}'].map((text) => {{
                try {{ return codec.parseJsonReply(text).type; }} catch (error) {{ return error.name; }}
            }});
        }}"""
    )

    assert verdicts == ["ProtocolError"] * 4 + ["pong"]
