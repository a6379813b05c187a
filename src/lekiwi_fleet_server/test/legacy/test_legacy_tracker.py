"""What the legacy source makes of poll results (pure)."""

from __future__ import annotations

import itertools

from lekiwi_fleet_server.legacy.inventory import LegacyHost
from lekiwi_fleet_server.legacy.poller import PollResult
from lekiwi_fleet_server.legacy.status import parse_status
from lekiwi_fleet_server.legacy.tracker import AGENT_SILENT_EVENT, LegacyTracker, Presence

A, B = LegacyHost('a', '127.0.0.2', 'root'), LegacyHost('b', '127.0.0.3', 'root')


def ok(host: LegacyHost) -> PollResult:
    return PollResult(host, parse_status('@@lekiwi:uptime\n5.0 1.0\n'), None, 0.01)


def failed(host: LegacyHost) -> PollResult:
    return PollResult(host, None, 'connection refused', 0.01)


def tracker() -> LegacyTracker:
    counter = itertools.count()
    return LegacyTracker(lambda: f'legacy-{next(counter):016x}')


def test_answers_are_heartbeats_with_increasing_seq_and_one_online_change() -> None:
    t = tracker()
    first = t.on_results([ok(A), ok(B)], lambda _r: False, now=10.0)
    assert first.presence == [Presence('a', True, 'legacy_poll'), Presence('b', True,
                                                                            'legacy_poll')]
    assert [(f.robot_id, f.topic, f.seq) for f in first.frames] == [
        ('a', 'fleet/heartbeat', 1), ('b', 'fleet/heartbeat', 1)]
    assert first.frames[0].boot_id != first.frames[1].boot_id
    second = t.on_results([ok(A)], lambda _r: False, now=20.0)
    assert second.presence == [] and [f.seq for f in second.frames] == [2]
    assert second.frames[0].boot_id == first.frames[0].boot_id
    assert second.frames[0].msg['sequence'] == 2


def test_a_robot_that_stops_answering_goes_offline_once_and_comes_back() -> None:
    t = tracker()
    t.on_results([ok(A)], lambda _r: False, now=1.0)
    down = t.on_results([failed(A)], lambda _r: False, now=2.0)
    assert down.presence == [Presence('a', False, 'legacy_unreachable')] and down.frames == []
    still = t.on_results([failed(A)], lambda _r: False, now=3.0)
    assert still.presence == [] and still.frames == []
    back = t.on_results([ok(A)], lambda _r: False, now=4.0)
    assert back.presence == [Presence('a', True, 'legacy_poll')] and back.frames[0].seq == 2


def test_never_answering_robot_changes_nothing() -> None:
    out = tracker().on_results([failed(A)], lambda _r: False, now=1.0)
    assert out.presence == [] and out.frames == [] and out.flagged == []


def test_the_poller_stops_for_robots_whose_agent_is_connected() -> None:
    t = tracker()
    assert t.due([A, B], lambda r: r == 'b') == [A]


def test_a_silent_agent_is_flagged_once_per_silence_without_heartbeats() -> None:
    t = tracker()
    has_agent = {'a'}.__contains__
    out = t.on_results([ok(A)], has_agent, now=5.0)
    assert out.flagged == ['a'] and out.presence == []
    (event,) = out.frames
    assert event.topic == 'fleet/events' and event.msg['event_type'] == AGENT_SILENT_EVENT
    assert event.msg['severity'] == 2 and '127.0.0.2' in event.msg['payload_json']
    assert t.on_results([ok(A)], has_agent, now=6.0).frames == []  # once, not per poll
    t.due([A], lambda _r: True)  # the agent dials in again
    again = t.on_results([ok(A)], has_agent, now=7.0)
    assert again.flagged == ['a'] and again.frames[0].seq == 2


def test_forget_drops_robots_left_out_of_the_inventory() -> None:
    t = tracker()
    t.on_results([ok(A), ok(B)], lambda _r: False, now=1.0)
    t.forget(['a'])
    out = t.on_results([ok(B)], lambda _r: False, now=2.0)
    assert out.presence == [Presence('b', True, 'legacy_poll')] and out.frames[0].seq == 1


def test_a_poll_of_a_robot_whose_agent_dialled_in_meanwhile_is_dropped() -> None:
    t = tracker()
    (due,) = t.due([A], lambda _r: False)
    out = t.on_results([ok(due)], lambda _r: True, now=1.0, connected=lambda _r: True)
    assert out.frames == [] and out.flagged == [] and out.presence == []
