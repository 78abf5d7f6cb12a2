"""Test doubles for the browser tests: stand-ins the page talks to instead of the real thing.

- :func:`answer_get_audio` puts itself between the page and the real proxy's WebSocket and answers
  the page's ``get_audio`` requests itself, either as the proposed proxy addition would (see
  docs/browser-client.md, "Audio") or as a proxy without it does (an unknown message type error).
  Everything else passes through to the real proxy unchanged.
- :func:`refuse_microphone` makes ``getUserMedia`` fail as a browser does when permission is refused
  or no microphone exists.
- :func:`tone_wav` makes the package audio the ``get_audio`` double serves.
- :func:`drop_video_chunk` loses one video chunk on its way to the page and records its KEY_FRAMEs;
  :func:`strip_video_request` makes the page's video session one the server answers with JPEGs.
"""

from __future__ import annotations

import array
import base64
import dataclasses
import io
import json
import math
import wave

from lipsync_protocol import v2

from .harness import Page, WebSocketRoute

SAMPLE_RATE = 16_000


def tone_wav(seconds: float, frequency: float = 220.0) -> bytes:
    """A mono PCM16 16 kHz WAV of a quiet sine tone."""
    samples = array.array(
        "h",
        (
            int(6000 * math.sin(2 * math.pi * frequency * i / SAMPLE_RATE))
            for i in range(int(seconds * SAMPLE_RATE))
        ),
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        file.writeframes(samples.tobytes())
    return buffer.getvalue()


def answer_get_audio(page: Page, wav: bytes | None) -> None:
    """Route the page's WebSocket to the real proxy, answering ``get_audio`` here: with ``wav`` as
    the proposed ``{"type":"audio",...}`` reply, or when None with the error a proxy that does not
    know the message sends today. Call before the page opens its WebSocket."""

    def handler(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def from_page(message: str | bytes) -> None:
            request = _json_object(message)
            if request is None or request.get("type") != "get_audio":
                server.send(message)
            elif wav is None:
                route.send(
                    json.dumps(
                        {
                            "type": "error",
                            "id": request.get("id"),
                            "code": "INVALID_ARGUMENT",
                            "message": "unknown message type 'get_audio'; expected one of: inference, "
                            "list_models, get_metadata, get_video_frame, ping",
                            "model_name": None,
                            "frame_id": None,
                        }
                    )
                )
            else:
                route.send(
                    json.dumps(
                        {
                            "type": "audio",
                            "id": request.get("id"),
                            "model_name": request.get("model_name"),
                            "format": "wav",
                            "sample_rate": SAMPLE_RATE,
                            "duration_s": (len(wav) - 44) / (2 * SAMPLE_RATE),
                            "size": len(wav),
                            "audio_base64": base64.b64encode(wav).decode("ascii"),
                        }
                    )
                )

        route.on_message(from_page)
        server.on_message(route.send)

    page.route_web_socket("**/ws", handler)


def _json_object(message: str | bytes) -> dict[str, object] | None:
    if not isinstance(message, str):
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def refuse_microphone(page: Page, error_name: str) -> None:
    """Make every ``getUserMedia`` call of the page fail with the DOMException ``error_name``
    (``NotAllowedError``: permission refused; ``NotFoundError``: no microphone)."""
    page.add_init_script(
        f"""
        navigator.mediaDevices.getUserMedia = () =>
            Promise.reject(new DOMException('refused by the test double', {json.dumps(error_name)}));
        """
    )


def drop_video_chunk(page: Page, after: int) -> list[int]:
    """Route the page's WebSocket to the real proxy, dropping the first non-key VIDEO_CHUNK after
    `after` chunks, as a lost message would. Returns the list the request ids of the page's KEY_FRAME
    messages are appended to. Call before the page opens its WebSocket."""
    key_frame_requests: list[int] = []
    seen = [0]
    dropped: list[int] = []

    def handler(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if isinstance(message, bytes) and message[:2] == bytes((v2.VERSION, v2.KEY_FRAME)):
                key_frame_requests.append(int.from_bytes(message[4:8], "little"))
            server.send(message)

        def from_server(message: str | bytes) -> None:
            if isinstance(message, bytes) and message[:2] == bytes((v2.VERSION, v2.VIDEO_CHUNK)):
                seen[0] += 1
                if seen[0] > after and not message[2] & v2.FLAG_KEY_FRAME and not dropped:
                    dropped.append(seen[0])
                    return
            route.send(message)

        route.on_message(from_page)
        server.on_message(from_server)

    page.route_web_socket("**/ws", handler)
    return key_frame_requests


def strip_video_request(page: Page) -> None:
    """Route the page's WebSocket to the real proxy, turning its video SESSION_START into one without
    the video flag and codec list: the server then answers as to a client whose codecs it lacks, with
    JPEG frames. Call before the page opens its WebSocket."""

    def handler(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if isinstance(message, bytes) and message[:2] == bytes((v2.VERSION, v2.SESSION_START)):
                start = v2.decode_client(message)
                assert isinstance(start, v2.SessionStart)
                message = v2.encode_client(dataclasses.replace(start, video_codecs=()))
            server.send(message)

        route.on_message(from_page)
        server.on_message(route.send)

    page.route_web_socket("**/ws", handler)
