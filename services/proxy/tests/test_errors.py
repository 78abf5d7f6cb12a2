"""The one table from gRPC status codes to reply codes, and the messages clients see."""

from __future__ import annotations

import grpc
import pytest

from lipsync_proxy.errors import WIRE_CODES, BackendError, status_of_number, wire_code
from lipsync_proxy.protocol.errors import GRPC_STATUS_CODES

SPEC_CODES = {
    "NOT_FOUND",
    "OUT_OF_RANGE",
    "INVALID_ARGUMENT",
    "UNAVAILABLE",
    "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED",
    "INTERNAL",
}


def test_every_grpc_status_has_a_reply_code_that_is_a_grpc_status_name() -> None:
    assert set(WIRE_CODES) == set(grpc.StatusCode)
    assert set(WIRE_CODES.values()) <= set(GRPC_STATUS_CODES) - {"OK"}


@pytest.mark.parametrize("name", sorted(SPEC_CODES))
def test_the_codes_the_spec_names_keep_their_own_name(name: str) -> None:
    assert wire_code(grpc.StatusCode[name]) == name


def test_a_status_number_names_its_status() -> None:
    assert status_of_number(5) is grpc.StatusCode.NOT_FOUND
    assert status_of_number(99) is grpc.StatusCode.UNKNOWN


def test_the_servers_own_messages_reach_the_client() -> None:
    error = BackendError(grpc.StatusCode.NOT_FOUND, "model 'x' not found; available models: demo")
    assert (error.code, error.message) == ("NOT_FOUND", "model 'x' not found; available models: demo")


def test_transport_details_stay_in_the_log() -> None:
    details = (
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.1.2.3:50051: Connection refused"
    )
    error = BackendError(grpc.StatusCode.UNAVAILABLE, details)
    assert (error.code, error.message) == ("UNAVAILABLE", "the lip-sync backend is unavailable")
    assert error.details == details
    assert BackendError(grpc.StatusCode.UNKNOWN, "Traceback ...").message == "the lip-sync backend failed"
