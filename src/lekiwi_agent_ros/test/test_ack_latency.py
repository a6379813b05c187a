"""The uplink's ack latency window (pure: a fake clock)."""

from __future__ import annotations

import json

import pytest

from lekiwi_agent_ros.uplink.ack_latency import AckLatency, LatencyConfig


def _publish(seq: int, boot: str = 'b00t0001') -> str:
    return (f'{{"op":"publish","topic":"fleet/events","boot_id":"{boot}","seq":{seq},'
            '"msg":{}}')


def _ack(low: int, high: int, boot: str = 'b00t0001') -> str:
    return json.dumps({'op': 'publish', 'topic': 'fleet/ack',
                       'msg': {'boot_id': boot, 'ranges': [[low, high]]}})


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_p99_of_the_window_against_the_threshold() -> None:
    clock = Clock()
    latency = AckLatency(LatencyConfig(threshold_s=0.5, window_s=10.0, min_samples=5), clock)
    for seq in range(1, 5):
        latency.sent(_publish(seq))
    clock.t += 0.1
    latency.received(_ack(1, 4))
    assert latency.p99() is None and latency.too_slow() is None  # 4 samples: no verdict
    latency.sent(_publish(5))
    latency.sent(_publish(5))  # a resend keeps the first send's time
    clock.t += 0.9
    latency.received(_ack(5, 5, boot='other-boot'))  # another boot's ack times nothing
    assert latency.p99() is None
    latency.received(_ack(5, 5))
    assert latency.p99() == pytest.approx(0.9)  # p99 of 5 samples is the largest
    assert 'p99 900 ms over 500 ms' in (latency.too_slow() or '')
    clock.t += 10.5  # the slow sample leaves the window
    assert latency.p99() is None and latency.too_slow() is None


def test_only_publish_frames_are_timed_and_bad_acks_are_no_samples() -> None:
    clock = Clock()
    latency = AckLatency(LatencyConfig(min_samples=1), clock)
    latency.sent('{"op":"service_response","id":"x"}')
    latency.sent(_publish(1))
    latency.received('{"op":"publish","topic":"fleet/ack","msg":{"ranges":"no"}}')
    latency.received(b'binary')
    assert latency.p99() is None
    latency.received(_ack(1, 1))
    assert latency.p99() == 0.0
    latency.reset()
    assert latency.p99() is None


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        LatencyConfig(threshold_s=0)
