"""The release store on both databases: push, list, manifest, delete; hostile tarballs refused."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lekiwi_fleet_server.db.engine import make_engine
from lekiwi_fleet_server.db.schema import deployments
from lekiwi_fleet_server.domain.releases import ReleaseLimits, ReleaseRejected
from lekiwi_fleet_server.migrations import upgrade
from lekiwi_fleet_server.store.releases import (
    BlobStore,
    ReleaseExists,
    ReleaseInUse,
    ReleaseStore,
    UnknownRelease,
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def tarball(members: list[tuple[str, bytes | None, dict]]) -> io.BytesIO:
    """Build a tar.gz of (name, data or None, TarInfo attributes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name, data, attrs in members:
            info = tarfile.TarInfo(name)
            for key, value in attrs.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    buf.seek(0)
    return buf


GOOD = [('launch', None, {'type': tarfile.DIRTYPE, 'mode': 0o755}),
        ('launch/robot.launch.py', b'print(1)\n', {'mode': 0o644}),
        ('bin/app', b'#!/bin/sh\n', {'mode': 0o755}),
        ('bin/copy', b'#!/bin/sh\n', {'mode': 0o755}),
        ('link', None, {'type': tarfile.SYMTYPE, 'linkname': 'bin/app'})]


def test_push_stores_a_manifest_and_each_blob_once(engine: Engine, tmp_path: Path) -> None:
    store = ReleaseStore(engine, BlobStore(tmp_path / 'blobs'))
    info = store.push(tarball(GOOD), '1.0', by='ops', now=5.0)
    assert (info.files, info.total_bytes) == (3, 29)
    manifest = store.manifest('1.0')
    assert hashlib.sha256(manifest).hexdigest() == info.manifest_sha256
    entries = {e['path']: e for e in json.loads(manifest)['entries']}
    assert entries['bin'] == {'path': 'bin', 'type': 'dir', 'mode': 0o755}  # implied parent
    assert entries['link'] == {'path': 'link', 'type': 'symlink', 'target': 'bin/app'}
    digest = entries['bin/app']['sha256']
    assert store.blobs.path(digest).read_bytes() == b'#!/bin/sh\n'
    assert len(list((tmp_path / 'blobs').glob('??/*'))) == 2
    assert [r.version for r in store.list()] == ['1.0'] and store.get('1.0') == info
    with pytest.raises(ReleaseExists):
        store.push(tarball(GOOD), '1.0', by='ops', now=6.0)


@pytest.mark.parametrize('members, why', [
    ([('../evil', b'x', {})], 'leaves the release'),
    ([('a/../../evil', b'x', {})], 'leaves the release'),
    ([('/etc/passwd', b'x', {})], 'absolute'),
    ([('dev', None, {'type': tarfile.CHRTYPE})], 'device'),
    ([('fifo', None, {'type': tarfile.FIFOTYPE})], 'device'),
    ([('a', b'x', {}), ('l', None, {'type': tarfile.SYMTYPE, 'linkname': '../../etc'})],
     'symlink'),
    ([('a', b'x', {}), ('l', None, {'type': tarfile.SYMTYPE, 'linkname': '/etc/passwd'})],
     'symlink'),
    ([('a', b'x', {}), ('h', None, {'type': tarfile.LNKTYPE, 'linkname': 'a'})], 'hard link'),
    ([('big', b'x' * 2000, {})], 'size limit'),
    ([('a', b'x', {}), ('a', b'y', {})], 'twice'),
    ([('d', None, {'type': tarfile.DIRTYPE})], 'no files'),
])
def test_hostile_tarballs_are_refused_and_store_nothing(
        engine: Engine, tmp_path: Path, members: list, why: str) -> None:
    store = ReleaseStore(engine, BlobStore(tmp_path / 'blobs'), ReleaseLimits(1000, 10))
    with pytest.raises(ReleaseRejected, match=why):
        store.push(tarball(members), '2.0', by='ops', now=1.0)
    assert store.list() == []
    assert list((tmp_path / 'blobs').rglob('*')) == [tmp_path / 'blobs' / 'staging']


def test_not_a_tarball_and_bad_versions_are_refused(engine: Engine, tmp_path: Path) -> None:
    store = ReleaseStore(engine, BlobStore(tmp_path / 'blobs'))
    with pytest.raises(ReleaseRejected, match='tar'):
        store.push(io.BytesIO(b'not a tar at all' * 100), '1', by='o', now=1.0)
    with pytest.raises(ReleaseRejected, match='version'):
        store.push(tarball(GOOD), '../1', by='o', now=1.0)
    assert store.list() == []


def test_delete_is_refused_while_an_active_deployment_uses_the_release(
        engine: Engine, tmp_path: Path) -> None:
    store = ReleaseStore(engine, BlobStore(tmp_path / 'blobs'))
    store.push(tarball(GOOD), '1.0', by='ops', now=5.0)
    with engine.begin() as conn:
        conn.execute(sa.insert(deployments).values(
            deployment_id='d1', release_version='1.0', status='running', robots=[],
            stream_version=1, created_at=1.0, updated_at=1.0))
    with pytest.raises(ReleaseInUse, match='d1'):
        store.delete('1.0', frozenset({'running', 'paused'}))
    with engine.begin() as conn:
        conn.execute(sa.update(deployments).values(status='completed'))
    store.delete('1.0', frozenset({'running', 'paused'}))
    with pytest.raises(UnknownRelease):
        store.manifest('1.0')
    with pytest.raises(UnknownRelease):
        store.delete('1.0', frozenset())
