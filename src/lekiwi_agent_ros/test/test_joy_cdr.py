"""joy_cdr reads what rclpy's own serializer writes, and refuses what it cannot read."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import serialize_message

from lekiwi_agent_ros.msg_types import Joy
from lekiwi_agent_ros.teleop.joy_cdr import JoyDecodeError, decode_joy

floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(sec=st.integers(-2**31, 2**31 - 1), nanosec=st.integers(0, 999_999_999),
       frame_id=st.text(alphabet=st.characters(codec='ascii', exclude_characters='\x00'),
                        max_size=13),
       axes=st.lists(floats32, max_size=9), buttons=st.lists(st.integers(-2**31, 2**31 - 1),
                                                             max_size=17))
def test_decodes_whatever_rclpy_serializes(sec, nanosec, frame_id, axes, buttons):
    msg = Joy()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = frame_id
    msg.axes, msg.buttons = axes, buttons
    fields = decode_joy(serialize_message(msg))
    assert (fields.stamp_sec, fields.stamp_nanosec) == (sec, nanosec)
    assert fields.buttons == tuple(buttons)
    assert len(fields.axes) == len(axes)
    for got, want in zip(fields.axes, msg.axes, strict=True):
        assert (math.isnan(got) and math.isnan(want)) or got == want


def test_refuses_truncated_and_foreign_buffers():
    data = serialize_message(Joy(axes=[0.5, -0.5], buttons=[1, 0, 1]))
    for cut in range(len(data)):
        with pytest.raises(JoyDecodeError):
            decode_joy(data[:cut])
    with pytest.raises(JoyDecodeError, match='little-endian'):
        decode_joy(b'\x00\x00' + data[2:])  # big-endian encapsulation
    # A count far beyond the buffer is refused, not allocated.
    forged = bytearray(data)
    forged[4 + 12 + 4:4 + 12 + 8] = (2**32 - 1).to_bytes(4, 'little')
    with pytest.raises(JoyDecodeError):
        decode_joy(bytes(forged))
