"""The header the proxy writes before a binary reply itself (ProxyConnection.send_reply)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from lipsync_proxy.connection import binary_frame_header


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 98_432, 5_000_000])
def test_the_header_and_payload_are_the_frame_websockets_would_send(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    assert binary_frame_header(size) + payload == expected
