"""Unit tests of the sliding windows and input tests behind the teleop signals."""

import math

import pytest

from lekiwi_agent_ros.teleop.teleop_signals import (
    EventWindow,
    LevelWindow,
    joy_has_input,
    latency_level,
    stamp_is_fresh,
)


def test_event_window_counts_only_recent_events() -> None:
    window = EventWindow(0.5)
    for t in (0.0, 0.1, 0.2, 0.3):
        window.add(t)
    assert window.count(0.3) == 4
    assert window.count(0.55) == 3  # 0.0 left the window
    assert window.count(0.8) == 0  # (0.3, 0.8]: 0.3 is out as well
    assert window.window_s == 0.5


def test_event_window_drops_events_from_the_future_after_a_clock_step_back() -> None:
    window = EventWindow(1.0)
    window.add(10.0)
    window.add(10.5)
    assert window.count(10.2) == 1


def test_event_window_resize_and_clear() -> None:
    window = EventWindow(0.2)
    for t in (0.0, 0.5, 0.9):
        window.add(t)
    window.set_window(1.0)
    assert window.count(0.95) == 3  # (-0.05, 0.95] holds all three
    window.set_window(0.2)
    assert window.count(0.95) == 1
    window.clear()
    assert window.count(0.95) == 0


def test_level_window_time_weighted_mean() -> None:
    window = LevelWindow(1.0, 0.0, 0.0)
    window.set(10.0, 1.0)
    assert window.mean(10.0) == 0.0
    assert window.mean(10.5) == pytest.approx(0.5)
    assert window.mean(11.0) == pytest.approx(1.0)
    window.set(11.0, 0.0)
    assert window.mean(11.25) == pytest.approx(0.75)
    assert window.mean(12.5) == 0.0
    assert window.level == 0.0


def test_level_window_counts_time_before_history_as_zero() -> None:
    window = LevelWindow(2.0, 1.0, 5.0)
    assert window.mean(6.0) == pytest.approx(0.5)


def test_level_window_ignores_unchanged_level_and_zero_window() -> None:
    window = LevelWindow(0.0, 0.0, 0.0)
    window.set(1.0, 0.0)
    window.set(2.0, 0.7)
    assert window.mean(2.0) == 0.7
    window.set_window(1.0)
    assert window.mean(2.5) == pytest.approx(0.35)


def test_level_window_survives_a_clock_step_back() -> None:
    window = LevelWindow(1.0, 0.0, 0.0)
    window.set(5.0, 1.0)
    window.set(6.0, 0.5)
    window.set(4.0, 0.0)  # the clock went back: history after t=4 is dropped
    assert window.level == 0.0
    window.set(4.5, 1.0)
    assert window.mean(5.0) == pytest.approx(0.5)


def test_level_window_replaces_a_change_at_the_same_instant() -> None:
    window = LevelWindow(1.0, 0.0, 3.0)
    window.set(3.0, 1.0)
    assert window.mean(4.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ('axes', 'buttons', 'expected'),
    [
        ([0.0, 0.0, 0.0], [0, 0], False),
        ([0.05, -0.09], [], False),
        ([0.0, -0.5], [], True),
        ([], [0, 1], True),
        ([], [], False),
        ([math.nan, math.inf, -math.inf], [0], False),
        ([math.nan, 0.8], [], True),
    ],
)
def test_joy_has_input(axes: list[float], buttons: list[int], expected: bool) -> None:
    assert joy_has_input(axes, buttons, 0.1) is expected


def test_joy_has_input_measures_from_each_axis_rest() -> None:
    # Gamepad triggers rest at 1.0 in the ROS joy driver.
    assert not joy_has_input([0.0, 1.0, 1.0], [], 0.1, rest=(0.0, 1.0, 1.0))
    assert joy_has_input([0.0, 1.0, 0.2], [], 0.1, rest=(0.0, 1.0, 1.0))
    assert joy_has_input([0.0, 0.0, 0.0, 0.5], [], 0.1, rest=(0.0, 0.0))


def test_latency_level() -> None:
    assert latency_level(10.0, 250.0) == 1.0
    assert latency_level(250.0, 250.0) == 1.0
    assert latency_level(375.0, 250.0) == pytest.approx(0.5)
    assert latency_level(900.0, 250.0) == 0.0
    assert latency_level(math.nan, 250.0) == 0.0
    assert latency_level(-1.0, 250.0) == 0.0


def test_stamp_is_fresh() -> None:
    assert stamp_is_fresh(None, 0.5, 0.2)
    assert stamp_is_fresh(0.3, 0.5, 0.2)
    assert stamp_is_fresh(-0.1, 0.5, 0.2)
    assert not stamp_is_fresh(0.6, 0.5, 0.2)
    assert not stamp_is_fresh(-0.3, 0.5, 0.2)
    assert not stamp_is_fresh(math.nan, 0.5, 0.2)
    assert not stamp_is_fresh(1.7e9, 0.5, 0.2)  # a zero stamp seen from today
