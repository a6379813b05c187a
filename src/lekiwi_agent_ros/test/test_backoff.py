"""Backoff: exponential growth, full jitter, cap and reset after a stable connection."""

import random

import pytest

from lekiwi_agent_ros.uplink.backoff import Backoff, BackoffConfig


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_ceiling_doubles_up_to_the_cap_and_delays_use_full_jitter() -> None:
    backoff = Backoff(BackoffConfig(base_s=0.5, cap_s=4.0), random=lambda: 1.0, now=Clock())
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    low = Backoff(BackoffConfig(base_s=0.5, cap_s=4.0), random=lambda: 0.0, now=Clock())
    assert low.next_delay() == 0.0
    rng = random.Random(7)
    jittered = Backoff(BackoffConfig(base_s=1.0, cap_s=30.0), random=rng.random, now=Clock())
    delays = [jittered.next_delay() for _ in range(200)]
    assert all(0.0 <= d <= 30.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 150  # jittered, not lockstep


def test_very_many_failures_do_not_overflow() -> None:
    backoff = Backoff(BackoffConfig(), random=lambda: 1.0, now=Clock())
    for _ in range(5000):
        backoff.next_delay()
    assert backoff.next_delay() == 10.0 and backoff.failures == 5001  # the default cap


def test_only_a_stable_connection_resets_the_delays() -> None:
    clock = Clock()
    config = BackoffConfig(base_s=1.0, cap_s=60.0, stable_after_s=10.0)
    backoff = Backoff(config, lambda: 1.0, clock)
    backoff.next_delay()
    backoff.next_delay()
    backoff.connected()
    clock.t += 3.0  # authenticated, then dropped at once: still failing
    backoff.disconnected()
    assert backoff.ceiling() == 4.0
    backoff.connected()
    clock.t += 10.0
    backoff.disconnected()
    assert backoff.failures == 0 and backoff.ceiling() == 1.0
    backoff.disconnected()  # a second close without a connection changes nothing
    assert backoff.failures == 0


@pytest.mark.parametrize(
    'kwargs', [{'base_s': 0.0}, {'base_s': 5.0, 'cap_s': 1.0}, {'stable_after_s': -1.0}]
)
def test_invalid_configuration_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffConfig(**kwargs)


def test_a_server_restart_starts_the_delays_again() -> None:
    backoff = Backoff(BackoffConfig(base_s=0.5, cap_s=10.0), lambda: 1.0, Clock())
    for _ in range(8):
        backoff.next_delay()
    assert backoff.ceiling() == 10.0
    backoff.connected()
    backoff.server_restarting()  # the server closed with 1012: it will be back soon
    backoff.disconnected()
    assert [backoff.next_delay() for _ in range(3)] == [0.5, 1.0, 2.0]
