"""The smoke test's own pure parts: the v1 request, the JPEG check and the verdict. The smoke test as a
whole runs as `make smoke`."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest


def test_a_v1_request_is_length_name_and_little_endian_frame_id(smoke: ModuleType) -> None:
    assert smoke.v1_request("demo", 50) == b"\x04demo" + struct.pack("<I", 50)
    assert len(smoke.v1_request("é", 1)) == 1 + 2 + 4


@pytest.mark.parametrize("name", ["", "x" * 256])
def test_a_model_name_that_does_not_fit_a_v1_request_is_refused(smoke: ModuleType, name: str) -> None:
    with pytest.raises(ValueError, match=r"1\.\.255 bytes"):
        smoke.v1_request(name, 0)


def test_a_real_jpeg_passes_and_damaged_ones_do_not(smoke: ModuleType) -> None:
    image = np.full((32, 48, 3), 128, dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    jpeg = encoded.tobytes()
    assert smoke.jpeg_problem(jpeg) is None
    assert "SOI" in smoke.jpeg_problem(b"\x89PNG" + jpeg[4:])
    assert "EOI" in smoke.jpeg_problem(jpeg[:-2])
    assert "decode" in smoke.jpeg_problem(b"\xff\xd8" + b"\x00" * 64 + b"\xff\xd9")
    assert smoke.jpeg_problem(b"") is not None


def test_only_the_asked_trace_counts_and_only_once_it_is_complete(smoke: ModuleType) -> None:
    partial = {"trace_id": "aa", "services": ["lipsync-proxy"], "span_count": 2}
    short = {"trace_id": "bb", "services": ["lipsync-proxy", "lipsync-server"], "span_count": 3}
    whole = {"trace_id": "cc", "services": ["lipsync-server", "lipsync-proxy"], "span_count": 6}
    reply = {"traces": [partial, short, whole], "count": 3}
    assert smoke.complete_trace(reply, "cc") == whole
    assert smoke.complete_trace(reply, "aa") is None
    assert smoke.complete_trace(reply, "bb") is None
    assert smoke.complete_trace(reply, "dd") is None
    assert smoke.complete_trace({"traces": [], "count": 0}, "cc") is None
    assert smoke.complete_trace({}, "cc") is None


def summary(smoke: ModuleType, **fields: object) -> Any:
    """A summary of a run where everything worked, except what `fields` say."""
    worked: dict[str, object] = {
        "frames_requested": 100,
        "frames_ok": 100,
        "json_inference_ok": True,
        "grpc_passthrough_ok": True,
    }
    return smoke.Summary(**(worked | fields))


def test_the_verdict_needs_every_frame_valid_the_json_inference_and_grpc(smoke: ModuleType) -> None:
    assert summary(smoke).verdict() is None
    assert "1 errors, 99/100" in summary(smoke, frames_ok=99, errors=1).verdict()
    assert "99/100" in summary(smoke, frames_ok=99).verdict()
    assert "JSON" in summary(smoke, json_inference_ok=False).verdict()
    assert "pass-through" in summary(smoke, grpc_passthrough_ok=False).verdict()


def test_a_missing_trace_fails_only_when_a_trace_is_required(smoke: ModuleType) -> None:
    assert summary(smoke, trace_found=False).verdict() is None
    assert (
        "no complete proxy → server trace" in summary(smoke, trace_found=False, trace_required=True).verdict()
    )
    assert summary(smoke, trace_found=True, trace_required=True).verdict() is None
