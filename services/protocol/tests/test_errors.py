from __future__ import annotations

import grpc

from lipsync_protocol.errors import GRPC_STATUS_CODES, GRPC_STATUS_NAMES, ProtocolError


def test_the_status_table_is_grpcs_own() -> None:
    assert dict(GRPC_STATUS_CODES) == {code.name: code.value[0] for code in grpc.StatusCode}
    assert all(GRPC_STATUS_CODES[name] == number for number, name in GRPC_STATUS_NAMES.items())


def test_a_protocol_error_defaults_to_invalid_argument_without_an_id() -> None:
    error = ProtocolError("bad")

    assert (error.code, error.message, error.request_id, str(error)) == (
        "INVALID_ARGUMENT",
        "bad",
        None,
        "bad",
    )


def test_a_protocol_error_keeps_the_request_id_and_code() -> None:
    error = ProtocolError("slow down", request_id=7, code="RESOURCE_EXHAUSTED")

    assert repr(error) == "ProtocolError('slow down', request_id=7, code='RESOURCE_EXHAUSTED')"
