"""Issue 14: an oversize frame gets the same answer at every size: an oversize_frame status
frame, then close 1009, also above the WebSocket library's own limit."""

from __future__ import annotations

import os
import struct

import pytest
import robot_frames as rf
from gateway_harness import running_gateway
from memory_store import MemoryStore
from ws_client import RawClient

pytestmark = pytest.mark.anyio


def header_of(size: int) -> bytes:
    """Return a masked text frame's header announcing `size` payload bytes, and its mask."""
    if size < 65536:
        return bytes([0x81, 0x80 | 126]) + struct.pack('!H', size) + os.urandom(4)
    return bytes([0x81, 0x80 | 127]) + struct.pack('!Q', size) + os.urandom(4)


@pytest.mark.parametrize('size', [1024 + 1, 4096, 300 * 1024, 16 * 1024 * 1024, 2**40])
async def test_oversize_frames_get_a_status_frame_then_1009(memory_store: MemoryStore,
                                                             size: int) -> None:
    async with running_gateway(memory_store, max_frame_bytes=1024) as gw:
        token = gw.enrol('kiwi-001')
        raw = await RawClient.connect('127.0.0.1', gw.port)
        await raw.send(rf.auth('kiwi-001', token))
        assert (await raw.recv())['msg'] == 'authenticated'
        # The header and a little of the payload: the server must answer without the rest.
        raw.writer.write(header_of(size) + b'x' * min(size, 8192))
        await raw.writer.drain()
        error = await raw.recv(timeout=5)
        assert error['code'] == 'oversize_frame' and error['level'] == 'error'
        assert str(size) in error['msg']
        assert await raw.close_code(timeout=5) == 1009
        raw.close()
