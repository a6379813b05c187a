"""Unit tests of the rosbridge v2 frames discovery sends and reads (ROSBRIDGE_PROTOCOL.md)."""

from __future__ import annotations

import json

import pytest

from lekiwi_fleet_server.discovery.rosbridge_v2 import (
    RosbridgeError,
    call_service_frame,
    decode,
    is_service_response_to,
    published,
    subscribe_frame,
)


def test_call_service_and_subscribe_carry_the_spec_fields() -> None:
    assert json.loads(call_service_frame('c1')) == {
        'op': 'call_service', 'id': 'c1', 'service': '/rosapi/get_time', 'args': []}
    assert json.loads(subscribe_frame('s1', '/fleet/heartbeat', 'pkg/msg/T', 5)) == {
        'op': 'subscribe', 'id': 's1', 'topic': '/fleet/heartbeat', 'type': 'pkg/msg/T',
        'queue_length': 5}
    assert 'type' not in json.loads(subscribe_frame('s2', '/x'))


def test_a_service_response_must_match_the_call_and_the_spec() -> None:
    ok = {'op': 'service_response', 'id': 'c1', 'service': '/s', 'result': False}
    assert is_service_response_to(ok, 'c1')
    assert not is_service_response_to(ok, 'c2')
    assert not is_service_response_to({**ok, 'result': 'false'}, 'c1')
    assert not is_service_response_to({**ok, 'service': 3}, 'c1')
    assert not is_service_response_to({**ok, 'op': 'status'}, 'c1')


@pytest.mark.parametrize('payload', ['{', '[1]', '{"op": 1}', b'\xff'])
def test_decode_refuses_what_is_not_a_rosbridge_frame(payload: str | bytes) -> None:
    with pytest.raises(RosbridgeError):
        decode(payload)


def test_published_reads_subscribed_topics_only() -> None:
    frame = {'op': 'publish', 'topic': '/fleet/heartbeat', 'msg': {'a': 1}}
    assert published(frame, ['fleet/heartbeat']) == ('fleet/heartbeat', {'a': 1})
    for bad in ({**frame, 'op': 'status'}, {**frame, 'topic': 5},
                {**frame, 'topic': '/other'}, {**frame, 'msg': [1]}):
        with pytest.raises(RosbridgeError):
            published(bad, ['fleet/heartbeat'])
