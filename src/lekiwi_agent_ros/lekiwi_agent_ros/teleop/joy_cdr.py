"""Read the fields the teleop detector needs straight from a serialized `sensor_msgs/Joy`.

The monitor takes joystick messages raw (see polled_input.py): building a Python `Joy` (with
its Header and Time objects) costs about twice as much as taking the bytes, 30 times a second.
A Joy in plain CDR (the encoding ROS 2's DDS layers use) is a header stamp, a frame id string,
then the `axes` (float32) and `buttons` (int32) sequences, each 4-byte aligned, so
`struct` reads it in a few microseconds. Anything else (big-endian data, another encoding,
a truncated buffer) raises `JoyDecodeError`: the caller falls back to rclpy's deserializer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_CDR_LE = b'\x00\x01'  # encapsulation: plain CDR, little endian
_U32 = struct.Struct('<I')
_STAMP = struct.Struct('<iI')


class JoyDecodeError(ValueError):
    """The buffer is not a little-endian plain-CDR sensor_msgs/Joy."""


@dataclass(frozen=True, slots=True)
class JoyFields:
    """The parts of a Joy message the detector reads."""

    stamp_sec: int
    stamp_nanosec: int
    axes: tuple[float, ...]
    buttons: tuple[int, ...]


def decode_joy(data: bytes) -> JoyFields:
    """Decode a serialized Joy, or raise JoyDecodeError."""
    if len(data) < 4 or data[:2] != _CDR_LE:
        raise JoyDecodeError('not little-endian plain CDR')
    body = memoryview(data)[4:]  # CDR alignment counts from after the encapsulation header
    try:
        sec, nanosec = _STAMP.unpack_from(body, 0)
        (frame_len,) = _U32.unpack_from(body, 8)
        offset = _align4(12 + frame_len)
        (n_axes,) = _U32.unpack_from(body, offset)
        offset += 4
        axes = struct.unpack_from(f'<{n_axes}f', body, offset)
        offset = _align4(offset + 4 * n_axes)
        (n_buttons,) = _U32.unpack_from(body, offset)
        buttons = struct.unpack_from(f'<{n_buttons}i', body, offset + 4)
    except (struct.error, MemoryError, OverflowError) as exc:
        raise JoyDecodeError(f'truncated or malformed Joy: {exc}') from exc
    return JoyFields(sec, nanosec, axes, buttons)


def _align4(offset: int) -> int:
    return (offset + 3) & ~3
