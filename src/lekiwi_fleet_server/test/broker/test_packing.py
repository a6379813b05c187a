"""Packed state readings (broker/packing.py): what a gateway packs, a writer unpacks whole."""

from __future__ import annotations

import orjson
import pytest

from lekiwi_fleet_server.broker import packing


def frame(i: int, size: int = 200) -> tuple[str, float, bytes]:
    body = {'op': 'publish', 'topic': 'fleet/heartbeat', 'boot_id': 'b', 'state_seq': i,
            'msg': {'pad': 'x' * size}}
    return f'kiwi-{i}', 1_764_190_000.0 + i / 7, orjson.dumps(body)


def test_frames_come_back_in_order_exactly_across_messages_under_the_limit() -> None:
    frames = [frame(i) for i in range(500)]
    bodies = list(packing.pack('gw-1', frames, 16 * 1024))
    assert len(bodies) > 1 and all(len(b) <= 16 * 1024 for b in bodies)
    out = []
    for body in bodies:
        gateway, chunk = packing.unpack(body)
        assert gateway == 'gw-1'
        out.extend(chunk)
    assert out == frames


def test_a_frame_larger_than_the_limit_travels_alone() -> None:
    big = frame(1, 40_000)
    bodies = list(packing.pack('gw', [frame(0), big, frame(2)], 16 * 1024))
    assert [len(packing.unpack(b)[1]) for b in bodies] == [1, 1, 1]


def test_only_state_space_frames_are_readings() -> None:
    assert packing.is_state_reading(frame(1)[2])
    history = orjson.dumps({'op': 'publish', 'topic': 'fleet/events', 'boot_id': 'b', 'seq': 4,
                            'msg': {'payload_json': '{"state_seq": 3}'}})
    assert not packing.is_state_reading(history)  # the quotes inside a string are escaped


@pytest.mark.parametrize('data', [b'', b'\x00\x00\x00\x10{}', b'\x00\x00\x00\x02{}',
                                  b'\x00\x00\x00\x15{"g":"x","f":[["r",1,9]]}ab'])
def test_a_malformed_message_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        packing.unpack(data)


def test_an_update_over_the_limit_goes_as_several_that_add_up_to_it() -> None:
    from lekiwi_fleet_server.broker.writer_side import split_update

    rows = [{'robot_id': f'kiwi-{i}', 'heartbeat_sequence': i, 'pad': 'x' * 100}
            for i in range(3000)]
    events = [{'type': 'RobotVersionChanged', 'n': i} for i in range(10)]
    whole = orjson.dumps({'type': 'update', 'at': 1.5, 'robots': rows, 'events': events})
    assert split_update(whole, len(whole)) == [whole]
    parts = [orjson.loads(p) for p in split_update(whole, 64 * 1024)]
    assert len(parts) > 1 and all(len(orjson.dumps(p)) <= 64 * 1024 for p in parts)
    assert all(p['type'] == 'update' and p['at'] == 1.5 for p in parts)
    assert [r for p in parts for r in p['robots']] == rows
    assert [e for p in parts for e in p['events']] == events
