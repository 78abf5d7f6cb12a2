"""The one table from gRPC status codes to reply codes, and the messages clients see."""

from __future__ import annotations

import logging

import grpc
import pytest

from lipsync_protocol.errors import GRPC_STATUS_CODES
from lipsync_proxy.errors import WIRE_CODES, BackendError, failure, status_of_number, wire_code

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


def test_a_status_without_details_is_named_in_words() -> None:
    assert BackendError(grpc.StatusCode.NOT_FOUND, "").message == "not found"


@pytest.mark.parametrize(
    ("status", "level"),
    [
        (grpc.StatusCode.INTERNAL, logging.WARNING),
        (grpc.StatusCode.UNIMPLEMENTED, logging.WARNING),
        (grpc.StatusCode.NOT_FOUND, logging.DEBUG),
        (grpc.StatusCode.UNAVAILABLE, logging.DEBUG),
    ],
)
def test_a_server_failure_is_logged_as_a_warning_and_the_rest_for_debugging(
    status: grpc.StatusCode, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "lipsync_proxy.errors"):
        failure(status, "details")
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (level, f"gRPC call failed: {status.name} details")
    ]
