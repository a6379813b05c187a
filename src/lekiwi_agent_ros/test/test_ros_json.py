"""ROS message <-> rosbridge JSON: encoding rules, round trips and clear errors on bad input."""

import array
import json
import math

import pytest
from builtin_interfaces.msg import Time
from service_msgs.msg import ServiceEventInfo
from std_msgs.msg import ByteMultiArray, Char, String

from lekiwi_agent_ros.ros_json import (
    FieldType,
    RosJsonError,
    from_json,
    message_class,
    parse_field_type,
    shortest_float32,
    to_json,
)
from lekiwi_fleet_msgs.action import Deploy
from lekiwi_fleet_msgs.msg import FleetCommand, RobotHeartbeat, TelemetryDelta, TeleopStatus


def test_parse_field_types() -> None:
    assert parse_field_type('float') == FieldType('float')
    assert parse_field_type('std_msgs/Header').is_message
    assert parse_field_type('sequence<double>') == FieldType('double', 'sequence')
    assert parse_field_type('sequence<int32, 5>') == FieldType('int32', 'sequence', 5)
    assert parse_field_type('uint8[16]') == FieldType('uint8', 'array', 16)
    assert parse_field_type('string<255>') == FieldType('string', string_bound=255)
    assert parse_field_type('string<=10') == FieldType('string', string_bound=10)
    assert parse_field_type('sequence<string<4>, 3>') == FieldType('string', 'sequence', 3, 4)
    assert parse_field_type('sequence<wstring<4>>') == FieldType('wstring', 'sequence', None, 4)
    assert parse_field_type('sequence<rcl_interfaces/IntegerRange, 1>').is_message


def test_heartbeat_encodes_as_rosbridge_json() -> None:
    hb = RobotHeartbeat(robot_id='kiwi-001', boot_id='abc', sequence=7, state=3)
    hb.header.stamp = Time(sec=1764190000, nanosec=5)
    hb.teleop_score = 0.7
    hb.resources.cpu_percent = math.nan
    hb.resources.uptime_s = math.inf
    hb.resources.memory_total_bytes = 2**64 - 1
    data = to_json(hb)
    assert data['header'] == {'stamp': {'sec': 1764190000, 'nanosec': 5}, 'frame_id': ''}
    assert data['sequence'] == 7 and data['state'] == 3 and data['teleop_active'] is False
    # float32 0.7 is stored as 0.699999988...; the shortest digits that keep it are sent.
    assert data['teleop_score'] == 0.7
    assert data['resources']['cpu_percent'] is None
    assert data['resources']['uptime_s'] is None
    assert data['resources']['memory_total_bytes'] == 2**64 - 1
    # strict JSON: no NaN or Infinity tokens
    json.dumps(data, allow_nan=False)


def test_shortest_float32_keeps_the_float32_value() -> None:
    import struct

    for value in (0.1, 12.3, 1e-7, 3.4e38, -2.5, 1 / 3, 16777217.0):
        f32 = struct.unpack('<f', struct.pack('<f', value))[0]
        short = shortest_float32(f32)
        assert short is not None
        assert struct.unpack('<f', struct.pack('<f', short))[0] == f32
        assert len(repr(short)) <= len(repr(f32))
    assert shortest_float32(math.nan) is None
    # a value that is not a float32 at all is returned unchanged
    assert shortest_float32(0.1) == 0.1


def test_round_trip_of_every_fleet_message_kind() -> None:
    status = TeleopStatus(active=True, score=0.25, webrtc_peers=2)
    status.active_since = Time(sec=10, nanosec=20)
    delta = TelemetryDelta(
        robot_id='r',
        sequence=3,
        base_sequence=1,
        field_names=['cpu_percent', 'uptime_s'],
        field_values=[1.5, math.nan],
    )
    for msg in (status, delta, RobotHeartbeat(robot_id='x', sequence=2**63)):
        data = json.loads(json.dumps(to_json(msg), allow_nan=False))
        back = from_json(type(msg), data)
        assert to_json(back) == to_json(msg)
    back = from_json(TelemetryDelta, to_json(delta))
    assert math.isnan(back.field_values[1])


def test_bytes_fields_travel_as_base64() -> None:
    info = ServiceEventInfo()
    info.client_gid = list(range(16))
    data = to_json(info)
    assert isinstance(data['client_gid'], str)
    assert list(from_json(ServiceEventInfo, data).client_gid) == list(range(16))
    blob = ByteMultiArray(data=[b'a', b'b'])
    encoded = to_json(blob)
    assert encoded['data'] == 'YWI='
    assert from_json(ByteMultiArray, encoded).data == [b'a', b'b']
    assert from_json(ByteMultiArray, {'data': [97, 98]}).data == [b'a', b'b']
    assert from_json(Char, {'data': 65}).data == 65


