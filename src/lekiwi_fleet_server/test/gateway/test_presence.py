"""PresenceTracker: connect, replace, close, silence timeout and ping-when-idle."""

from __future__ import annotations

import pytest

from lekiwi_fleet_server.domain.presence import PresenceTracker


def test_connect_and_close_give_online_then_offline() -> None:
    tracker = PresenceTracker(timeout_s=3, ping_interval_s=1)
    change, replaced = tracker.connected('kiwi', 'c1', now=100.0)
    assert change is not None and change.online and change.reason == 'connected'
    assert change.at == 100.0 and replaced is None
    assert tracker.is_online('kiwi') and tracker.current('kiwi') == 'c1' and len(tracker) == 1
    off = tracker.closed('kiwi', 'c1', now=101.0)
    assert off is not None and not off.online and off.reason == 'disconnected'
    assert not tracker.is_online('kiwi') and tracker.current('kiwi') is None
    assert tracker.closed('kiwi', 'c1', now=102.0) is None


def test_replacement_keeps_the_robot_online() -> None:
    tracker = PresenceTracker(timeout_s=3, ping_interval_s=1)
    tracker.connected('kiwi', 'c1', now=0.0)
    change, replaced = tracker.connected('kiwi', 'c2', now=1.0)
    assert change is None and replaced == 'c1'
    assert tracker.closed('kiwi', 'c1', now=1.1) is None  # the old one closing changes nothing
    assert tracker.is_online('kiwi')
    assert tracker.closed('kiwi', 'c2', now=2.0) is not None


def test_silent_robot_goes_offline_after_timeout_and_idle_one_is_pinged() -> None:
    tracker = PresenceTracker(timeout_s=3, ping_interval_s=1)
    tracker.connected('quiet', 'q', now=0.0)
    tracker.connected('chatty', 'c', now=0.0)
    assert tracker.sweep(now=0.5).to_ping == ()
    tracker.heard('chatty', now=1.0)
    assert tracker.sweep(now=1.2).to_ping == ()  # silent for 1.2 intervals only: not idle
    first = tracker.sweep(now=1.6)
    assert first.to_ping == ('q',) and first.silent == ()
    assert tracker.sweep(now=1.9).to_ping == ()  # pinged 0.3 s ago: not again yet
    # An interval later 'quiet' is pinged again, and 'chatty', silent since 1.0, is idle too.
    assert tracker.sweep(now=2.6).to_ping == ('q', 'c')
    tracker.heard('chatty', now=2.9)
    tracker.heard('nobody', now=2.9)  # unknown robots are ignored
    late = tracker.sweep(now=3.0)
    assert late.silent == (('quiet', 'q'),)
    assert [(c.robot_id, c.online, c.reason, c.at) for c in late.changes] == [
        ('quiet', False, 'timeout', 3.0)]
    assert not tracker.is_online('quiet') and tracker.is_online('chatty')


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        PresenceTracker(timeout_s=0, ping_interval_s=1)
