"""`backup` / `restore`: a populated fleet, backed up, restored into an empty database and blob
store, answers the API with the same robots, timeline, teleop sessions, releases (their manifests
and blobs) and deployments."""

from __future__ import annotations

import io
import os
import tarfile
import time
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


# A scenario robot's token is its name (store_messages.token_hash): robots read releases.
ROBOT_HEADERS = {'Authorization': 'Bearer alpha', 'X-Robot-Id': 'alpha'}


def _tarball(version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        for name in ('launch/robot.launch.py', f'share/notes-{version}.txt'):
            data = f'{name} of release {version}'.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _populate_releases_and_deployments(database_url: str, data_dir: Path) -> None:
    """Push two releases and run a deployment of one to its end, through the API."""
    settings = Settings(database_url=database_url, data_dir=data_dir, gateway_port=0,
                        log_level='warning', deployment_tick_s=0.05)
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        _op, token = create_operator(services.store, 'release-admin', 'admin', now=0.0)
        admin = {'Authorization': f'Bearer {token}'}
        for version in ('1', '2'):
            pushed = client.post(f'/api/v1/releases?version={version}',
                                 content=_tarball(version), headers=admin)
            assert pushed.status_code == 201, pushed.text
        # Its robots are offline: it waits for them; aborted, it ends (and stays as it is).
        created = client.post('/api/v1/deployments', headers=admin, json={
            'release_version': '2', 'robots': ['alpha', 'bravo'], 'waves': [1.0]})
        assert created.status_code == 201, created.text
        deployment_id = created.json()['deployment_id']
        deadline = time.monotonic() + 30
        while {r['waiting'] for r in client.get(f'/api/v1/deployments/{deployment_id}',
                                                headers=admin).json()['robots']} != {'offline'}:
            assert time.monotonic() < deadline, 'the robots were never found offline'
            time.sleep(0.05)
        aborted = client.post(f'/api/v1/deployments/{deployment_id}/abort', headers=admin)
        assert aborted.status_code == 200, aborted.text
        while client.get(f'/api/v1/deployments/{deployment_id}',
                         headers=admin).json()['status'] != 'aborted':
            assert time.monotonic() < deadline, 'the deployment never ended'
            time.sleep(0.05)


def _api_view(database_url: str, data_dir: Path) -> dict[str, Any]:
    """Start the app on a database and return what the API says of the fleet."""
    settings = Settings(database_url=database_url, data_dir=data_dir, gateway_port=0,
                        log_level='warning')
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        _op, token = create_operator(services.store, f'ops-{uuid.uuid4().hex[:6]}', 'viewer',
                                     now=0.0)
        headers = {'Authorization': f'Bearer {token}'}

        def get(path: str, as_robot: bool = False) -> Any:
            response = client.get(path, headers=ROBOT_HEADERS if as_robot else headers)
            assert response.status_code == 200, response.text
            return response.json()

        releases = get('/api/v1/releases')
        manifests = {r['version']: get(f'/api/v1/releases/{r["version"]}/manifest', True)
                     for r in releases}
        blobs = {}
        for manifest in manifests.values():
            for entry in manifest['entries']:
                if entry['type'] == 'file':
                    response = client.get(f'/api/v1/blobs/{entry["sha256"]}',
                                          headers=ROBOT_HEADERS)
                    assert response.status_code == 200, response.text
                    blobs[entry['sha256']] = response.content
        deployments = get('/api/v1/deployments')
        return {
            'releases': releases,
            'manifests': manifests,
            'release_blobs': blobs,
            'deployments': deployments,
            'deployment': {d['deployment_id']: get(f'/api/v1/deployments/{d["deployment_id"]}')
                           for d in deployments},
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
    _populate_releases_and_deployments(database_url, source_dir)
    before = _api_view(database_url, source_dir)
    assert len(before['robots']) == len(ROBOTS) and len(before['timeline']) > 20
    assert [r['version'] for r in before['releases']] == ['1', '2']
    assert len(before['release_blobs']) == 4  # two files a release, all different
    (deployment,) = before['deployment'].values()
    assert deployment['status'] == 'aborted' and deployment['release_version'] == '2'
    assert {r['robot_id']: r['waiting'] for r in deployment['robots']} == {
        'alpha': 'offline', 'bravo': 'offline'}

    monkeypatch.setenv('LEKIWI_DATABASE_URL', database_url)
    monkeypatch.setenv('LEKIWI_DATA_DIR', str(source_dir))
    backup_dir = tmp_path / 'backup'
    assert main(['backup', str(backup_dir)]) == 0
    assert 'backup done' in capsys.readouterr().err
    manifest = read_manifest(backup_dir)
    assert manifest.events > 0 and manifest.blob_files == 1 + len(before['release_blobs'])
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
