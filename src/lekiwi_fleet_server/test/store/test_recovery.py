"""`rebuild-projections` and `verify` on a populated store, through the command line."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from store_scenario import dump, run_scenario

from lekiwi_fleet_server.cli import main
from lekiwi_fleet_server.db.schema import events, robot_sequences, timeline
from lekiwi_fleet_server.store import recovery
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


@pytest.fixture
def populated(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    store = SqlFleetStore.open(database_url)
    try:
        run_scenario(store)
    finally:
        store.close()
    monkeypatch.setenv('LEKIWI_DATABASE_URL', database_url)
    return database_url


def test_verify_passes_and_changes_nothing(populated: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    engine = sa.create_engine(populated.replace('postgresql://', 'postgresql+psycopg://'))
    before = dump(engine)
    assert main(['verify']) == 0
    out = capsys.readouterr()
    assert 'verify: OK' in out.out and 'read model timeline' in out.out
    assert 'verify:' in out.err and 'events (100 %' in out.err  # progress on stderr
    assert dump(engine) == before
    engine.dispose()


def test_rebuild_projections_yields_the_same_read_models(
        populated: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = sa.create_engine(populated.replace('postgresql://', 'postgresql+psycopg://'))
    before = dump(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(timeline))  # a lost read model
    assert main(['rebuild-projections']) == 0
    out = capsys.readouterr()
    assert 'rebuilt projections from' in out.out and 'rebuild:' in out.err
    assert dump(engine) == before
    engine.dispose()


def test_verify_finds_a_tampered_read_model_and_missing_sequences(
        populated: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = sa.create_engine(populated.replace('postgresql://', 'postgresql+psycopg://'))
    with engine.begin() as conn:
        first = conn.execute(sa.select(sa.func.min(timeline.c.position))).scalar_one()
        conn.execute(sa.update(timeline).where(timeline.c.position == first)
                     .values(summary='edited by hand'))
        conn.execute(sa.update(robot_sequences).where(robot_sequences.c.robot_id == 'alpha')
                     .values(ranges=[[1, 2], [5, 6]]))
    assert main(['verify']) == 1
    out = capsys.readouterr().out
    assert 'read model timeline' in out and 'DIFFERS' in out
    assert 'alpha boot boot0001: missing 3..4' in out
    assert 'events whose seq robot_sequences lacks' in out
    assert 'verify: FAILED' in out
    report = recovery.verify(engine)
    assert report.mismatched_tables == ['timeline'] and report.sequence_gap_count == 1
    engine.dispose()


def test_verify_finds_a_stream_version_gap(populated: str) -> None:
    engine = sa.create_engine(populated.replace('postgresql://', 'postgresql+psycopg://'))
    with engine.begin() as conn:
        conn.execute(sa.delete(events).where(events.c.stream_id == 'robot-bravo',
                                             events.c.version == 2))
    report = recovery.verify(engine)
    assert not report.ok
    assert report.stream_version_gaps and report.stream_version_gaps[0].startswith(
        'robot-bravo')
    engine.dispose()


def test_recovery_commands_report_store_errors(tmp_path: object,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv('LEKIWI_DATABASE_URL', f'sqlite:///{tmp_path}/empty.db')
    assert main(['verify']) == 1  # no tables: never migrated
    assert 'lekiwi-fleet-server verify:' in capsys.readouterr().err
