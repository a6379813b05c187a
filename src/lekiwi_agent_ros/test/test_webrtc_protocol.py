"""Unit tests of the operator data-channel messages and the round-trip tracker."""

import json
import math

import pytest

from lekiwi_agent_ros.webrtc.webrtc_protocol import (
    MAX_AXES,
    MAX_MESSAGE_BYTES,
    CommandAck,
    JoyCommand,
    OperatorPing,
    Pong,
    ProtocolError,
    RoundTripTracker,
    encode,
    parse_message,
)


def test_parse_joy_command() -> None:
    message = parse_message('{"type": "joy", "axes": [0.5, -1, 0], "buttons": [0, 1]}')
    assert message == JoyCommand((0.5, -1.0, 0.0), (0, 1))
    assert parse_message(b'{"type": "joy"}') == JoyCommand((), ())
    assert parse_message('{"type": "joy", "id": 41}') == JoyCommand((), (), 41)
    assert parse_message('{"type": "joy", "id": "c-7"}').command_id == 'c-7'


def test_parse_command_acks() -> None:
    assert parse_message('{"type": "ack", "seq": 3}') == CommandAck(3)


def test_parse_pings_and_pongs() -> None:
    assert parse_message('{"type": "pong", "id": 7}') == Pong(7)
    assert parse_message('{"type": "ping", "id": "abc"}') == OperatorPing('abc')
    assert parse_message('{"type": "ping"}') == OperatorPing(0)


@pytest.mark.parametrize(
    ('raw', 'reason'),
    [
        ('not json', 'not JSON'),
        (b'\xff\xfe', 'not JSON'),
        ('[1, 2]', 'JSON object'),
        ('{"type": "fly"}', 'unknown message type'),
        ('{"axes": []}', 'unknown message type'),
        ('{"type": "joy", "axes": [NaN]}', 'finite'),
        ('{"type": "joy", "axes": [1.5]}', 'within -1..1'),
        ('{"type": "joy", "axes": ["a"]}', 'finite'),
        ('{"type": "joy", "axes": [true]}', 'finite'),
        ('{"type": "joy", "axes": 0.5}', 'list'),
        ('{"type": "joy", "axes": [' + ','.join(['0'] * (MAX_AXES + 1)) + ']}', 'at most'),
        ('{"type": "joy", "buttons": [-1]}', 'non-negative'),
        ('{"type": "joy", "buttons": [0.5]}', 'non-negative'),
        ('{"type": "joy", "buttons": [4294967296]}', 'non-negative'),
        ('{"type": "joy", "buttons": {}}', 'list'),
        ('{"type": "pong", "id": "x"}', 'integer'),
        ('{"type": "pong", "id": true}', 'integer'),
        ('{"type": "ping", "id": [1]}', 'ping id'),
        ('{"type": "joy", "id": {}}', 'joy id'),
        ('{"type": "joy", "id": "' + 'x' * 65 + '"}', 'joy id'),
        ('{"type": "ack"}', 'ack seq'),
        ('{"type": "ack", "seq": "1"}', 'ack seq'),
        ('{"type": "ack", "seq": false}', 'ack seq'),
        ('{"type": "ping", "id": "' + 'x' * 65 + '"}', 'ping id'),
        (' ' * (MAX_MESSAGE_BYTES + 1), 'larger than'),
    ],
)
def test_bad_messages_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_message(raw)


def test_encode() -> None:
    assert json.loads(encode('pong', id='x')) == {'type': 'pong', 'id': 'x'}


def test_round_trip_tracker_times_pongs_on_its_own_clock() -> None:
    t = [10.0]
    tracker = RoundTripTracker(lambda: t[0], max_outstanding=2)
    assert math.isnan(tracker.last_rtt_ms)
    first = json.loads(tracker.next_ping())
    assert first == {'type': 'ping', 'id': 1}
    t[0] = 10.05
    assert tracker.on_pong(Pong(1)) == pytest.approx(50.0)
    assert tracker.on_pong(Pong(1)) is None  # answered twice
    assert tracker.on_pong(Pong(99)) is None  # never sent
    for _ in range(3):
        tracker.next_ping()
    assert tracker.on_pong(Pong(2)) is None  # forgotten: only 2 outstanding are kept
    t[0] = 10.1
    assert tracker.on_pong(Pong(4)) == pytest.approx(50.0)
    assert tracker.last_rtt_ms == pytest.approx(50.0)
