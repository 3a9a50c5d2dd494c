"""WebSocket frames written by the gateway carry the header geventwebsocket would write."""
from __future__ import annotations

import pytest
from geventwebsocket.websocket import Header

from gateway.websocket import frame_header as ws_frame_header


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 1000, 65535, 65536, 1 << 20])
@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_header_matches_geventwebsocket(opcode, n):
    assert ws_frame_header(opcode, n) == Header.encode_header(True, opcode, b"", n, 0)
