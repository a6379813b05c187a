"""The command line in-process: migrate, enrol, revoke, create-operator, settings errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lekiwi_fleet_server.cli import main, raise_nofile_limit
from lekiwi_fleet_server.domain.tokens import hash_token
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


def test_admin_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    url = f'sqlite:///{tmp_path / "fleet.db"}'
    monkeypatch.setenv('LEKIWI_DATABASE_URL', url)
    assert main(['migrate']) == 0
    assert 'migrated' in capsys.readouterr().out
    assert main(['enrol', 'kiwi-9', '--tag', 'lab', '--tag', 'eu']) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith('lkw_') and 'shown once' in out.err
    assert main(['create-operator', 'ada', '--role', 'viewer']) == 0
    operator_token = capsys.readouterr().out.strip()
    assert main(['enrol', 'kiwi-9']) == 1
    assert 'RobotAlreadyEnrolled' in capsys.readouterr().err
    assert main(['enrol', 'bad id']) == 1
    assert main(['revoke', 'kiwi-9']) == 0
    assert main(['revoke', 'ghost']) == 1
    store = SqlFleetStore.open(url)
    try:
        credentials = store.robot_credentials('kiwi-9')
        assert credentials is not None and credentials.revoked
        assert credentials.token_sha256 == hash_token(token)
        operator = store.operator_by_token(hash_token(operator_token))
        assert operator is not None and operator.role == 'viewer'
    finally:
        store.close()


def test_invalid_settings_exit_2(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv('LEKIWI_PRESENCE_TIMEOUT_S', '0.5')
    assert main(['migrate']) == 2
    assert 'presence_timeout_s' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['create-operator', 'x', '--role', 'root'])


def test_nofile_limit_is_raised_to_hard() -> None:
    import resource
    assert raise_nofile_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_module_entry_point_runs_the_cli(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import runpy
    monkeypatch.setattr('sys.argv', ['lekiwi-fleet-server', '--help'])
    with pytest.raises(SystemExit) as info:
        runpy.run_module('lekiwi_fleet_server', run_name='__main__')
    assert info.value.code == 0
    assert 'create-operator' in capsys.readouterr().out
