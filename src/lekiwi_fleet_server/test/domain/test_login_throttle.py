"""LoginThrottle: free failures, doubling lockouts, per account and per address, bounded."""

from __future__ import annotations

from lekiwi_fleet_server.domain.login_throttle import LoginThrottle
from lekiwi_fleet_server.domain.roles import ROLES, is_role, role_allows


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_free_failures_then_doubling_lockouts_up_to_the_ceiling() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, free_failures=2, base_delay_s=1.0, max_delay_s=5.0)
    for _ in range(2):
        assert throttle.retry_after('ann', '10.0.0.1') == 0
        throttle.failed('ann', '10.0.0.1')
    assert throttle.retry_after('ann', '10.0.0.1') == 0  # two failures are free
    throttle.failed('ann', '10.0.0.1')
    assert throttle.retry_after('ann', '10.0.0.1') == 1.0
    clock.t += 1.0
    throttle.failed('ann', '10.0.0.1')
    assert throttle.retry_after('ann', '10.0.0.1') == 2.0
    for _ in range(5):
        throttle.failed('ann', '10.0.0.1')
    assert throttle.retry_after('ann', '10.0.0.1') == 5.0  # the ceiling


def test_account_and_address_are_throttled_apart() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, free_failures=1, base_delay_s=10.0)
    throttle.failed('ann', '10.0.0.1')
    throttle.failed('bob', '10.0.0.1')  # the address's second failure: locked
    assert throttle.retry_after('carl', '10.0.0.1') == 10.0  # any account from that address
    assert throttle.retry_after('carl', '10.0.0.2') == 0
    throttle.failed('ann', '10.0.0.3')  # ann's second failure, from elsewhere
    assert throttle.retry_after('ann', '10.0.0.9') == 10.0  # ann from any address
    throttle.succeeded('ann')
    assert throttle.retry_after('ann', '10.0.0.9') == 0
    assert throttle.retry_after('ann', '10.0.0.1') == 10.0  # the address stays slowed down


def test_old_failures_are_forgotten_and_keys_are_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, free_failures=1, base_delay_s=10.0, forget_after_s=60.0,
                             max_keys=4)
    throttle.failed('ann', 'a')
    throttle.failed('ann', 'a')
    assert throttle.retry_after('ann', 'a') == 10.0
    clock.t += 61
    assert throttle.retry_after('ann', 'a') == 0
    throttle.failed('ann', 'a')
    assert throttle.retry_after('ann', 'a') == 0  # counting starts again
    for i in range(10):
        throttle.failed(f'user{i}', f'addr{i}')
    assert throttle.retry_after('ann', 'a') == 0  # evicted, the oldest first


def test_roles_rank_viewer_operator_admin() -> None:
    assert ROLES == ('viewer', 'operator', 'admin')
    assert role_allows('admin', 'operator') and role_allows('operator', 'operator')
    assert not role_allows('viewer', 'operator') and not role_allows('operator', 'admin')
    assert not role_allows('root', 'viewer') and not is_role('root') and is_role('viewer')
