"""`lekiwi-fleet-server release push DIR --version V`: store a directory tree as a release."""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from lekiwi_fleet_server.settings import Settings


def open_release_store(settings: Settings):  # type: ignore[no-untyped-def]
    """Open the release store of the settings (database + blobs under the data dir)."""
    from lekiwi_fleet_server.db.engine import make_engine
    from lekiwi_fleet_server.store.releases import BlobStore, ReleaseStore

    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ReleaseStore(make_engine(settings.resolved_database_url, pool_size=2),
                        BlobStore(settings.data_dir / 'blobs'))


def release_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `release` sub-command; return the exit status."""
    from lekiwi_fleet_server.domain.releases import ReleaseRejected
    from lekiwi_fleet_server.store.factory import open_store
    from lekiwi_fleet_server.store.releases import ReleaseExists

    root = Path(args.directory)
    if not root.is_dir():
        print(f'lekiwi-fleet-server release push: {root} is not a directory', file=sys.stderr)
        return 1
    open_store(settings).close()  # migrates the database when the settings ask for it
    store = open_release_store(settings)
    # Through a tarball, so the CLI and the REST upload share one set of checks.
    with tempfile.TemporaryFile() as tmp:
        with tarfile.open(fileobj=tmp, mode='w') as tar:
            for path in sorted(root.rglob('*')):
                tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
        tmp.seek(0)
        try:
            info = store.push(tmp, args.version, by='cli', now=time.time())
        except (ReleaseRejected, ReleaseExists) as exc:
            print(f'lekiwi-fleet-server release push: {exc}', file=sys.stderr)
            return 1
    print(f'release {info.version}: {info.files} files, {info.total_bytes} bytes, '
          f'manifest sha256 {info.manifest_sha256}')
    return 0
