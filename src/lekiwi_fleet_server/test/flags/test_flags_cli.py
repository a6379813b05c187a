"""`lekiwi-fleet-server flags ...` in-process on both databases: every change an event by cli."""

from __future__ import annotations

import json

import pytest

from lekiwi_fleet_server.cli import main
from lekiwi_fleet_server.db.engine import make_engine
from lekiwi_fleet_server.store.flags import FlagStore

DEFINITION = {'kind': 'variant', 'default': 'websocket', 'variants': ['websocket', 'polling'],
              'rules': [{'value': 'polling', 'tags': ['lab'], 'staged': True}],
              'guards': [{'metric': 'uplink_latency_p99_ms', 'above': 500, 'action': 'set',
                          'value': 'polling'}]}


def test_flags_commands(database_url: str, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv('LEKIWI_DATABASE_URL', database_url)
    monkeypatch.setenv('USER', 'ops')
    assert main(['flags', 'set', 'uplink_transport', '--json', json.dumps(DEFINITION)]) == 0
    assert '5 % (step 0), version 1' in capsys.readouterr().out
    assert main(['flags', 'step', 'uplink_transport', 'advance']) == 0
    assert main(['flags', 'step', 'uplink_transport', 'set', '--percentage', '30']) == 1
    assert 'not one of the steps' in capsys.readouterr().err
    assert main(['flags', 'set', 'uplink_transport', '--json',
                 json.dumps({**DEFINITION, 'default': 'pigeon'})]) == 1
    assert 'variants' in capsys.readouterr().err
    assert main(['flags', 'plan', 'uplink_transport', 'set', '--soak-s', '60']) == 0
    assert main(['flags', 'plan', 'uplink_transport', 'pause']) == 0
    assert main(['flags', 'plan', 'uplink_transport', 'pause']) == 1
    assert main(['flags', 'step', 'ghost', 'advance']) == 1
    assert 'no flag ghost' in capsys.readouterr().err
    assert main(['flags', 'list']) == 0
    listed = capsys.readouterr().out
    assert 'uplink_transport\tvariant\t25 %' in listed and 'plan paused' in listed
    assert main(['flags', 'show', 'uplink_transport']) == 0
    shown = capsys.readouterr().out
    assert '"percentage": 25.0' in shown and 'migration paused' in shown
    assert main(['flags', 'delete', 'uplink_transport']) == 0
    engine = make_engine(database_url)
    try:
        events = FlagStore(engine).events('uplink_transport')
    finally:
        engine.dispose()
    assert [type(e.event).__name__ for e in events] == [
        'FlagCreated', 'FlagStepAdvanced', 'FlagPlanSet', 'FlagPlanPaused', 'FlagDeleted']
    assert {e.actor for e in events} == {events[0].actor} and events[0].actor.startswith('cli:')
