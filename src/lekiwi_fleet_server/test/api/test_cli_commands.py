"""More of the command line in-process: tokens rotated and robots re-enrolled, the legacy
import's report, who the events say acted, the database flag."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import pytest

from lekiwi_fleet_server.cli import main
from lekiwi_fleet_server.domain.tokens import hash_token
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


@pytest.fixture
def fleet_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at a migrated SQLite database of the test's; return its URL."""
    url = f'sqlite:///{tmp_path / "fleet.db"}'
    monkeypatch.setenv('LEKIWI_DATABASE_URL', url)
    monkeypatch.setenv('LEKIWI_DATA_DIR', str(tmp_path))
    assert main(['migrate']) == 0
    return url


def _token_hash_and_revoked(url: str, robot_id: str) -> tuple[str, bool]:
    store = SqlFleetStore.open(url)
    try:
        credentials = store.robot_credentials(robot_id)
        assert credentials is not None
        return credentials.token_sha256, credentials.revoked
    finally:
        store.close()


def _actors(url: str, robot_id: str) -> list[tuple[str, str | None]]:
    store = SqlFleetStore.open(url)
    try:
        page = store.robot_timeline(robot_id, 0, 100)
        return [(e.type, e.metadata.get('actor')) for e in page.events]
    finally:
        store.close()


def test_a_rotated_token_replaces_the_old_one_and_a_revoked_robot_can_be_enrolled_again(
        fleet_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['enrol', 'kiwi-1']) == 0
    first = capsys.readouterr().out.strip()
    assert main(['rotate-token', 'kiwi-1']) == 0
    out = capsys.readouterr()
    second = out.out.strip()
    assert second.startswith('lkw_') and second != first
    assert 'new token of robot kiwi-1' in out.err and 'old one is refused' in out.err
    assert _token_hash_and_revoked(fleet_db, 'kiwi-1') == (hash_token(second), False)

    assert main(['rotate-token', 'ghost']) == 1
    assert capsys.readouterr().err.startswith('lekiwi-fleet-server rotate-token: ')

    assert main(['revoke', 'kiwi-1']) == 0
    assert main(['enrol', 'kiwi-1']) == 1  # revoked, not gone: a plain enrol is refused
    capsys.readouterr()
    assert main(['enrol', 'kiwi-1', '--reenrol']) == 0
    out = capsys.readouterr()
    third = out.out.strip()
    assert third.startswith('lkw_') and third not in (first, second)
    assert 'enrolled robot kiwi-1' in out.err
    assert _token_hash_and_revoked(fleet_db, 'kiwi-1') == (hash_token(third), False)
    actors = [a for _t, a in _actors(fleet_db, 'kiwi-1') if a is not None]
    assert actors and set(actors) == {f'cli:{getpass.getuser()}'}


def test_without_a_user_name_the_events_name_the_uid(
        fleet_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def nobody() -> str:
        raise KeyError('getpwuid(): uid not found')  # a bare container's uid

    monkeypatch.setattr(getpass, 'getuser', nobody)
    assert main(['enrol', 'kiwi-2']) == 0
    actors = {a for _t, a in _actors(fleet_db, 'kiwi-2') if a is not None}
    assert actors == {f'cli:uid-{os.getuid()}'}


def test_the_database_flag_overrides_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('LEKIWI_DATABASE_URL', f'sqlite:///{tmp_path / "from-env.db"}')
    monkeypatch.setenv('LEKIWI_DATA_DIR', str(tmp_path))
    flag_url = f'sqlite:///{tmp_path / "from-flag.db"}'
    assert main(['--database-url', flag_url, 'migrate']) == 0
    assert main(['--database-url', flag_url, 'enrol', 'kiwi-3']) == 0
    assert (tmp_path / 'from-flag.db').exists() and not (tmp_path / 'from-env.db').exists()
    assert _token_hash_and_revoked(flag_url, 'kiwi-3')[1] is False


def test_the_legacy_import_reports_revoked_robots_and_tokens_not_kept(
        fleet_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['enrol', 'kiwi-old']) == 0
    assert main(['revoke', 'kiwi-old']) == 0
    capsys.readouterr()
    inventory = tmp_path / 'fleet.csv'
    inventory.write_text('robot_id,host,user\n'
                         'kiwi-a,10.0.0.1,pi\n'
                         'kiwi-b,10.0.0.2,pi\n'
                         'kiwi-old,10.0.0.3,pi\n')
    assert main(['import-legacy', str(inventory)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith('enrolled 2, already enrolled 0, revoked (not polled) 1; '
                              'poller hosts changed: 2')
    assert '  kiwi-old: revoked, left out of the poller\n' in out.err
    assert 'tokens of the new robots were not kept: pass --tokens-out FILE' in out.err
    polled = json.loads((tmp_path / 'legacy-hosts.json').read_text())['hosts']
    assert sorted(h['robot_id'] for h in polled) == ['kiwi-a', 'kiwi-b']


def test_an_unreadable_or_bad_inventory_is_refused(
        fleet_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['import-legacy', str(tmp_path / 'missing.csv')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('lekiwi-fleet-server import-legacy: ') and 'missing.csv' in err
    bad = tmp_path / 'bad.csv'
    bad.write_text('robot_id,host\nkiwi-a,10.0.0.1\n')
    assert main(['import-legacy', str(bad)]) == 1
    assert 'missing column(s) user' in capsys.readouterr().err
    assert not (tmp_path / 'legacy-hosts.json').exists()
