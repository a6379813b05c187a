"""Issue 14: a stock rosbridge client (roslibpy 2.1) publishes with Topic.publish, no boot_id
or seq (at most once, keyed by the connection's boot id and a server-assigned seq), and the
exactly-once path (boot_id and seq of its own) still deduplicates, both through roslibpy."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from api_harness import BOOT, Api, event_frame

roslibpy = pytest.importorskip('roslibpy')


def connect(api: Api, robot_id: str, token: str) -> tuple[Any, list[dict[str, Any]],
                                                             threading.Event]:
    ros = roslibpy.Ros(host='127.0.0.1', port=api.services.gateway.port)
    ros.run(timeout=10)
    # The rosauth shape, sent in order with what follows (Ros.authenticate defers its frame).
    ros.send_on_ready(roslibpy.Message({'op': 'auth', 'mac': token, 'client': robot_id,
                                        'dest': 'fleet', 'rand': 'r', 't': 0, 'level': 'user',
                                        'end': 0}))
    acks: list[dict[str, Any]] = []
    arrived = threading.Event()

    def on_ack(message: dict[str, Any]) -> None:
        acks.append(message)
        arrived.set()

    roslibpy.Topic(ros, 'fleet/ack', 'lekiwi_fleet_msgs/msg/Ack').subscribe(on_ack)
    return ros, acks, arrived


def wait_acks(acks: list[dict[str, Any]], arrived: threading.Event, count: int) -> None:
    for _ in range(50):
        if sum(r[1] - r[0] + 1 for a in acks for r in a['ranges']) >= count:
            return
        arrived.wait(0.2)
        arrived.clear()
    raise AssertionError(f'acks {acks} do not cover {count} messages')


def stored_events(api: Api, robot_id: str) -> list[Any]:
    page = api.services.store.robot_timeline(robot_id, 0, 1000)
    return [e for e in page.events if e.type == 'RobotEventReported']


def test_topic_publish_without_boot_id_or_seq_is_stored_at_most_once(api: Api) -> None:
    token = api.enrol('kiwi-stock')
    ros, acks, arrived = connect(api, 'kiwi-stock', token)
    try:
        topic = roslibpy.Topic(ros, 'fleet/events', 'lekiwi_fleet_msgs/msg/FleetEvent')
        for n in (1, 2, 3):
            msg = event_frame(n, 'kiwi-stock')['msg']
            msg['boot_id'] = 'the-robots-own-boot'  # not the connection's: not checked here
            topic.publish(roslibpy.Message(msg))
        wait_acks(acks, arrived, 3)
        boots = {a['boot_id'] for a in acks}
        assert len(boots) == 1 and next(iter(boots)).startswith('conn-')
        assert sorted(s for a in acks for r in a['ranges'] for s in range(r[0], r[1] + 1)) == \
            [1, 2, 3]
        assert [e.metadata['seq'] for e in stored_events(api, 'kiwi-stock')] == [1, 2, 3]
    finally:
        ros.close()


def test_publish_with_boot_id_and_seq_is_exactly_once_through_roslibpy(api: Api) -> None:
    token = api.enrol('kiwi-exact')
    ros, acks, arrived = connect(api, 'kiwi-exact', token)
    try:
        for count in (1, 2):  # the second is a resend after a lost ack: acked, stored once
            ros.send_on_ready(roslibpy.Message(event_frame(7, 'kiwi-exact')))
            wait_acks(acks, arrived, count)
        assert all(a == {'boot_id': BOOT, 'ranges': [[7, 7]]} for a in acks)
        assert [e.metadata['seq'] for e in stored_events(api, 'kiwi-exact')] == [7]
    finally:
        ros.close()
