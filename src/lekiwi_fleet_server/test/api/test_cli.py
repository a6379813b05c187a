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


def test_built_server_serves_api_and_gateway(tmp_path: Path) -> None:
    import asyncio
    import gc
    import io
    import re
    import sys
    import threading

    import httpx

    from lekiwi_fleet_server.cli import build_server, tune_runtime
    from lekiwi_fleet_server.settings import Settings

    out = io.StringIO()
    settings = Settings(data_dir=tmp_path, api_port=0, gateway_port=0, log_level='warning')
    server, sock = build_server(settings, tune=False, out=out)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        for _ in range(200):
            if 'ready' in out.getvalue() and server.started:
                break
            threading.Event().wait(0.025)
        match = re.search(r'api=(\S+) gateway=(\S+)', out.getvalue())
        assert match, out.getvalue()
        assert httpx.get(f'{match.group(1)}/healthz', timeout=5).json() == {'status': 'ok'}
        assert match.group(2).startswith('ws://127.0.0.1:')
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    try:
        tune_runtime()
        assert gc.get_threshold()[0] == 50_000 and sys.getswitchinterval() == 0.001
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)


def test_presence_timeout_must_leave_room_for_a_ping(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # Pinged after 1.5 silent intervals (1.5 s), a robot must not be dropped first (at 1.5 s).
    monkeypatch.setenv('LEKIWI_PRESENCE_TIMEOUT_S', '1.5')
    assert main(['migrate']) == 2
    assert '1.5 x ping_interval_s' in capsys.readouterr().err


def test_create_account_reads_the_password_from_stdin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from lekiwi_fleet_server.store.accounts import SqlAccountStore

    url = f'sqlite:///{tmp_path / "fleet.db"}'
    monkeypatch.setenv('LEKIWI_DATABASE_URL', url)
    monkeypatch.setattr('sys.stdin', io.StringIO('a long password\n'))
    assert main(['create-account', 'olga', '--role', 'operator']) == 0
    assert 'created operator account olga' in capsys.readouterr().out
    monkeypatch.setattr('sys.stdin', io.StringIO('short\n'))
    assert main(['create-account', 'pat', '--role', 'viewer']) == 1
    assert 'password must have' in capsys.readouterr().err
    monkeypatch.setattr('sys.stdin', io.StringIO('a long password\n'))
    assert main(['create-account', 'olga', '--role', 'viewer']) == 1
    assert 'AccountExists' in capsys.readouterr().err
    store = SqlAccountStore.open(url)
    try:
        found = store.account_with_hash('olga')
        assert found is not None and found[0].role == 'operator'
        assert found[1].startswith('$argon2id$') and 'a long password' not in found[1]
    finally:
        store.close()


def test_api_refuses_connections_until_it_is_ready(tmp_path: Path) -> None:
    import asyncio
    import io
    import socket
    import threading
    import time

    import httpx

    from lekiwi_fleet_server.cli import build_server
    from lekiwi_fleet_server.settings import Settings

    out = io.StringIO()
    # Migrating the new database makes the start-up long enough to be seen from outside.
    settings = Settings(data_dir=tmp_path, api_port=0, gateway_port=0, log_level='warning')
    server, sock = build_server(settings, tune=False, out=out)
    port = sock.getsockname()[1]
    # The port is reserved but nobody listens yet: a client learns it at once.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', port), timeout=2).close()
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    refused, answered = 0, []
    try:
        deadline = time.monotonic() + 60
        while not answered and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                response = httpx.get(f'http://127.0.0.1:{port}/readyz', timeout=10)
            except httpx.ConnectError:
                refused += 1
                time.sleep(0.02)
                continue
            # Once a connection is accepted, the app is ready: answered, not held.
            answered.append((response.status_code, time.monotonic() - started))
        assert answered and answered[0][0] == 200 and answered[0][1] < 2, answered
        assert refused >= 1
        # The ready line comes once the API listens, so a reader of it may connect at once.
        assert f'api=http://127.0.0.1:{port} ' in out.getvalue()
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()


def test_the_roles_but_all_need_a_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv('LEKIWI_DATA_DIR', str(tmp_path))
    monkeypatch.delenv('LEKIWI_NATS_URL', raising=False)
    for role in ('writer', 'gateway', 'api'):
        assert main(['serve', '--role', role]) == 2
        assert 'needs LEKIWI_NATS_URL' in capsys.readouterr().err
