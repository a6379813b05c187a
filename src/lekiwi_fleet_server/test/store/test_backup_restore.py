"""`backup` / `restore`: a populated fleet, backed up, restored into an empty database and blob
store, answers the API with the same robots, timeline and teleop sessions."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from store_scenario import ROBOTS, run_scenario

from lekiwi_fleet_server.api.admin import create_operator
from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.backup import BackupError, read_manifest, restore
from lekiwi_fleet_server.cli import main
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

BLOB = ('sha256/ab/abcdef.tar.zst', b'release bytes \x00\x01')


@pytest.fixture
def empty_target(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a second, empty database of the same kind."""
    if database_url.startswith('sqlite'):
        yield f'sqlite:///{tmp_path / "restored" / "fleet.db"}'
        return
    admin_url = os.environ['LEKIWI_TEST_DATABASE_URL'].replace(
        'postgresql://', 'postgresql+psycopg://', 1)
    name = f'lekiwi_r_{uuid.uuid4().hex[:16]}'
    admin = sa.create_engine(admin_url, isolation_level='AUTOCOMMIT', poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE {name}')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
        admin.dispose()


def _api_view(database_url: str, data_dir: Path) -> dict[str, Any]:
    """Start the app on a database and return what the API says of the fleet."""
    settings = Settings(database_url=database_url, data_dir=data_dir, gateway_port=0,
                        writer_process=False, log_level='warning')
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        _op, token = create_operator(services.store, f'ops-{uuid.uuid4().hex[:6]}', 'viewer',
                                     now=0.0)
        headers = {'Authorization': f'Bearer {token}'}

        def get(path: str) -> Any:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            return response.json()

        return {
            'robots': get('/api/v1/robots'),
            'timeline': get('/api/v1/timeline?limit=1000')['entries'],
            'events': {r: get(f'/api/v1/robots/{r}/events?limit=1000') for r in ROBOTS},
            'sessions': get('/api/v1/robots/alpha/teleop-sessions'),
            'sequences': get('/api/v1/robots/alpha/sequences'),
        }


def test_backup_then_restore_into_an_empty_database(
        database_url: str, empty_target: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    store = SqlFleetStore.open(database_url)
    try:
        run_scenario(store)
    finally:
        store.close()
    source_dir, target_dir = tmp_path / 'source-data', tmp_path / 'target-data'
    blob = source_dir / 'blobs' / BLOB[0]
    blob.parent.mkdir(parents=True)
    blob.write_bytes(BLOB[1])
    before = _api_view(database_url, source_dir)
    assert len(before['robots']) == len(ROBOTS) and len(before['timeline']) > 20

    monkeypatch.setenv('LEKIWI_DATABASE_URL', database_url)
    monkeypatch.setenv('LEKIWI_DATA_DIR', str(source_dir))
    backup_dir = tmp_path / 'backup'
    assert main(['backup', str(backup_dir)]) == 0
    assert 'backup done' in capsys.readouterr().err
    manifest = read_manifest(backup_dir)
    assert manifest.events > 0 and manifest.blob_files == 1
    assert main(['backup', str(backup_dir)]) == 1  # never over an existing backup

    monkeypatch.setenv('LEKIWI_DATABASE_URL', empty_target)
    monkeypatch.setenv('LEKIWI_DATA_DIR', str(target_dir))
    assert main(['restore', str(backup_dir)]) == 0
    assert f'{manifest.events} events' in capsys.readouterr().err
    assert (target_dir / 'blobs' / BLOB[0]).read_bytes() == BLOB[1]
    assert main(['verify']) == 0
    assert _api_view(empty_target, target_dir) == before

    # A second restore finds the database (and the blob store) no longer empty.
    assert main(['restore', str(backup_dir)]) == 1
    err = capsys.readouterr().err
    assert 'not empty' in err or 'exists' in err, err
    with pytest.raises(BackupError, match='not empty|exists'):
        restore(Settings(database_url=empty_target, data_dir=tmp_path / 'other'), backup_dir,
                say=lambda _line: None)


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match='not a backup'):
        restore(Settings(data_dir=tmp_path), tmp_path, say=lambda _line: None)
    (tmp_path / 'manifest.json').write_text('{"format": 1, "kind": "postgresql", '
                                            '"created_at": 0, "schema_revision": null, '
                                            '"events": 0, "head_position": 0, "blob_files": 0}')
    with pytest.raises(BackupError, match='the backup is of postgresql'):
        restore(Settings(data_dir=tmp_path / 'data'), tmp_path, say=lambda _line: None)
