from __future__ import annotations

import pytest

from lipsync_protocol.errors import ProtocolError
from lipsync_protocol.fields import Bounds, OutputMode, Timings, check_traceparent, safe_repr
from lipsync_protos.lipsync.v1 import lipsync_pb2

W3C_EXAMPLE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_output_mode_wire_numbers_are_the_proto_enum_numbers() -> None:
    assert OutputMode.FULL_FRAME.wire == lipsync_pb2.OUTPUT_MODE_FULL_FRAME
    assert OutputMode.FACE_CROP.wire == lipsync_pb2.OUTPUT_MODE_FACE_CROP
    assert [OutputMode.from_wire(mode.wire) for mode in OutputMode] == list(OutputMode)


def test_bounds_and_timings_have_the_proto_fields_in_order() -> None:
    assert Bounds._fields == tuple(lipsync_pb2.Bounds.DESCRIPTOR.fields_by_name)
    assert Timings._fields == tuple(lipsync_pb2.Timings.DESCRIPTOR.fields_by_name)


@pytest.mark.parametrize(
    "value",
    [
        W3C_EXAMPLE,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future-fields",
        "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09",
    ],
)
def test_a_w3c_traceparent_is_accepted(value: str) -> None:
    assert check_traceparent(value, None) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n",
        "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-" + "x" * 200,
    ],
)
def test_a_malformed_traceparent_is_an_invalid_argument(value: str) -> None:
    with pytest.raises(ProtocolError, match="W3C") as caught:
        check_traceparent(value, "t1")

    assert caught.value.request_id == "t1"
    assert caught.value.code == "INVALID_ARGUMENT"


def test_client_values_in_messages_are_short_and_ascii() -> None:
    assert safe_repr("ok") == "'ok'"
    assert safe_repr("\x00\u202e" * 50) == ascii("\x00\u202e" * 50)[:37] + "..."