def test_uint8_sequence_from_list_or_base64() -> None:
    from sensor_msgs.msg import CompressedImage

    img = from_json(CompressedImage, {'format': 'jpeg', 'data': [1, 2, 255]})
    assert isinstance(img.data, array.array) and list(img.data) == [1, 2, 255]
    assert to_json(img)['data'] == 'AQL/'
    assert list(from_json(CompressedImage, {'data': 'AQL/'}).data) == [1, 2, 255]


def test_command_and_goal_from_json() -> None:
    args = {'command_id': 'c1', 'command_type': 'ping', 'payload_json': '{}'}
    cmd = from_json(FleetCommand, args)
    assert cmd.command_id == 'c1' and cmd.header.frame_id == ''
    goal = from_json(Deploy.Goal, {'deployment_id': 'd', 'health_timeout_s': 30})
    assert goal.health_timeout_s == 30.0 and goal.release_version == ''


@pytest.mark.parametrize(
    ('cls', 'data', 'message'),
    [
        (FleetCommand, ['not', 'an', 'object'], 'expected an object, got an array'),
        (FleetCommand, {'command_id': 5}, 'FleetCommand.command_id: expected a string'),
        (FleetCommand, {'bogus': 1, 'other': 2}, 'unknown field(s) bogus, other'),
        (TeleopStatus, {'active': 1}, 'expected true or false'),
        (TeleopStatus, {'webrtc_peers': -1}, 'out of range 0..65535'),
        (TeleopStatus, {'webrtc_peers': 1.5}, 'expected an integer'),
        (TeleopStatus, {'webrtc_peers': True}, 'expected an integer'),
        (TeleopStatus, {'score': 'high'}, 'expected a number, got a string'),
        (TeleopStatus, {'score': True}, 'expected a number, got a boolean'),
        (TeleopStatus, {'score': 1e39}, 'out of float32 range'),
        (TeleopStatus, {'header': {'stamp': {'sec': 'x'}}}, 'TeleopStatus.header.stamp.sec'),
        (TeleopStatus, {'header': 3}, 'expected an object, got the number 3'),
        (TelemetryDelta, {'field_values': 'abc'}, 'expected an array, got a string'),
        (TelemetryDelta, {'field_values': [1, None, 'x']}, 'field_values[2]'),
        (ServiceEventInfo, {'client_gid': [1, 2]}, 'expected 16 items, got 2'),
        (ServiceEventInfo, {'client_gid': '***'}, 'not valid base64'),
        (String, {'data': None}, 'expected a string, got null'),
    ],
)
def test_bad_json_is_refused_with_a_clear_error(cls: type, data: object, message: str) -> None:
    with pytest.raises(RosJsonError) as info:
        from_json(cls, data)
    assert message in str(info.value)


class _Bounded:
    """A stand-in message class with bounded fields (no fleet message has one)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.tag = ''

    @staticmethod
    def get_fields_and_field_types() -> dict[str, str]:
        return {'names': 'sequence<string<3>, 2>', 'tag': 'string<2>', 'odd': 'long long'}


def test_bounded_fields_are_checked() -> None:
    assert from_json(_Bounded, {'names': ['abc', 'd'], 'tag': 'ok'}).names == ['abc', 'd']
    with pytest.raises(RosJsonError, match=r'_Bounded.tag: at most 2 characters'):
        from_json(_Bounded, {'tag': 'abc'})
    with pytest.raises(RosJsonError, match=r'names\[0\]: at most 3 characters'):
        from_json(_Bounded, {'names': ['abcd']})
    with pytest.raises(RosJsonError, match='at most 2 items, got 3'):
        from_json(_Bounded, {'names': ['a', 'b', 'c']})
    with pytest.raises(RosJsonError, match='unsupported field type'):
        from_json(_Bounded, {'odd': 1})


def test_message_class_lookup() -> None:
    assert message_class('std_msgs/String') is String
    assert message_class('lekiwi_fleet_msgs/msg/TeleopStatus') is TeleopStatus
    with pytest.raises(RosJsonError, match='unknown message type'):
        message_class('std_msgs/Nope')
    with pytest.raises(RosJsonError, match='not a message type name'):
        message_class('nonsense')
    with pytest.raises(RosJsonError):
        from_json(Deploy.Goal, {'deployment_id': 'd', 'health_timeout_s': [1]})
